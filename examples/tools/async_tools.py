"""The tools written once for both async drivers: trio's and asyncio's share one API.

The drivers (:mod:`examples.trio.driver`, :mod:`examples.asyncio.driver`) have the same classes
with the same ``async`` methods; what differs is how a program runs an event loop, serves until
a signal and runs a server beside a test: :mod:`~examples.tools.trio_tools` and
:mod:`~examples.tools.asyncio_tools` do that, and run the coroutines below with their driver.
Every step that does not wait is :mod:`examples.tools.common`'s, shared with the blocking tools.

Files are read and written with plain blocking calls: a local disk answers within the time a
PDU takes, and a thread per chunk would cost more than it saves.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import Any

import dul
from dul import dimse

from . import cli, common, storage
from .cli import ExitCode, ToolError

__all__ = ["Driver", "echoscp_server", "echoscu", "storescp_server", "storescu"]


@dataclass(frozen=True)
class Driver:
    """An async driver the tools run on."""

    #: The package under ``examples/``: ``trio`` or ``asyncio``.
    name: str
    #: Its driver module: ``Association``, ``Server``, ``echo_handler``.
    module: Any


async def _request(
    driver: Driver,
    args: argparse.Namespace,
    contexts: tuple[dul.PresentationContext, ...],
    tracer: cli.Tracer,
) -> Any:
    """Open the association the options describe; any failure is ASSOCIATION_FAILED (61)."""
    request = common.association_request(args, contexts)
    ssl_context = cli.client_ssl_context(args)
    try:
        return await driver.module.Association.request(
            args.peer,
            args.port,
            request,
            timeouts=common.driver_timeouts(args),
            ssl_context=ssl_context,
            server_hostname=getattr(args, "tls_server_name", None),
            on_event=tracer,
        )
    except common.BROKEN as exc:
        raise common.association_failed(exc) from exc


async def _end(assoc: Any, args: argparse.Namespace, log: logging.Logger) -> None:
    """Release (or, with --abort, abort) the association."""
    if args.abort:
        log.info("aborting the association, as --abort asks")
        await assoc.abort()
        return
    try:
        await assoc.release()
    except common.BROKEN as exc:
        raise common.release_failed(exc) from exc


# -- echoscu ----------------------------------------------------------------------------------


async def echoscu(driver: Driver, args: argparse.Namespace, log: logging.Logger) -> int:
    """echoscu: C-ECHO the peer; 0 when every response said Success."""
    assoc = await _request(driver, args, common.ECHO_CONTEXTS, cli.Tracer(log, "SCU"))
    failed = 0
    try:
        if common.context_for(assoc, dimse.VERIFICATION_SOP_CLASS) is None:
            await assoc.release()
            raise ToolError(ExitCode.ASSOCIATION_FAILED, common.VERIFICATION_REFUSED)
        for _ in range(args.repeat):
            if not common.echo_status(log, await assoc.echo()):
                failed += 1
    except common.BROKEN as exc:
        await assoc.abort()
        raise common.broken(exc) from exc
    except BaseException:
        await assoc.abort()
        raise
    await _end(assoc, args, log)
    return common.echo_result(log, failed, args.repeat)


# -- storescu ---------------------------------------------------------------------------------


async def storescu(driver: Driver, args: argparse.Namespace, log: logging.Logger) -> int:
    """storescu: C-STORE files; 0 when every file was stored (Success or Warning)."""
    files, progress = common.storescu_inputs(args, log)
    tracer = cli.Tracer(log, "SCU")
    failures = 0
    try:
        for batch in storage.plan(files):
            failures += await _store_batch(driver, args, log, tracer, batch, progress)
            if failures and not args.no_halt:
                break
    finally:
        progress.finish()
    return common.storescu_result(log, progress, len(files), failures)


async def _store_batch(
    driver: Driver,
    args: argparse.Namespace,
    log: logging.Logger,
    tracer: cli.Tracer,
    batch: storage.Batch,
    progress: cli.Progress,
) -> int:
    """Store the files of one association; return how many failed."""
    assoc = await _request(driver, args, batch.contexts, tracer)
    failures = 0
    try:
        chunk_size = common.chunk_size(assoc)
        for dicom in batch.files:
            if not await _store_file(driver, assoc, dicom, chunk_size, log, progress):
                failures += 1
                if not args.no_halt:
                    break
    except common.BROKEN as exc:
        await assoc.abort()
        raise common.broken(exc) from exc
    except BaseException:
        await assoc.abort()
        raise
    await _end(assoc, args, log)
    return failures


async def _store_file(
    driver: Driver,
    assoc: Any,
    dicom: storage.DicomFile,
    chunk_size: int,
    log: logging.Logger,
    progress: cli.Progress,
) -> bool:
    """C-STORE one file, its data set streamed from disk; True when stored.

    A data set of at most ``chunk_size`` bytes is read whole and sent with its command in one
    write; a larger one is streamed, each chunk written before the next is read.
    """
    context_id = common.context_for(assoc, dicom.sop_class_uid, dicom.transfer_syntax)
    if context_id is None:
        common.no_context(log, dicom)
        progress.file_done()
        return False
    log.info("sending %s (%d bytes)", dicom.path, dicom.length)
    try:
        with open(dicom.path, "rb") as fp:
            if dicom.length <= chunk_size:  # small: command and data set in one write
                data = common.read_small(fp, dicom)
                response = await assoc.store(
                    dicom.sop_class_uid, dicom.sop_instance_uid, data, context_id=context_id
                )
                progress.add(len(data))
            else:
                chunks = common.file_chunks(fp, dicom, chunk_size, progress)
                response = await assoc.store(
                    dicom.sop_class_uid,
                    dicom.sop_instance_uid,
                    chunks,
                    length=dicom.length,
                    context_id=context_id,
                )
    except OSError as exc:
        if isinstance(exc, (TimeoutError, ConnectionError)):
            raise
        await assoc.abort()  # a data set was announced and cannot be finished
        raise common.read_failed(dicom, exc) from exc
    progress.file_done()
    return common.store_result(log, dicom, response)


# -- the servers ------------------------------------------------------------------------------


def _server(
    driver: Driver,
    args: argparse.Namespace,
    log: logging.Logger,
    policy: dimse.AcceptorPolicy,
    handlers: dict[type[dimse.Message], Any],
) -> Any:
    """A server, not yet listening (the async drivers bind when they start serving)."""
    return driver.module.Server(
        args.bind, args.port, policy=policy, handlers=handlers, **common.server_options(args, log)
    )


def echoscp_server(driver: Driver, args: argparse.Namespace, log: logging.Logger) -> Any:
    """An echoscp server, not yet listening."""
    handlers: dict[type[dimse.Message], Any] = {dimse.CEchoRequest: driver.module.echo_handler}
    return _server(driver, args, log, common.echoscp_policy(args), handlers)


def storescp_server(driver: Driver, args: argparse.Namespace, log: logging.Logger) -> Any:
    """A storescp server, not yet listening; ``args`` from :func:`cli.storescp_parser`."""
    scp = common.StoreSCP(args, log)

    async def store(assoc: Any, event: dimse.MessageReceived, dataset: Any) -> None:
        """Answer a C-STORE-RQ: stream the data set into a Part 10 file, then respond."""
        receiver = scp.receive(assoc, event)
        try:
            async for chunk in dataset:
                if why := receiver.abort_reason(finished=False):
                    await assoc.abort()
                    raise scp.aborting(why)
                receiver.write(chunk)
            if why := receiver.abort_reason(finished=True):
                await assoc.abort()
                raise scp.aborting(why)
        except BaseException:
            receiver.discard()
            raise
        await assoc.send(receiver.response(), context_id=event.context_id)

    handlers: dict[type[dimse.Message], Any] = {
        dimse.CEchoRequest: driver.module.echo_handler,
        dimse.CStoreRequest: store,
    }
    return _server(driver, args, log, common.storescp_policy(args), handlers)
