"""Relay limits, sans-I/O: sessions per user, the open-rate token bucket and the idle
timeout (`Router.expire`), driven by a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from hotlink.relay.acl import AclIndex, parse_acl
from hotlink.relay.cli import build_parser
from hotlink.relay.router import Limits, Outgoing, Router
from hotlink.relay.server import RelayServer
from hotlink.relay.store import Store
from hotlink.wire.envelope import Envelope
from hotlink.wire.messages import (
    REASON_IDLE,
    REASON_RATE_LIMITED,
    REASON_TOO_MANY_SESSIONS,
    Ack,
    HotlinkAccept,
    HotlinkClose,
    HotlinkData,
    HotlinkOpen,
    HotlinkProgress,
    HotlinkReject,
    Message,
)
from test_relay_router import PATH, READERS_ACL, A, B, C

CA, CA2, CB, CC = 1, 2, 3, 4


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class H:
    def __init__(self, tmp: Path, limits: Limits) -> None:
        acl = AclIndex()
        acl.set_file(A, parse_acl(READERS_ACL))
        self.clock = Clock()
        self.router = Router(acl, Store(tmp), limits=limits, clock=self.clock)
        for cid, user in ((CA, A), (CA2, A), (CB, B), (CC, C)):
            self.router.connect(cid, user)
        self.n = 0

    def send(self, cid: int, msg: Message) -> list[Outgoing]:
        self.n += 1
        return self.router.handle(cid, Envelope(f"m{self.n}", msg))

    def open(self, sid: str, cid: int = CA) -> Message:
        out = [o.msg for o in self.send(cid, HotlinkOpen(sid, f"{PATH}/{sid}")) if o.conn == cid]
        return out[0]


def test_sessions_per_user(tmp_path: Path) -> None:
    h = H(tmp_path, Limits(max_sessions_per_user=3, open_rate=0))
    assert [h.open(f"s{i}") for i in range(3)] == [Ack("m1"), Ack("m2"), Ack("m3")]
    # the cap is per user, across connections
    assert h.open("s3", CA2) == HotlinkReject("s3", REASON_TOO_MANY_SESSIONS)
    assert "s3" not in h.router.sessions
    # re-opening a live session (reconnect) is not a new one
    assert h.open("s0", CA2) == Ack(f"m{h.n}")
    # ending one frees a slot
    h.send(CA, HotlinkClose("s1"))
    assert h.open("s3") == Ack(f"m{h.n}")
    assert h.router.sending_count == {A: 3}
    h.router.disconnect(CA)
    h.router.disconnect(CA2)
    assert h.router.sessions == {} and h.router.sending_count == {}


def test_open_rate_token_bucket(tmp_path: Path) -> None:
    h = H(tmp_path, Limits(max_sessions_per_user=0, open_rate=10, open_burst=5))
    got = [h.open(f"s{i}") for i in range(8)]
    assert [type(m) for m in got] == [Ack] * 5 + [HotlinkReject] * 3
    assert got[5] == HotlinkReject("s5", REASON_RATE_LIMITED)
    # the adapter is told to stop reading the flooder until a token is due (0.1 s)
    assert h.router.conns[CA].pause_until == pytest.approx(h.clock.t + 0.1)
    # per connection: alice's other connection has its own bucket
    assert isinstance(h.open("x", CA2), Ack)
    h.clock.t += 0.25  # 2.5 tokens
    got = [h.open(f"t{i}") for i in range(3)]
    assert [type(m) for m in got] == [Ack, Ack, HotlinkReject]
    h.clock.t += 100  # refill is capped at the burst
    assert sum(isinstance(h.open(f"u{i}"), Ack) for i in range(10)) == 5
    # the connection is still fine: data flows on an accepted session
    h.send(CB, HotlinkAccept("s0"))
    d = HotlinkData("s0", 1)
    assert h.send(CA, d) == [Outgoing(CB, d)]


def test_idle_timeout(tmp_path: Path) -> None:
    h = H(tmp_path, Limits(idle_timeout=60, open_rate=0))
    h.open("busy")
    h.open("quiet")
    h.send(CB, HotlinkAccept("busy"))
    h.send(CB, HotlinkAccept("quiet"))
    t0 = h.clock.t
    assert h.router.expire(t0 + 30) == []
    h.send(CA, HotlinkData("busy", 1))  # activity, at the coarse clock t0 + 30
    out = h.router.expire(t0 + 61)
    close = HotlinkClose("quiet", REASON_IDLE)
    # the sender, the reader, and carol who was offered it but did not accept
    assert sorted(out) == [Outgoing(CA, close), Outgoing(CB, close), Outgoing(CC, close)]
    assert set(h.router.sessions) == {"busy"}
    assert h.router.expire(t0 + 89) == []
    assert {repr(o.msg) for o in h.router.expire(t0 + 91)} == {
        repr(HotlinkClose("busy", REASON_IDLE))
    }
    assert h.router.sessions == {} and h.router.sending_count == {}
    assert h.send(CA, HotlinkData("busy", 2)) == [
        Outgoing(CA, HotlinkReject("busy", "unknown session"))
    ]


def test_advancing_progress_keeps_a_session_alive(tmp_path: Path) -> None:
    """A session whose data goes agent to agent (direct path) shows no data here; its
    reader's progress reports count as activity, a repeated seq does not."""
    h = H(tmp_path, Limits(idle_timeout=60, open_rate=0))
    h.open("direct")
    h.send(CB, HotlinkAccept("direct"))
    t0 = h.clock.t
    h.router.expire(t0 + 50)
    h.send(CB, HotlinkProgress("direct", 500))  # at the coarse clock t0 + 50
    assert h.router.expire(t0 + 100) == []
    h.router.expire(t0 + 105)
    h.send(CB, HotlinkProgress("direct", 500))  # nothing new delivered: not activity
    assert {repr(o.msg) for o in h.router.expire(t0 + 111)} == {
        repr(HotlinkClose("direct", REASON_IDLE))
    }


def test_idle_timeout_disabled_and_accept_counts(tmp_path: Path) -> None:
    h = H(tmp_path, Limits(idle_timeout=0))
    h.open("s")
    assert h.router.expire(h.clock.t + 1e9) == []
    h = H(tmp_path, Limits(idle_timeout=10))
    h.open("s")
    h.clock.t += 8
    h.send(CB, HotlinkAccept("s"))  # control traffic counts as activity
    assert h.router.expire(h.clock.t + 5) == []
    assert h.router.expire(h.clock.t + 11) != []


def test_cli_flags_and_defaults() -> None:
    args = build_parser().parse_args(["serve", "--data", "d"])
    d = Limits()
    assert (args.max_sessions_per_user, args.open_rate, args.open_burst, args.idle_timeout) == (
        d.max_sessions_per_user,
        d.open_rate,
        d.open_burst,
        d.idle_timeout,
    )
    assert (d.max_sessions_per_user, d.open_rate, d.open_burst, d.idle_timeout) == (
        256,
        100.0,
        200,
        600.0,
    )
    assert args.max_queue is None
    args = build_parser().parse_args(
        ["serve", "--data", "d", "--max-queue", "1MiB", "--idle-timeout", "0.5"]
    )
    assert args.max_queue == 1 << 20 and args.idle_timeout == 0.5
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--data", "d", "--open-rate", "-1"])


def test_server_wires_limits(tmp_path: Path) -> None:
    srv = RelayServer(tmp_path, max_message=4096, max_queue_bytes=1 << 20, limits=Limits(9))
    assert srv.router.limits.max_sessions_per_user == 9 and srv.max_queue_bytes == 1 << 20
    assert RelayServer(tmp_path, max_message=32 << 20).max_queue_bytes == 128 << 20
    assert RelayServer(tmp_path, limits=Limits(idle_timeout=2)).tick_interval == 0.2
    assert RelayServer(tmp_path).tick_interval == 1.0
