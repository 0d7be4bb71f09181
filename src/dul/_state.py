"""PS3.8 §9.2 as data: the states, the inputs, the actions and Table 9-10.

Two rules read the table:

1. ``TRANSITIONS[input][state]`` is the action PS3.8 Table 9-10 gives; a state missing from an
   input's row is an empty cell: that input may not happen there.
2. ``NEXT_STATES[action]`` lists the states an action may lead to. Most have one; AE-6 and AR-8
   have two (the connection picks by the request's protocol version, and by its role).

This module knows no bytes, no events and no I/O.
"""

from __future__ import annotations

import enum
from enum import IntEnum

__all__ = ["NEXT_STATES", "TRANSITIONS", "Action", "Input", "State"]


class State(IntEnum):
    """The 13 states of PS3.8 Table 9-1; the value is the number of ``StaN``."""

    IDLE = 1
    AWAITING_ASSOCIATE_RQ = 2
    AWAITING_LOCAL_ASSOCIATE_RESPONSE = 3
    AWAITING_TRANSPORT_OPEN = 4
    AWAITING_ASSOCIATE_AC_OR_RJ = 5
    ESTABLISHED = 6
    AWAITING_RELEASE_RP = 7
    AWAITING_LOCAL_RELEASE_RESPONSE = 8
    COLLISION_REQUESTOR_AWAITING_LOCAL_RESPONSE = 9
    COLLISION_ACCEPTOR_AWAITING_RELEASE_RP = 10
    COLLISION_REQUESTOR_AWAITING_RELEASE_RP = 11
    COLLISION_ACCEPTOR_AWAITING_LOCAL_RESPONSE = 12
    AWAITING_TRANSPORT_CLOSE = 13

    @property
    def label(self) -> str:
        """PS3.8's own name for the state, ``Sta1`` … ``Sta13``."""
        return f"Sta{self.value}"


class Input(IntEnum):
    """The 19 events of PS3.8 Table 9-2, named ``EVT1`` … ``EVT19`` (not API events)."""

    EVT1 = 1  # A-ASSOCIATE request (local user)
    EVT2 = 2  # transport connect confirmation
    EVT3 = 3  # A-ASSOCIATE-AC PDU received
    EVT4 = 4  # A-ASSOCIATE-RJ PDU received
    EVT5 = 5  # transport connection indication
    EVT6 = 6  # A-ASSOCIATE-RQ PDU received
    EVT7 = 7  # A-ASSOCIATE response primitive (accept)
    EVT8 = 8  # A-ASSOCIATE response primitive (reject)
    EVT9 = 9  # P-DATA request primitive
    EVT10 = 10  # P-DATA-TF PDU received
    EVT11 = 11  # A-RELEASE request primitive
    EVT12 = 12  # A-RELEASE-RQ PDU received
    EVT13 = 13  # A-RELEASE-RP PDU received
    EVT14 = 14  # A-RELEASE response primitive
    EVT15 = 15  # A-ABORT request primitive
    EVT16 = 16  # A-ABORT PDU received
    EVT17 = 17  # transport connection closed indication
    EVT18 = 18  # ARTIM timer expired
    EVT19 = 19  # unrecognized or invalid PDU received

    @property
    def label(self) -> str:
        """PS3.8's own name for the event, ``Evt1`` … ``Evt19``."""
        return f"Evt{self.value}"


class Action(enum.Enum):
    """The actions of PS3.8 Tables 9-6 to 9-9; the value is the standard's name."""

    AE_1 = "AE-1"  # issue transport connect
    AE_2 = "AE-2"  # send A-ASSOCIATE-RQ
    AE_3 = "AE-3"  # A-ASSOCIATE confirmation (accept)
    AE_4 = "AE-4"  # A-ASSOCIATE confirmation (reject), close transport
    AE_5 = "AE-5"  # transport connection response, start ARTIM
    AE_6 = "AE-6"  # stop ARTIM; A-ASSOCIATE indication, or A-ASSOCIATE-RJ and start ARTIM
    AE_7 = "AE-7"  # send A-ASSOCIATE-AC
    AE_8 = "AE-8"  # send A-ASSOCIATE-RJ, start ARTIM
    DT_1 = "DT-1"  # send P-DATA-TF
    DT_2 = "DT-2"  # P-DATA indication
    AR_1 = "AR-1"  # send A-RELEASE-RQ
    AR_2 = "AR-2"  # A-RELEASE indication
    AR_3 = "AR-3"  # A-RELEASE confirmation, close transport
    AR_4 = "AR-4"  # send A-RELEASE-RP, start ARTIM
    AR_5 = "AR-5"  # stop ARTIM
    AR_6 = "AR-6"  # P-DATA indication while awaiting A-RELEASE-RP
    AR_7 = "AR-7"  # send P-DATA-TF while awaiting the local release response
    AR_8 = "AR-8"  # A-RELEASE indication (release collision)
    AR_9 = "AR-9"  # send A-RELEASE-RP (collision, requestor)
    AR_10 = "AR-10"  # A-RELEASE confirmation (collision, acceptor)
    AA_1 = "AA-1"  # send A-ABORT (service-user source), start or restart ARTIM
    AA_2 = "AA-2"  # stop ARTIM if running, close transport
    AA_3 = "AA-3"  # A-ABORT or A-P-ABORT indication, close transport
    AA_4 = "AA-4"  # A-P-ABORT indication
    AA_5 = "AA-5"  # stop ARTIM
    AA_6 = "AA-6"  # ignore the PDU
    AA_7 = "AA-7"  # send A-ABORT
    AA_8 = "AA-8"  # send A-ABORT (service-provider source), A-P-ABORT indication, start ARTIM


S = State
A = Action
_ANY_ASSOCIATED = (S(3), S(5), S(6), S(7), S(8), S(9), S(10), S(11), S(12))
_AFTER_RQ = (S(3), *range(6, 13))  # Sta3 and Sta6-Sta12: an association exists or is pending


def _row(default: Action, states: tuple[int, ...], **cells: Action) -> dict[State, Action]:
    """A row with ``default`` in ``states`` and the ``StaN=`` overrides."""
    row = {State(s): default for s in states}
    row.update({State(int(name[3:])): action for name, action in cells.items()})
    return row


#: PS3.8 Table 9-10: ``TRANSITIONS[input][state] -> action``.
TRANSITIONS: dict[Input, dict[State, Action]] = {
    Input.EVT1: {S(1): A.AE_1},
    Input.EVT2: {S(4): A.AE_2},
    Input.EVT3: _row(A.AA_8, _AFTER_RQ, Sta2=A.AA_1, Sta5=A.AE_3, Sta13=A.AA_6),
    Input.EVT4: _row(A.AA_8, _AFTER_RQ, Sta2=A.AA_1, Sta5=A.AE_4, Sta13=A.AA_6),
    Input.EVT5: {S(1): A.AE_5},
    Input.EVT6: _row(A.AA_8, _ANY_ASSOCIATED, Sta2=A.AE_6, Sta13=A.AA_7),
    Input.EVT7: {S(3): A.AE_7},
    Input.EVT8: {S(3): A.AE_8},
    Input.EVT9: {S(6): A.DT_1, S(8): A.AR_7},
    Input.EVT10: _row(A.AA_8, _ANY_ASSOCIATED, Sta2=A.AA_1, Sta6=A.DT_2, Sta7=A.AR_6, Sta13=A.AA_6),
    Input.EVT11: {S(6): A.AR_1},
    Input.EVT12: _row(A.AA_8, _ANY_ASSOCIATED, Sta2=A.AA_1, Sta6=A.AR_2, Sta7=A.AR_8, Sta13=A.AA_6),
    Input.EVT13: _row(
        A.AA_8, _ANY_ASSOCIATED, Sta2=A.AA_1, Sta7=A.AR_3, Sta10=A.AR_10, Sta11=A.AR_3, Sta13=A.AA_6
    ),
    Input.EVT14: {S(8): A.AR_4, S(9): A.AR_9, S(12): A.AR_4},
    Input.EVT15: _row(A.AA_1, _ANY_ASSOCIATED, Sta4=A.AA_2),
    Input.EVT16: _row(A.AA_3, _ANY_ASSOCIATED, Sta2=A.AA_2, Sta13=A.AA_2),
    Input.EVT17: _row(A.AA_4, (*_ANY_ASSOCIATED, 4), Sta2=A.AA_5, Sta13=A.AR_5),
    Input.EVT18: {S(2): A.AA_2, S(13): A.AA_2},
    Input.EVT19: _row(A.AA_8, _ANY_ASSOCIATED, Sta2=A.AA_1, Sta13=A.AA_7),
}

#: Where each action leads (PS3.8 Tables 9-6 to 9-9).
NEXT_STATES: dict[Action, tuple[State, ...]] = {
    A.AE_1: (S(4),),
    A.AE_2: (S(5),),
    A.AE_3: (S(6),),
    A.AE_4: (S(1),),
    A.AE_5: (S(2),),
    A.AE_6: (S(3), S(13)),
    A.AE_7: (S(6),),
    A.AE_8: (S(13),),
    A.DT_1: (S(6),),
    A.DT_2: (S(6),),
    A.AR_1: (S(7),),
    A.AR_2: (S(8),),
    A.AR_3: (S(1),),
    A.AR_4: (S(13),),
    A.AR_5: (S(1),),
    A.AR_6: (S(7),),
    A.AR_7: (S(8),),
    A.AR_8: (S(9), S(10)),
    A.AR_9: (S(11),),
    A.AR_10: (S(12),),
    A.AA_1: (S(13),),
    A.AA_2: (S(1),),
    A.AA_3: (S(1),),
    A.AA_4: (S(1),),
    A.AA_5: (S(1),),
    A.AA_6: (S(13),),
    A.AA_7: (S(13),),
    A.AA_8: (S(13),),
}
del S, A
