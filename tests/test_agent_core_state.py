"""The session state table (agent/core/state.py): every listed move, and that every
move the table does not list is refused with a clear error."""

from __future__ import annotations

import itertools

import pytest
from hotlink.agent.core.state import (
    TRANSITIONS,
    InvalidTransition,
    Role,
    SessionMachine,
    SessionState,
    Trigger,
)

P, OP, R, C = SessionState.PENDING, SessionState.OPEN, SessionState.REJECTED, SessionState.CLOSED

EXPECTED = {
    # both roles
    **{(role, P, Trigger.ACKED): OP for role in Role},
    **{(role, st, Trigger.LINK_DOWN): P for role in Role for st in (P, OP)},
    **{(role, st, Trigger.REJECTED): R for role in Role for st in (P, OP)},
    **{(role, st, Trigger.CLOSED): C for role in Role for st in (P, OP, R)},
    # sender only
    **{(Role.SENDER, st, Trigger.REOPEN): P for st in (P, OP)},
    # reader only
    **{(Role.READER, st, Trigger.OFFERED): P for st in (P, OP)},
    **{(Role.READER, st, Trigger.SENDER_GONE): P for st in (P, OP)},
}


def test_table_is_exactly_the_documented_moves() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize("role,state,trigger", list(itertools.product(Role, SessionState, Trigger)))
def test_every_state_and_trigger(role: Role, state: SessionState, trigger: Trigger) -> None:
    sm = SessionMachine(role)
    sm.state = state
    nxt = EXPECTED.get((role, state, trigger))
    assert sm.can(trigger) is (nxt is not None)
    if nxt is None:
        with pytest.raises(InvalidTransition) as ei:
            sm.fire(trigger)
        msg = str(ei.value)
        assert role.name.lower() in msg and state.name in msg and trigger.value in msg
        assert sm.state is state  # a refused move changes nothing
    else:
        assert sm.fire(trigger, "why") is nxt
        assert sm.state is nxt and sm.reason == "why"


def test_reason_kept_unless_given() -> None:
    sm = SessionMachine(Role.SENDER)
    sm.fire(Trigger.REOPEN, "too many sessions")
    sm.fire(Trigger.ACKED, "")
    assert sm.open and sm.reason == ""
    sm.fire(Trigger.LINK_DOWN, "link down")
    sm.fire(Trigger.REOPEN)
    assert sm.reason == "link down" and sm.live


def test_terminal_states() -> None:
    sm = SessionMachine(Role.READER)
    sm.fire(Trigger.REJECTED, "denied")
    assert not sm.live
    with pytest.raises(InvalidTransition):
        sm.fire(Trigger.ACKED)
    sm.fire(Trigger.CLOSED, "closed")
    for t in Trigger:
        assert not sm.can(t)
