"""Session states as one table (the way h11's `_state.py` keeps its transitions).

Every change of a session's state goes through `SessionMachine.fire(trigger)`, which
looks the move up in `TRANSITIONS`; a move the table does not list raises
`InvalidTransition` instead of silently assigning a state. Values of `SessionState`
match `hotlink.v1.SessionState`, values of `Role` match the control API's role.

    sender:  PENDING --ACKED (relay acked our Open)--> OPEN
             OPEN/PENDING --LINK_DOWN / REOPEN (link up again, relay lost the session,
                           idle timeout, transient reject)--> PENDING
    reader:  PENDING --ACKED (relay acked our Accept)--> OPEN
             OPEN/PENDING --LINK_DOWN / OFFERED (a new Open) / SENDER_GONE--> PENDING
    both:    PENDING/OPEN --REJECTED--> REJECTED (terminal but for CLOSED)
             PENDING/OPEN/REJECTED --CLOSED--> CLOSED (terminal)
"""

from __future__ import annotations

import enum


class Role(enum.IntEnum):
    SENDER = 1
    READER = 2


class SessionState(enum.IntEnum):
    PENDING = 1
    OPEN = 2
    REJECTED = 3
    CLOSED = 4


class Trigger(enum.Enum):
    #: the relay acknowledged our Open (sender) or Accept (reader)
    ACKED = "acked"
    #: our relay link dropped
    LINK_DOWN = "link down"
    #: sender: the Open is sent again (link up, relay lost the session, idle timeout,
    #: a transient reject such as "too many sessions")
    REOPEN = "reopen"
    #: reader: the relay offered a (new) Open; we catch up, then accept it
    OFFERED = "offered"
    #: reader: the sender went away (disconnected, idle, unknown session); we wait
    #: for its re-open
    SENDER_GONE = "sender gone"
    #: the relay (or the agent, on a Nack) turned the session down for good
    REJECTED = "rejected"
    #: closed by us (CloseSession) or by the sender
    CLOSED = "closed"


_S, _RD = Role.SENDER, Role.READER
_P, _O = SessionState.PENDING, SessionState.OPEN
_R, _C = SessionState.REJECTED, SessionState.CLOSED
_T = Trigger

#: (role, state, trigger) -> next state: the only place that says which event moves
#: which state. Anything not listed is an `InvalidTransition`.
TRANSITIONS: dict[tuple[Role, SessionState, Trigger], SessionState] = {
    # sender
    (_S, _P, _T.ACKED): _O,
    (_S, _P, _T.LINK_DOWN): _P,
    (_S, _O, _T.LINK_DOWN): _P,
    (_S, _P, _T.REOPEN): _P,
    (_S, _O, _T.REOPEN): _P,
    (_S, _P, _T.REJECTED): _R,
    (_S, _O, _T.REJECTED): _R,
    (_S, _P, _T.CLOSED): _C,
    (_S, _O, _T.CLOSED): _C,
    (_S, _R, _T.CLOSED): _C,
    # reader
    (_RD, _P, _T.ACKED): _O,
    (_RD, _P, _T.LINK_DOWN): _P,
    (_RD, _O, _T.LINK_DOWN): _P,
    (_RD, _P, _T.OFFERED): _P,
    (_RD, _O, _T.OFFERED): _P,
    (_RD, _P, _T.SENDER_GONE): _P,
    (_RD, _O, _T.SENDER_GONE): _P,
    (_RD, _P, _T.REJECTED): _R,
    (_RD, _O, _T.REJECTED): _R,
    (_RD, _P, _T.CLOSED): _C,
    (_RD, _O, _T.CLOSED): _C,
    (_RD, _R, _T.CLOSED): _C,
}


class InvalidTransition(RuntimeError):
    """A state change the table does not allow (a bug in the caller, never input)."""

    def __init__(self, role: Role, state: SessionState, trigger: Trigger) -> None:
        super().__init__(
            f"{role.name.lower()} session in state {state.name} cannot take {trigger.value!r}"
        )
        self.role, self.state, self.trigger = role, state, trigger


class SessionMachine:
    """The state of one session, changed only through the table."""

    __slots__ = ("reason", "role", "state")

    def __init__(self, role: Role) -> None:
        self.role = role
        self.state = SessionState.PENDING
        self.reason = ""

    def can(self, trigger: Trigger) -> bool:
        return (self.role, self.state, trigger) in TRANSITIONS

    def fire(self, trigger: Trigger, reason: str | None = None) -> SessionState:
        """Move by `trigger` (raises `InvalidTransition`); `reason`, if given, replaces
        the human-readable reason shown by GetSession."""
        nxt = TRANSITIONS.get((self.role, self.state, trigger))
        if nxt is None:
            raise InvalidTransition(self.role, self.state, trigger)
        self.state = nxt
        if reason is not None:
            self.reason = reason
        return nxt

    @property
    def open(self) -> bool:
        return self.state is SessionState.OPEN

    @property
    def live(self) -> bool:
        """PENDING or OPEN: the session still takes part in a stream."""
        return self.state is SessionState.PENDING or self.state is SessionState.OPEN
