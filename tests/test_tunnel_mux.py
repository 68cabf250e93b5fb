"""agent/tunnels/mux.py and frames.py without sockets: two muxes wired back to back."""

from __future__ import annotations

import pytest
from hotlink.agent.tunnels import frames as F
from hotlink.agent.tunnels import mux as M
from hotlink.wire.errors import ProtocolError


class Pair:
    """A forward mux and an expose mux; `Send` effects are delivered by `pump`."""

    def __init__(self, window: int = 4096, connect_timeout: float = 5.0) -> None:
        self.now = 0.0
        self.fwd = M.Mux(M.Side.FORWARD, epoch=1, now=0, window=window,
                         connect_timeout=connect_timeout, peer_timeout=30)  # fmt: skip
        self.exp = M.Mux(M.Side.EXPOSE, epoch=2, now=0, window=window, peer_timeout=30)
        self.to_exp: list[bytes] = []
        self.to_fwd: list[bytes] = []
        self.fwd_fx: list[M.Effect] = []
        self.exp_fx: list[M.Effect] = []
        self.take(self.fwd, self.fwd.start())
        self.take(self.exp, self.exp.start())

    def take(self, mux: M.Mux, effects: list[M.Effect]) -> None:
        for e in effects:
            if isinstance(e, M.Send):
                (self.to_exp if mux is self.fwd else self.to_fwd).append(e.payload)
            else:
                (self.fwd_fx if mux is self.fwd else self.exp_fx).append(e)

    def pump(self) -> None:
        while self.to_exp or self.to_fwd:
            a, self.to_exp = self.to_exp, []
            for p in a:
                self.take(self.exp, self.exp.receive(p, self.now))
            b, self.to_fwd = self.to_fwd, []
            for p in b:
                self.take(self.fwd, self.fwd.receive(p, self.now))

    def pop(self, side: str, kind: type) -> list:
        fx = self.fwd_fx if side == "fwd" else self.exp_fx
        got = [e for e in fx if isinstance(e, kind)]
        fx[:] = [e for e in fx if not isinstance(e, kind)]
        return got

    def open(self) -> int:
        cid, fx = self.fwd.accept(self.now)
        self.take(self.fwd, fx)
        self.pump()
        assert [c.conn for c in self.pop("exp", M.Connect)] == [cid]
        self.take(self.exp, self.exp.connected(cid))
        self.pump()
        return cid

    def written(self, side: str, cid: int) -> bytes:
        out = b"".join(e.data for e in self.pop(side, M.Write) if e.conn == cid)
        if out:
            mux = self.fwd if side == "fwd" else self.exp
            self.take(mux, mux.tcp_written(cid, len(out)))
            self.pump()
        return out


def test_frames_roundtrip_and_garbage() -> None:
    for kind, value, data in [(F.Kind.HELLO, 2**63 - 1, b""), (F.Kind.OPEN, 65536, b""),
                              (F.Kind.DATA, 0, b"abc"), (F.Kind.RST, 0, b"why"),
                              (F.Kind.FIN, 0, b""), (F.Kind.CREDIT, 7, b"")]:  # fmt: skip
        f = F.decode(F.encode(kind, 9, value, data))
        assert (f.kind, f.conn, f.value, f.data) == (kind, 9, value, data)
    for bad in [b"", b"\x04\x00", b"\x63\x00\x00\x00\x01", b"\x02\x00\x00\x00\x01\x00",
                b"\x05\x00\x00\x00\x01x"]:  # fmt: skip
        with pytest.raises(ProtocolError):
            F.decode(bad)


def test_open_data_both_ways_and_half_close() -> None:
    p = Pair()
    cid = p.open()
    assert p.pop("fwd", M.ResumeRead) and p.pop("fwd", M.Opened) and p.pop("exp", M.Opened)
    p.take(p.fwd, p.fwd.tcp_data(cid, b"request"))
    p.pump()
    assert p.written("exp", cid) == b"request"
    # client half-closes: the target sees EOF, can still answer
    p.take(p.fwd, p.fwd.tcp_eof(cid))
    p.pump()
    assert [e.conn for e in p.pop("exp", M.ShutdownWrite)] == [cid]
    p.take(p.exp, p.exp.tcp_data(cid, b"response"))
    p.take(p.exp, p.exp.tcp_eof(cid))
    p.pump()
    assert p.written("fwd", cid) == b"response"
    assert p.pop("fwd", M.ShutdownWrite) and p.pop("fwd", M.Close) and p.pop("exp", M.Close)
    ended = p.pop("fwd", M.Ended) + p.pop("exp", M.Ended)
    assert [e.clean for e in ended] == [True, True]
    assert not p.fwd.conns and not p.exp.conns
    assert p.fwd.counters.resets == 0 and p.fwd.counters.bytes_out == 7


def test_credit_stops_the_reader_and_bounds_memory() -> None:
    p = Pair(window=4096)
    cid = p.open()
    p.pop("fwd", M.ResumeRead)
    p.take(p.fwd, p.fwd.tcp_data(cid, b"x" * 10000))
    p.pump()
    # only the window went out; the rest waits and the TCP end is paused
    sent = p.pop("exp", M.Write)
    assert sum(len(e.data) for e in sent) == 4096
    assert p.pop("fwd", M.PauseRead)
    assert len(p.fwd.conns[cid].outbuf) == 10000 - 4096
    # the target side writes them out: credit flows back, more data comes, reading resumes
    total = 4096
    p.take(p.exp, p.exp.tcp_written(cid, 4096))
    for _ in range(10):
        p.pump()
        got = p.pop("exp", M.Write)
        n = sum(len(e.data) for e in got)
        if not n:
            break
        total += n
        p.take(p.exp, p.exp.tcp_written(cid, n))
    assert total == 10000
    assert p.pop("fwd", M.ResumeRead)
    assert p.exp.conns[cid].in_flight <= 4096


def test_data_over_the_window_is_a_violation() -> None:
    p = Pair(window=1024)
    cid = p.open()
    fx = p.exp.receive(F.encode(F.Kind.DATA, cid, data=b"y" * 2000), 0)
    assert any(isinstance(e, M.Abort) for e in fx)
    assert any(isinstance(e, M.Send) and F.decode(e.payload).kind is F.Kind.RST for e in fx)
    assert cid not in p.exp.conns


def test_target_refused_resets_the_client() -> None:
    p = Pair()
    cid, fx = p.fwd.accept(0)
    p.take(p.fwd, fx)
    p.pump()
    assert p.pop("exp", M.Connect)
    p.take(p.exp, p.exp.connect_failed(cid, "connection refused"))
    p.pump()
    aborts = p.pop("fwd", M.Abort)
    assert aborts and "connection refused" in aborts[0].reason
    assert p.fwd.counters.refused == 1 and p.exp.counters.refused == 1
    assert (
        p.fwd.counters.last_refusal == p.exp.counters.last_refusal == ("target: connection refused")
    )
    assert not p.fwd.conns and not p.exp.conns


def test_open_unanswered_times_out() -> None:
    p = Pair(connect_timeout=5.0)
    cid, fx = p.fwd.accept(0)
    p.take(p.fwd, fx)  # never delivered: the other side is not there
    assert p.fwd.next_deadline() == 5.0
    p.take(p.fwd, p.fwd.handle_timer(5.0))
    assert p.pop("fwd", M.Abort) and cid not in p.fwd.conns


def test_peer_restart_resets_connections() -> None:
    p = Pair()
    cid = p.open()
    fx = p.exp.receive(F.encode(F.Kind.HELLO, 0, 99), 0)  # forward side came back
    assert [e.conn for e in fx if isinstance(e, M.Abort)] == [cid]
    # frames for connections the other side forgot are answered with RST
    fx = p.fwd.receive(F.encode(F.Kind.DATA, 77, data=b"z"), 0)
    assert F.decode(fx[0].payload).kind is F.Kind.RST  # type: ignore[union-attr]


def test_silent_peer_resets_and_pings_keep_alive() -> None:
    p = Pair()
    cid = p.open()
    fx = p.fwd.handle_timer(M.PING_INTERVAL)
    assert any(isinstance(e, M.Send) and F.decode(e.payload).kind is F.Kind.PING for e in fx)
    fx = p.fwd.handle_timer(31.0)
    assert [e.conn for e in fx if isinstance(e, M.Abort)] == [cid]


def test_local_reset_propagates() -> None:
    p = Pair()
    cid = p.open()
    p.take(p.fwd, p.fwd.tcp_lost(cid, "tcp: reset"))
    p.pump()
    assert p.pop("exp", M.Abort)[0].reason == "tcp: reset"
    assert p.fwd.counters.resets == 1 and p.exp.counters.resets == 1


def test_shutdown_resets_all() -> None:
    p = Pair()
    ids = [p.open() for _ in range(3)]
    fx = p.exp.shutdown("tunnel closed")
    assert sorted(e.conn for e in fx if isinstance(e, M.Abort)) == ids
    p.take(p.exp, [e for e in fx if isinstance(e, M.Send)])
    p.pump()
    assert sorted(e.conn for e in p.pop("fwd", M.Abort)) == ids


def test_idle_tunnel_does_not_reset_its_next_connection() -> None:
    p = Pair()
    p.now = 500.0  # long idle: no frames, no connections
    cid = p.open()
    assert p.fwd.next_deadline() is not None and p.fwd.next_deadline() > 500.0
    assert not [e for e in p.fwd.handle_timer(500.0) if isinstance(e, M.Abort)]
    assert cid in p.fwd.conns


def test_owner_restart_keeps_opens_the_new_instance_will_answer() -> None:
    p = Pair()
    old = p.open()
    cid, fx = p.fwd.accept(0)  # opened while the owner restarts
    p.take(p.fwd, fx)
    fx = p.fwd.receive(F.encode(F.Kind.HELLO, 0, 77), 0)
    assert [e.conn for e in fx if isinstance(e, M.Abort)] == [old]
    assert cid in p.fwd.conns
    fx = p.fwd.receive(F.encode(F.Kind.OPEN_OK, cid, 4096), 0)
    assert any(isinstance(e, M.Opened) for e in fx)


def test_stale_frames_for_a_reused_id_are_ignored_while_opening() -> None:
    p = Pair()
    cid, fx = p.fwd.accept(0)
    p.take(p.fwd, fx)
    # a FIN/DATA/CREDIT about an older connection with this id (the owner had not seen
    # our new HELLO yet) must not touch the new connection
    for stale in (F.encode(F.Kind.FIN, cid), F.encode(F.Kind.DATA, cid, data=b"old"),
                  F.encode(F.Kind.CREDIT, cid, 5)):  # fmt: skip
        assert p.fwd.receive(stale, 0) == []
    c = p.fwd.conns[cid]
    assert not c.fin_recv and c.credit == 0 and c.in_flight == 0
    m = M.Mux(M.Side.FORWARD, epoch=3, now=0, first_id=0xFFFFFFFF)
    assert m.accept(0)[0] == 0xFFFFFFFF and m.accept(0)[0] == 1
