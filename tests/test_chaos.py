"""Chaos: real relay + agent processes while links break and processes die.

A numbered stream flows alice -> bob (apps on stream.sock) while the relay is killed
(-9) and restarted on the same port and data dir, and the agents' WebSocket links are
reset by a loopback TCP proxy between the agents and the relay (`chaos_proxy.py`).
Checked: the reader app gets every frame exactly once and in order. The longest stall
(largest gap between consecutive arrivals) is printed, never asserted.

Default suite: a reduced run (`test_chaos_reduced`, ~25 s). Full parameters (20 relay
restarts, 100 link drops):

    HOTLINK_CHAOS_FULL=1 pytest tests/test_chaos.py -s        # or:
    pytest tests/test_chaos.py -m slow -s

Every chaos knob of the full run can be overridden with HOTLINK_CHAOS_<NAME>
(RESTARTS, DROPS, RATE, SIZE, SEED, DURATION), e.g. HOTLINK_CHAOS_SEED=7.
"""

from __future__ import annotations

import os
import random
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from chaos_proxy import ThreadedChaosProxy
from fixtures_agent import AgentProcess, AppClient
from hotlink.v1 import agent_pb2 as pb
from hotlink.wire.frames import Frame, encode_frame

pytestmark = pytest.mark.e2e

A = "alice@example.org"
B = "bob@example.org"
REL = "_mpc/chaos"
PATH = f"{A}/{REL}"
IDX = struct.Struct(">Q")


# --------------------------------------------------------------------------- helpers


class Via:
    """What `AgentProcess` needs from a relay (`url`, `write_token`), with the URL of
    the chaos proxy in front of the real relay."""

    def __init__(self, relay: Any, url: str) -> None:
        self.relay = relay
        self.url = url

    def write_token(self, email: str, path: Path) -> Path:
        return self.relay.write_token(email, path)


class Writer(threading.Thread):
    """Sends frames 0, 1, 2, ... (index in the first 8 payload bytes) at `rate`/s."""

    def __init__(self, app: AppClient, rate: float, size: int) -> None:
        super().__init__(daemon=True, name="chaos-writer")
        self.app = app
        self.rate = rate
        self.pad = b"x" * max(0, size - IDX.size)
        self.sent = 0
        self.stop_at: int | None = None
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        tick = 0.01
        per_tick = max(1.0, self.rate * tick)
        t0 = time.monotonic()
        credit = 0.0
        try:
            while not self.halt.is_set():
                if self.stop_at is not None and self.sent >= self.stop_at:
                    return
                credit += per_tick
                n = int(credit)
                credit -= n
                if self.stop_at is not None:
                    n = min(n, self.stop_at - self.sent)
                buf = bytearray()
                for i in range(self.sent, self.sent + n):
                    buf += encode_frame(Frame(IDX.pack(i) + self.pad))
                if buf:
                    self.app.send_raw(bytes(buf))  # blocks under agent back-pressure
                    self.sent += n
                t0 += tick
                delay = t0 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    t0 = time.monotonic()
        except BaseException as exc:
            self.error = exc


@dataclass
class Received:
    idx: list[int] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    at: list[float] = field(default_factory=list)


class Reader(threading.Thread):
    """Reads frames from a reader app connection, recording index, seq and time."""

    def __init__(self, app: AppClient, into: Received | None = None) -> None:
        super().__init__(daemon=True, name="chaos-reader")
        self.app = app
        self.got = into if into is not None else Received()
        self.halt = threading.Event()
        self.hold = threading.Event()  # set: stop reading (a slow app)
        self.eof = False
        self.error: BaseException | None = None
        app.sock.settimeout(0.2)

    def run(self) -> None:
        got = self.got
        try:
            while not self.halt.is_set():
                if self.hold.is_set():
                    time.sleep(0.01)
                    continue
                try:
                    f = self.app.recv()
                except TimeoutError:
                    continue
                except (EOFError, ConnectionError):
                    self.eof = True
                    return
                got.idx.append(IDX.unpack_from(f.payload)[0])
                got.seq.append(f.seq)
                got.at.append(time.monotonic())
        except BaseException as exc:
            self.error = exc


def check_exactly_once(idx: list[int], total: int) -> dict[str, Any]:
    """Missing/duplicated/out-of-order indices of a received sequence of 0..total-1."""
    seen: set[int] = set()
    dups: list[int] = []
    disorder = 0
    prev = -1
    for i in idx:
        if i in seen:
            dups.append(i)
        seen.add(i)
        if i < prev:
            disorder += 1
        prev = max(prev, i)
    missing = sorted(set(range(total)) - seen)
    return {"missing": missing, "dups": dups, "disorder": disorder}


def ranges(xs: list[int]) -> str:
    """[1,2,3,7,9,10] -> '1-3,7,9-10' (first 12 ranges)."""
    out: list[str] = []
    start = prev = None
    for x in xs:
        if start is None:
            start = prev = x
        elif x == prev + 1:  # type: ignore[operator]
            prev = x
        else:
            out.append(f"{start}-{prev}" if start != prev else f"{start}")
            start = prev = x
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else f"{start}")
    more = f" (+{len(out) - 12} more ranges)" if len(out) > 12 else ""
    return ",".join(out[:12]) + more


def max_stall(at: list[float], start: float) -> tuple[float, int]:
    """Largest gap between consecutive arrivals (the first one counted from `start`),
    and the index (position) after which it happened."""
    best, pos, prev = 0.0, -1, start
    for k, t in enumerate(at):
        if t - prev > best:
            best, pos = t - prev, k - 1
        prev = t
    return best, pos


def open_pair(alice: AgentProcess, bob: AgentProcess) -> None:
    assert alice.open(REL).state == pb.SESSION_STATE_OPEN
    bob.open(PATH)
    bob.wait_session(PATH, lambda s: s.state == pb.SESSION_STATE_OPEN)
    alice.wait_session(PATH, lambda s: B in s.readers)


def agent_figures(a: AgentProcess) -> str:
    try:
        st = a.status()
        s = a.session(PATH)
    except Exception as exc:  # the report must not hide the real failure
        return f"{a.email}: unavailable ({exc})"
    c = s.counters
    return (
        f"{a.email}: reconnects={st.counters.reconnects} drops={st.counters.drops} "
        f"session state={pb.SessionState.Name(s.state)} last_seq={s.last_seq} "
        f"sent={c.frames_sent} received={c.frames_received} queued={c.queued} "
        f"session drops={c.drops}"
    )


class Flow:
    """alice's app streams numbered frames to bob's app while a test breaks things."""

    def __init__(self, alice: AgentProcess, bob: AgentProcess, rate: float, size: int) -> None:
        self.alice, self.bob = alice, bob
        open_pair(alice, bob)
        self.got = Received()
        self.reader = Reader(AppClient(bob.session_dir(PATH)), self.got)
        self.writer = Writer(AppClient(alice.session_dir(PATH)), rate, size)
        bob.wait_session(PATH, lambda s: s.ipc_clients == 1)
        self.t0 = 0.0
        self.reader_eofs = 0

    def start(self) -> Flow:
        self.t0 = time.monotonic()
        self.reader.start()
        self.writer.start()
        return self

    def reconnect_reader(self, timeout: float = 20.0) -> None:
        """The reader app reads what its old connection still holds up to EOF (its
        agent died), then connects again (after the agent's restart), same record."""
        old = self.reader
        old.hold.clear()
        old.join(10)
        assert old.eof, "the old reader connection did not end"
        self.reader_eofs += 1
        self.reader = Reader(AppClient(self.bob.session_dir(PATH), timeout=timeout), self.got)
        self.reader.start()

    def finish(self, drain_timeout: float = 30.0, **extra: Any) -> dict[str, Any]:
        w, r = self.writer, self.reader
        try:
            w.stop_at = w.sent
            w.join(30)
            total = w.sent
            stream_end = time.monotonic()
            # Drain: until all arrived; or the last one arrived and nothing else came
            # for 5 s (the reorder timeout is 2 s: what is missing then is lost); or
            # nothing arrived at all for `drain_timeout`.
            last_n, last_t = -1, time.monotonic()
            while len(self.got.idx) < total and not r.eof:
                n = len(self.got.idx)
                if n != last_n:
                    last_n, last_t = n, time.monotonic()
                elif time.monotonic() - last_t > (
                    5 if n and self.got.idx[-1] == total - 1 else drain_timeout
                ):
                    break
                time.sleep(0.05)
            drained = time.monotonic()
        finally:
            w.halt.set()
            r.halt.set()
            w.join(5)
            r.join(5)
        got = self.got
        res = check_exactly_once(got.idx, total)
        stall, pos = max_stall(got.at, self.t0)
        report = {
            "sent": total,
            "received": len(got.idx),
            "missing": len(res["missing"]),
            "missing_ranges": ranges(res["missing"]),
            "duplicates": len(res["dups"]),
            "dup_ranges": ranges(sorted(set(res["dups"]))),
            "disorder": res["disorder"],
            **extra,
            "max_stall_s": round(stall, 3),
            # an incomplete stream also stalled from its last arrival to the end
            "stalled_at_end_s": round(drained - got.at[-1], 2)
            if got.at and got.idx[-1] != total - 1
            else 0.0,
            "max_stall_after_idx": got.idx[pos] if 0 <= pos < len(got.idx) else None,
            "stream_s": round(stream_end - self.t0, 1),
            "drain_s": round(drained - stream_end, 2),
            "reader_eof": r.eof,
            "writer_error": repr(w.error) if w.error else "",
            "alice": agent_figures(self.alice),
            "bob": agent_figures(self.bob),
        }
        return report


def show(title: str, report: dict[str, Any]) -> None:
    print(f"\n{title}")
    for k, v in report.items():
        print(f"  {k}: {v}")


def assert_clean(r: dict[str, Any]) -> None:
    assert not r["writer_error"], r
    assert not r["reader_eof"], r
    assert r["missing"] == 0 and r["duplicates"] == 0 and r["disorder"] == 0, (
        f"lost {r['missing']} ({r['missing_ranges']}), duplicated {r['duplicates']} "
        f"({r['dup_ranges']}), {r['disorder']} out of order; {r['alice']}; {r['bob']}"
    )


# ------------------------------------------------------------------------ the chaos run

#: who a link reset hits: both agents' links, alice's (sender) or bob's (reader) only
ALL, SENDER, READER = "all", "sender", "reader"
_EMAILS = {ALL: None, SENDER: [A], READER: [B]}


@dataclass
class ChaosParams:
    restarts: int
    drops: int
    rate: float  # frames per second
    size: int  # payload bytes
    duration: float  # seconds of streaming while chaos happens
    targets: tuple[str, ...] = (ALL, SENDER)
    seed: int = 1
    #: fraction of link resets that also refuse reconnects for a moment
    refuse_share: float = 0.3

    @classmethod
    def from_env(cls, **defaults: Any) -> ChaosParams:
        p = cls(**defaults)
        for name, conv in (
            ("restarts", int),
            ("drops", int),
            ("rate", float),
            ("size", int),
            ("duration", float),
            ("seed", int),
        ):
            v = os.environ.get(f"HOTLINK_CHAOS_{name.upper()}")
            if v:
                setattr(p, name, conv(v))
        return p


def schedule(p: ChaosParams) -> list[tuple[float, str, dict[str, Any]]]:
    """Chaos events at random moments of the streaming window (after a 1 s warm-up);
    relay restarts spread evenly (jittered) so each has time to take effect."""
    rng = random.Random(p.seed)
    span = p.duration - 1.5
    ev: list[tuple[float, str, dict[str, Any]]] = []
    slot = span / max(1, p.restarts)
    for k in range(p.restarts):
        at = 1.0 + k * slot + rng.uniform(0, slot * 0.5)
        ev.append((at, "restart", {"down": rng.uniform(0.0, 0.4)}))
    for _ in range(p.drops):
        who = rng.choice(p.targets)
        refuse = rng.uniform(0.05, 0.4) if rng.random() < p.refuse_share else 0.0
        kw = {"emails": _EMAILS[who], "refuse_for": refuse}
        ev.append((1.0 + rng.uniform(0, span), "drop", kw))
    ev.sort(key=lambda e: e[0])
    return ev


def run_chaos(p: ChaosParams, relay: Any, agent_factory: Any) -> dict[str, Any]:
    with ThreadedChaosProxy("127.0.0.1", relay.port) as proxy:
        via = Via(relay, proxy.url)
        flow = Flow(agent_factory(A, relay_=via), agent_factory(B, relay_=via), p.rate, p.size)
        done = {"restart": 0, "drop": 0, "links_reset": 0}
        flow.start()
        try:
            for at, kind, kw in schedule(p):
                delay = flow.t0 + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if kind == "restart":
                    relay.kill()
                    time.sleep(kw["down"])
                    relay.start()
                else:
                    done["links_reset"] += proxy.drop(**kw)
                done[kind] += 1
            rest = flow.t0 + p.duration - time.monotonic()
            if rest > 0:
                time.sleep(rest)
        finally:
            report = flow.finish(
                relay_restarts=done["restart"],
                drop_events=done["drop"],
                links_reset=done["links_reset"],
                proxy=proxy.stats(),
            )
    show(f"CHAOS {p}", report)
    return report


@pytest.fixture
def relay(relay_factory):
    """The relay at INFO: at DEBUG, websockets logs every frame (slow under load)."""
    return relay_factory(log_level="INFO")


def _full_requested(config: pytest.Config) -> bool:
    if os.environ.get("HOTLINK_CHAOS_FULL"):
        return True
    expr = (config.getoption("markexpr", "") or "").replace(" ", "")
    return "slow" in expr and "notslow" not in expr


# -------------------------------------------------------------------------- the tests


def test_chaos_reduced(relay, agent_factory):
    """Default suite: 3 relay kill -9/restarts and 15 resets of both links or the
    sender's link during ~12 s of streaming: exactly once, in order."""
    p = ChaosParams.from_env(restarts=3, drops=15, rate=400, size=64, duration=12)
    assert_clean(run_chaos(p, relay, agent_factory))


# Passes in the default fallback mode (ON_FAILURE): bob reports what he
# delivered (HotlinkProgress) and alice writes the unconfirmed frames as fallback files
# when his leg closes. With --fallback off the finding still holds.
def test_reader_link_reset_loses_in_flight_frames(relay, agent_factory):
    """The reader's link stalls then dies 3 times while alice streams: the frames the
    relay had forwarded to the dead connection never reach bob's app."""
    with ThreadedChaosProxy("127.0.0.1", relay.port) as proxy:
        via = Via(relay, proxy.url)
        flow = Flow(agent_factory(A, relay_=via), agent_factory(B, relay_=via), 300, 64)
        flow.start()
        try:
            for _ in range(3):
                time.sleep(1.0)
                assert proxy.drop(emails=[B], stall=0.3) == 1
                time.sleep(0.3)
                flow.bob.wait_link(pb.LINK_STATE_UP)
            time.sleep(1.0)
        finally:
            report = flow.finish(proxy=proxy.stats())
    show("READER LINK RESETS", report)
    assert_clean(report)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "targets",
    [
        pytest.param((ALL, SENDER), id="relay+sender-links"),
        # passes with reader acks and re-send (seeds 1 and 7: 0 lost, longest stall 3.1 / 3.8 s)
        pytest.param((ALL, SENDER, READER), id="relay+all-links"),
    ],
)
def test_chaos_full(relay, agent_factory, request, targets):
    """20 relay kill -9/restarts and 100 link resets during 60 s of streaming (see the
    module docstring). With reader-only resets, finding 1 makes loss likely."""
    if not _full_requested(request.config):
        pytest.skip("full chaos run: set HOTLINK_CHAOS_FULL=1 or select -m slow")
    p = ChaosParams.from_env(
        restarts=20, drops=100, rate=500, size=128, duration=60, targets=targets
    )
    assert_clean(run_chaos(p, relay, agent_factory))


def _half_open_run(relay: Any, agent_factory: Any, who: str) -> dict[str, Any]:
    """Reset `who`'s link on the agent's side only; the relay's side of the old
    connection stays open (silent) for 2 s, so the agent is back before the relay
    notices the old one is gone (a silently lost path; in production the relay would
    notice after its ping timeout, ~20-40 s)."""
    with ThreadedChaosProxy("127.0.0.1", relay.port) as proxy:
        via = Via(relay, proxy.url)
        flow = Flow(agent_factory(A, relay_=via), agent_factory(B, relay_=via), 200, 64)
        flow.start()
        try:
            time.sleep(1.0)
            assert proxy.drop(emails=[who], half_open=2.0) == 1
            time.sleep(5.0)
        finally:
            report = flow.finish(drain_timeout=8, proxy=proxy.stats())
    show(f"HALF-OPEN {who}", report)
    return report


# Passes in the default fallback mode (ON_FAILURE): with no reader known
# alice is on the file path, so the frames reach bob as files. The finding (`readers`
# cleared, no new Accept) still holds for --fallback off.
def test_sender_reconnects_before_relay_notices_old_link(relay, agent_factory):
    """Finding 2 (permanent stall). alice's link dies silently and she reconnects
    before the relay sees the old connection go. Her re-open (same sid) re-binds the
    relay's session to the new connection and keeps its reader legs
    (relay/router.py Router._open, 'reconnect: re-bind'), so the relay answers with an
    Ack only: no new Accept. But alice cleared `readers` on link down
    (agent/sessions.py SessionManager.on_link_down: `s.readers.clear()`), and frames
    are only sent with at least one reader (Session.app_frames `direct` / Session.flush
    `self.readers`): alice queues forever; when the relay later drops the old
    connection nothing happens (the sid was moved off it). The stream never resumes."""
    assert_clean(_half_open_run(relay, agent_factory, A))


# Passes: the relay replaces bob's old leg when his new connection
# accepts (no delivery to the dead one, no Close for it later), and bob's Accept carries
# the last seq he delivered, so alice re-sends what the dead leg swallowed.
def test_reader_reconnects_before_relay_notices_old_link(relay, agent_factory):
    """Finding 3 (loss, then permanent stall). bob's link dies silently; he reconnects
    and re-accepts on a new connection while the relay still has his old leg: the relay
    delivers to both legs (readers are keyed by connection), frames on the dead one are
    lost (finding 1). When the relay then drops the old connection it sends alice
    Close(sid, 'reader disconnected', frm=bob) (Router.disconnect), and alice removes
    bob from `readers` although his new leg is live (agent/sessions.py
    SessionManager._on_close: `s.readers.discard(msg.frm)` — readers are keyed by
    email on the agent): alice stops sending for good."""
    assert_clean(_half_open_run(relay, agent_factory, B))


# Passes: bob confirms only frames his agent handed to the kernel (not
# those in its socket buffers), restores that seq from its state file and puts it in
# his Accept; alice re-sends from there (or, in ON_FAILURE, the files carry them).
def test_reader_agent_killed_and_restarted(relay, agent_factory):
    """kill -9 of bob's agent mid-stream, restart with the same root, re-open: bob's app
    reconnects to stream.sock and must get every frame it did not get before, once.

    bob's app is busy for 0.6 s before the kill (4 KiB frames at 300/s: more than the
    UNIX socket buffer), so frames the agent accepted are still in its write buffer."""
    reader_agent_killed_and_restarted(relay, agent_factory, "off")


def reader_agent_killed_and_restarted(relay: Any, agent_factory: Any, direct: str) -> None:
    """The run of `test_reader_agent_killed_and_restarted`. With `direct="auto"` the
    frames go by the agents' direct link, which dies with bob's agent; the restarted
    one is reached by the relay until its new link is up."""
    args = ["--direct", direct]
    alice = agent_factory(A, args=args)
    bob = agent_factory(B, args=args)
    flow = Flow(alice, bob, 300, 4096)
    if direct == "auto":
        alice.wait_session(PATH, lambda s: s.active_path == pb.ACTIVE_PATH_DIRECT, 20)
    flow.start()
    try:
        time.sleep(1.0)
        flow.reader.hold.set()
        time.sleep(0.6)
        bob.kill()
        alice.wait_session(PATH, lambda s: B not in s.readers)
        time.sleep(0.5)  # alice keeps streaming with no reader: she queues
        bob.start()
        # whoever runs the app re-opens its session; the restored session may still wait
        # for its catch-up and the relay's verdict: give that a loaded machine's time
        # instead of the agent's 5 s default (seen to run out in the full suite)
        bob.open(PATH, timeout_seconds=60)
        flow.reconnect_reader()
        bob.wait_session(PATH, lambda s: s.state == pb.SESSION_STATE_OPEN)
        if direct == "auto":  # the stream goes on over a new link
            alice.wait_session(PATH, lambda s: s.active_path == pb.ACTIVE_PATH_DIRECT, 20)
        time.sleep(1.5)
    finally:
        report = flow.finish(drain_timeout=10, reader_reconnects=flow.reader_eofs)
    show(f"READER AGENT KILL -9 + RESTART (--direct {direct})", report)
    assert_clean(report)
    if direct == "auto":  # the restarted agent's new link carried frames too
        assert bob.session(PATH).counters.frames_direct > 0
