"""The agent-wide bound on bytes held for reader apps (`--reader-total-bytes`).

Per-session bounds (`--reader-queue-bytes`) alone let agent memory grow with the
number of sessions: each slow or absent reader app may hold a full per-session
allowance. These tests open several sessions whose reader apps never read (or are
absent) and check the sum is held under the agent-wide bound, on real processes.
"""

from __future__ import annotations

import pytest
from fixtures_agent import AppClient, wait_for
from hotlink.agent.budget import ByteBudget
from hotlink.v1 import agent_pb2 as pb
from hotlink.wire.frames import Frame, encode_frame

pytestmark = pytest.mark.e2e

A = "alice@example.org"
B = "bob@example.org"
NAMES = ("g1", "g2", "g3")


def _open(alice, bob) -> list[str]:
    paths = []
    for n in NAMES:
        assert alice.open(f"_mpc/{n}").state == pb.SESSION_STATE_OPEN
        full = f"{A}/_mpc/{n}"
        bob.open(full)
        alice.wait_session(full, lambda s: B in s.readers)
        paths.append(full)
    return paths


def test_budget_counts() -> None:
    b = ByteBudget(10)
    assert b.take(6) and not b.take(5) and b.take(4)
    b.give(10)
    assert b.used == 0


def test_slow_apps_of_many_sessions_bounded_agent_wide(agent_factory):
    """3 sessions x 6 MiB to apps that never read: each stays under the 8 MiB
    per-session bound, but the 10 MiB agent-wide bound disconnects at least one."""
    alice = agent_factory(A)
    bob = agent_factory(
        B,
        args=["--reader-queue-bytes", str(8 << 20), "--reader-total-bytes", str(10 << 20),
              "--reader-buffer-bytes", "262144"],
    )  # fmt: skip
    paths = _open(alice, bob)
    slow = [AppClient(bob.session_dir(p)) for p in paths]  # never read
    for p in paths:
        bob.wait_session(p, lambda s: s.ipc_clients == 1)
    chunk = b"".join(encode_frame(Frame(b"s" * 8192)) for _ in range(64))  # 512 KiB
    writers = [AppClient(alice.session_dir(p)) for p in paths]
    for _ in range(12):  # 6 MiB per session
        for w in writers:
            w.send_raw(chunk)
    for p in paths:
        bob.wait_session(p, lambda s: s.last_seq == 768 or s.ipc_clients == 0, timeout=60)
    wait_for(lambda: "agent-wide bound of 10485760 bytes reached" in bob.log_text(),
             timeout=30, what="agent-wide bound")  # fmt: skip
    dropped = [p for p in paths if bob.session(p).ipc_clients == 0]
    # the frames queued for a disconnected app are asked for again, not lost
    assert dropped and all(bob.session(p).counters.refetched > 0 for p in dropped)
    assert sum(c.is_closed(timeout=5) for c in slow) == len(dropped)
    for p in dropped:  # a new app gets the rest: after what reached the old one's socket
        app = AppClient(bob.session_dir(p), timeout=30)
        first = app.recv().seq
        assert 1 < first <= 768 - bob.session(p).counters.refetched + 1
        got = [first] + [f.seq for f in app.recv_n(768 - first)]
        assert got == list(range(first, 769))


def test_no_app_backlogs_bounded_agent_wide(agent_factory):
    """No reader app at all on 3 sessions: their backlogs together keep at most
    --reader-total-bytes (each alone could keep 1 MiB); the rest is refused, counted,
    and re-sent to the apps that connect later: every frame arrives, in order."""
    alice = agent_factory(A)
    bob = agent_factory(B, args=["--reader-total-bytes", "20480"])
    paths = _open(alice, bob)
    payload = b"k" * 1000
    for p in paths:
        AppClient(alice.session_dir(p)).send_raw(
            b"".join(encode_frame(Frame(payload)) for _ in range(20))
        )
    for p in paths:
        bob.wait_session(p, lambda s: s.last_seq + s.counters.refetched == 20)
    frame = len(encode_frame(Frame(payload, 1, f"{A}/_mpc/g1/00000001.request")))
    kept = sum(bob.session(p).last_seq for p in paths)
    assert kept == 20480 // frame
    assert sum(bob.session(p).counters.drops for p in paths) == 0
    for p in paths:
        assert [f.seq for f in AppClient(bob.session_dir(p)).recv_n(20)] == list(range(1, 21))
