"""The chaos reproductions of tests/test_chaos.py with the file fallback OFF,
so the stream must survive over the hotlink alone (cumulative reader acks, re-send
from the reader's last ack after a reconnect, a relay restart or a re-accept)."""

from __future__ import annotations

import time

import pytest
import test_chaos as tc
from chaos_proxy import ThreadedChaosProxy
from hotlink.v1 import agent_pb2 as pb

pytestmark = pytest.mark.e2e


def _open_pair_hotlink_only(alice, bob) -> None:
    s = alice.open(tc.REL, fallback_mode=pb.FALLBACK_MODE_OFF)
    assert s.state == pb.SESSION_STATE_OPEN
    bob.open(tc.PATH)
    bob.wait_session(tc.PATH, lambda s: s.state == pb.SESSION_STATE_OPEN)
    alice.wait_session(tc.PATH, lambda s: tc.B in s.readers)


@pytest.fixture(autouse=True)
def hotlink_only(monkeypatch):
    monkeypatch.setattr(tc, "open_pair", _open_pair_hotlink_only)


@pytest.fixture
def relay(relay_factory):
    return relay_factory(log_level="INFO")


def test_reader_link_resets_hotlink_only(relay, agent_factory):
    """Finding 1 without files: bob's link stalls then dies 3 times."""
    with ThreadedChaosProxy("127.0.0.1", relay.port) as proxy:
        via = tc.Via(relay, proxy.url)
        flow = tc.Flow(agent_factory(tc.A, relay_=via), agent_factory(tc.B, relay_=via), 300, 64)
        flow.start()
        try:
            for _ in range(3):
                time.sleep(1.0)
                assert proxy.drop(emails=[tc.B], stall=0.3) == 1
                time.sleep(0.3)
                flow.bob.wait_link(pb.LINK_STATE_UP)
            time.sleep(1.0)
        finally:
            report = flow.finish(proxy=proxy.stats())
    tc.show("READER LINK RESETS (hotlink only)", report)
    tc.assert_clean(report)
    assert "resumes after seq" in flow.alice.log_text()


@pytest.mark.parametrize("who", [tc.A, tc.B], ids=["sender", "reader"])
def test_half_open_hotlink_only(relay, agent_factory, who):
    """Findings 2 and 3 without files: an agent reconnects before the relay notices."""
    tc.assert_clean(tc._half_open_run(relay, agent_factory, who))


@pytest.mark.parametrize("direct", ["off", "auto"])
def test_reader_agent_killed_and_restarted_hotlink_only(relay, agent_factory, direct):
    """Finding 4 without files: alice holds what bob did not confirm and re-sends it
    from the seq in his Accept after his restart; with `auto`, the frames on the direct
    link that died with bob's agent too."""
    tc.reader_agent_killed_and_restarted(relay, agent_factory, direct)


def test_reduced_chaos_hotlink_only(relay, agent_factory):
    """Relay kill -9/restarts and resets of any link, reader-only ones included."""
    p = tc.ChaosParams.from_env(
        restarts=3, drops=15, rate=400, size=64, duration=12, targets=(tc.ALL, tc.SENDER, tc.READER)
    )
    tc.assert_clean(tc.run_chaos(p, relay, agent_factory))
