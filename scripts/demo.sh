#!/usr/bin/env bash
# The demo, on a fresh clone: dul's storescp and storescu talk over loopback in one process,
# every PDU and DIMSE message traced on both sides; then where the file landed. No outside
# server. Arguments go to the demo (--output DIR keeps its files there).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1

if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    python3 -m venv .venv
fi

echo "== installing dul[examples,print] into .venv"
.venv/bin/python -m pip install --quiet -e '.[examples,print]'

echo "== python -m examples.demo"
exec .venv/bin/python -m examples.demo "$@"
