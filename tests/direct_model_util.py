"""A discrete-event model of the direct path (helper of tests/test_direct_model.py).

Why a model: the switching races of `DirectSenderStream` (agent/core/sender_direct.py)
need a link event within a few milliseconds of another event (a frame in flight, an
Accept on its way, a refetch's re-send), which real-process runs hit once in many
hours. Here the real sender core and the real reader cores (`ReaderStream`, with its
reorder buffer, join and refetch logic) are joined by a simulated network driven by a
priority queue of (time, event), so thousands of random interleavings run in seconds
and any one of them replays exactly from its seed.

What is simulated, and why that way (docs/design.md "Direct path: negotiation and
switching"; the glue in agent/sessions.py, agent/sender_session.py,
agent/reader_session.py, agent/direct/service.py):

- the relay: a node between sender and readers. Each hop (sender <-> relay, relay <->
  reader) is a FIFO with a jittered one-way delay (one WebSocket each: the relay
  never reorders a connection), ~5 ms sender to reader in all. A data frame reaching
  the relay is fanned out to the legs it has at that moment; a reader's Accept adds
  its leg there, is acked back, and reaches the sender one hop later (so frames from
  the leg's creation on reach the reader before the sender knows it exists);
- direct links: per reader, FIFO both ways, ~0.5 ms. A link comes up a random while
  after the sender saw the reader's accept (negotiation), and flaps: when it breaks,
  whatever is in flight on it is lost, and the sender learns of it a little later
  (`direct_link_down`); frames it sends on the dead link meanwhile are lost too;
- readers join at random times (the relay's Open reaches them, catch-up of an empty
  store, Accept); their apps may connect late, or leave and come back, with a small
  no-app backlog so frames are refused and refetched (re-Accept with the seq);
- progress: the reader core's own `HotlinkProgress` by the relay (`handle_timer`), and
  the direct service's every `PROGRESS_INTERVAL` over an up link;
- relay stalls (a relay busy storing TEE copies): for 5-40 ms what the sender sends
  it arrives late, still in order, so the relay lags the links;
- the sender's app writes bursts of frames whose payload is their seq, so each reader
  app's deliveries can be checked for gaps, copies and order; it writes on until
  every reader has a leg and is owed some frames.

Runs are short (a few hundred frames), so some draw a reorder window of 16 or 64
seqs and a no-app queue of 8 or 64 frames: what a window of 4 096 meets only with
thousands of frames in flight (a fast stream, a lagging relay) then happens here.
Both are options of the agent (`--reorder-window`, `--reader-queue`); the sender and
the readers get the same values, as with the defaults.

Not simulated: relay drops and reconnects, fallback files (mode OFF), readers leaving,
back-pressure of the sockets (every link is always writable), the time a large
re-send takes on a link (the sender's queue leaves at once).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from hotlink.agent.core.effects import (
    Deliver,
    DeliverBacklog,
    Effect,
    Emit,
    EventType,
    FailApps,
    PauseApps,
    ResumeApps,
    Send,
    Shutdown,
    Transmit,
)
from hotlink.agent.core.limits import StreamLimits, Totals
from hotlink.agent.core.paths import FallbackMode
from hotlink.agent.core.reader import ReaderStream
from hotlink.agent.core.sender_direct import DirectSenderStream
from hotlink.agent.direct.service import PROGRESS_INTERVAL
from hotlink.wire import messages as m
from hotlink.wire.frames import Frame

PATH = "alice@x.org/_mpc/0_to_1"
SENDER = "alice@x.org"
SID = "s1"
#: how long after the last frame the model may take to settle (gap timeouts of 2 s,
#: refetch waits of 1-2 s, and a margin)
DRAIN = 12.0

#: (time, who, what, seq, detail): one line of a run's trace
TraceLine = tuple[float, str, str, int, str]


@dataclass(slots=True)
class Params:
    """One run's random shape, drawn from its seed (printed with a failure)."""

    seed: int
    readers: int
    frames: int
    burst: int
    gap: float
    hop: float
    hop_jitter: float
    direct: float
    direct_jitter: float
    reader_queue: int
    link_life: float
    link_off: float
    detect: float
    reorder_window: int
    stalls: int

    @classmethod
    def draw(cls, seed: int) -> Params:
        r = random.Random(seed * 7919 + 1)
        return cls(
            seed=seed,
            readers=r.randint(1, 4),
            frames=r.randint(200, 900),
            burst=r.choice((1, 3, 8, 20)),
            gap=r.choice((0.0005, 0.001, 0.003)),
            hop=0.0025,
            hop_jitter=r.choice((0.0, 0.0005, 0.0015)),
            direct=0.0005,
            direct_jitter=r.choice((0.0, 0.0002, 0.0004)),
            reader_queue=r.choice((8, 64, 4096)),
            link_life=r.choice((0.005, 0.02, 0.08)),
            link_off=r.choice((0.002, 0.01, 0.04)),
            detect=r.choice((0.0, 0.001, 0.004)),
            reorder_window=r.choice((16, 64, 4096)),
            stalls=r.choice((0, 0, 2, 5)),
        )


class Sim:
    """The event queue and the run's trace."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self._q: list[tuple[float, int, Callable[[], None]]] = []
        self._n = 0
        self.trace: list[TraceLine] = []

    def at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._q, (t, self._n, fn))
        self._n += 1

    def log(self, who: str, what: str, seq: int = 0, detail: str = "") -> None:
        self.trace.append((self.now, who, what, seq, detail))

    def stop(self) -> None:
        """Drop every pending event (the run gave up)."""
        self._q.clear()

    def run_until(self, end: float, done: Callable[[], bool]) -> None:
        """Process events up to `end`, stopping early once `done()` holds (checked
        every 50 ms of model time)."""
        check = 0.0
        q = self._q
        while q and q[0][0] <= end:
            t, _, fn = heapq.heappop(q)
            self.now = t
            fn()
            if t >= check:
                check = t + 0.05
                if done():
                    return


class Fifo:
    """One direction of one connection: jittered delay, but never reordered."""

    __slots__ = ("base", "jitter", "last", "sim")

    def __init__(self, sim: Sim, base: float, jitter: float) -> None:
        self.sim, self.base, self.jitter, self.last = sim, base, jitter, 0.0

    def send(self, fn: Callable[[], None]) -> None:
        t = self.sim.now + self.base + self.sim.rng.uniform(-self.jitter, self.jitter)
        self.last = t = max(t, self.last)
        self.sim.at(t, fn)


class Link:
    """One direct link incarnation: what is in flight when it breaks is lost."""

    def __init__(self, sim: Sim, p: Params, n: int) -> None:
        self.alive = True
        self.n = n
        self.to_reader = Fifo(sim, p.direct, p.direct_jitter)
        self.to_sender = Fifo(sim, p.direct, p.direct_jitter)

    def carry(self, fifo: Fifo, fn: Callable[[], None]) -> None:
        if self.alive:
            fifo.send(partial(self._arrive, fn))

    def _arrive(self, fn: Callable[[], None]) -> None:
        if self.alive:
            fn()


@dataclass
class ModelReader:
    """A reader agent: the real `ReaderStream`, its relay connection, its direct link
    and what its apps got."""

    name: str
    rx: ReaderStream
    up: Fifo  # reader -> relay
    down: Fifo  # relay -> reader
    join_at: float
    app_at: float
    app_gone: tuple[float, float] | None
    got: list[int] = field(default_factory=list)
    link: Link | None = None
    links: int = 0
    dprog: int = 0
    timer_at: float | None = None
    joined: bool = False
    #: the first data frame the relay fanned out to this reader before the sender's
    #: answer (`hotlink.stream.start`): its live point
    first_relay: int = 0
    #: the relay passed it the sender's answer: frames after it are the sender's word
    answered: bool = False
    #: the sender's last seq sent when the relay added this reader's leg (-1: never)
    leg_at: int = -1
    #: every seq that reached this reader agent, by either path
    arrived: set[int] = field(default_factory=set)
    #: the answer's seq, and whether an app was connected when the answer came
    answer: int = 0
    app_at_answer: bool = False


class Model:
    """Sender agent, relay and reader agents of one run (see the module doc)."""

    def __init__(self, p: Params) -> None:
        self.p = p
        self.sim = sim = Sim(p.seed)
        rng = sim.rng
        lim = StreamLimits(reader_queue=p.reader_queue, reorder_window=p.reorder_window)
        self.tx = DirectSenderStream(
            PATH, sid=SID, mode=FallbackMode.OFF, limits=lim, totals=Totals(), link_up=True
        )
        self.to_relay = Fifo(sim, p.hop, p.hop_jitter)
        self.from_relay = Fifo(sim, p.hop, p.hop_jitter)
        self.legs: dict[str, ModelReader] = {}
        self.relay_seq = 0
        self.s_links: dict[str, Link] = {}
        self.paused = False
        self.produced = 0
        self.prod_end = 0.0
        self.errors: list[str] = []
        span = p.frames / ((p.burst + 1) / 2) * p.gap  # about how long the app writes
        self.span = span
        self.readers: dict[str, ModelReader] = {}
        for i in range(p.readers):
            name = f"r{i}"
            join = 0.0 if i == 0 or rng.random() < 0.3 else rng.uniform(0, span * 0.7)
            app = join if rng.random() < 0.6 else join + rng.uniform(0, span * 0.6 + 0.05)
            gone = None
            if rng.random() < 0.3:
                a = rng.uniform(app, app + span)
                gone = (a, a + rng.uniform(0.001, 0.1))
            rx = ReaderStream(PATH, sender=SENDER, mode=FallbackMode.OFF, limits=lim, link_up=True)
            self.readers[name] = ModelReader(
                name,
                rx,
                Fifo(sim, p.hop, p.hop_jitter),
                Fifo(sim, p.hop, p.hop_jitter),
                join,
                app,
                gone,
            )
        self.direct_for = {n for n in self.readers if rng.random() < 0.85}

    # --- running ------------------------------------------------------------------

    def run(self) -> None:
        sim = self.sim
        self.s_apply(self.tx.start())
        sim.at(self.sim.rng.uniform(0, 0.005), self.produce)
        for r in self.readers.values():
            sim.at(r.join_at, partial(self.join, r))
            sim.at(r.app_at, partial(self.app_connect, r))
            if r.app_gone:
                sim.at(r.app_gone[0], partial(self.app_leave, r))
                sim.at(r.app_gone[1], partial(self.app_connect, r))
        for _ in range(self.p.stalls):
            sim.at(sim.rng.uniform(0, self.span), self.relay_stall)
        sim.run_until(float("inf"), self.settled)

    def relay_stall(self) -> None:
        """The relay is busy (storing TEE copies, a GC pause): what the sender sends
        it for a while arrives late, in order, and lags the direct links."""
        stall = self.sim.rng.uniform(0.005, 0.04)
        self.sim.log("tx", "relay stall", 0, f"{stall * 1000:.1f} ms")
        self.to_relay.last = max(self.to_relay.last, self.sim.now + stall)

    def flapping(self) -> bool:
        """Links flap while the app writes (and a little after)."""
        return not self.prod_end or self.sim.now < self.prod_end + 0.02

    def settled(self) -> bool:
        """Every app has the last frame, the sender holds nothing: stop. Or give up
        after `DRAIN` (the checks then say what is stuck)."""
        if not self.prod_end:
            return False
        if self.sim.now > self.prod_end + DRAIN:
            self.sim.stop()
            return True
        tx = self.tx
        if tx.pending or tx.recent or self.paused:
            return False
        return all(r.got and r.got[-1] == tx.seq and r.rx.apps for r in self.readers.values())

    def produce(self) -> None:
        """The sender's app writes a burst of frames (payload = seq)."""
        sim, p = self.sim, self.p
        if self.prod_end:
            return
        if not self.paused:
            k = sim.rng.randint(1, p.burst)
            first = self.produced + 1
            self.produced += k
            frames = [Frame(b"%d" % s) for s in range(first, first + k)]
            self.s_apply(self.tx.app_frames(frames))
            # the app writes on until every reader has a leg and is owed some frames
            legs = [r.leg_at for r in self.readers.values()]
            if self.produced >= p.frames and min(legs) >= 0 and self.produced > max(legs) + 10:
                self.prod_end = sim.now
                sim.log("app", "last frame written", self.produced)
                return
        sim.at(sim.now + sim.rng.expovariate(1 / p.gap), self.produce)

    # --- sender agent ----------------------------------------------------------------

    def s_apply(self, effects: list[Effect]) -> None:
        for e in effects:
            t = type(e)
            if t is Transmit:
                self.transmit(e.force, e.fail_over)  # type: ignore[union-attr]
            elif t is Send:
                msg = e.msg  # type: ignore[union-attr]
                if isinstance(msg, (m.HotlinkOpen, m.HotlinkSignal)):
                    self.to_relay.send(partial(self.relay_from_sender, msg))
            elif t is PauseApps:
                self.paused = True
                self.sim.log("app", "paused")
            elif t is ResumeApps:
                self.paused = False
            elif t is FailApps:
                self.errors.append(f"sender FailApps: {e}")
            elif t is Shutdown:
                self.errors.append("sender shut down")
            elif t is Emit and e.type is EventType.PATH_SWITCHED:  # type: ignore[union-attr]
                self.sim.log("tx", "path", 0, f"{self.tx.active_path.name}: {e.reason}")  # type: ignore[union-attr]

    def transmit(self, force: bool, fail_over: bool) -> None:
        """`SenderSession._transmit` / `_transmit_direct` with always-writable links."""
        tx, sim = self.tx, self.sim
        pend = tx.pending
        if pend and (force or tx.can_transmit):
            links = self.s_links
            while pend:
                relay, direct = tx.carriers() if links else (True, ())
                msg = pend[0]  # after carriers(), which may put re-sends in front
                for r in direct:
                    link = links.get(r)
                    if link is not None:
                        link.carry(link.to_reader, partial(self.r_data, self.readers[r], msg, "D"))
                if relay:
                    self.to_relay.send(partial(self.relay_from_sender, msg))
                sim.log("tx", "send", msg.seq, ("relay " if relay else "") + " ".join(direct))
                tx.frame_sent()
        self.s_apply(tx.transmit_done(False, fail_over))

    def s_from_relay(self, msg: m.Message) -> None:
        tx, sim = self.tx, self.sim
        if isinstance(msg, m.HotlinkAccept):
            sim.log(msg.frm, "accept@tx", msg.seq or 0, f"seq={msg.seq} {self._tx_state(msg.frm)}")
            new = msg.frm not in tx.readers
            self.s_apply(tx.on_accept(msg.frm, msg.seq))
            if new and msg.frm in self.direct_for and not self.readers[msg.frm].links:
                self._link_later(self.readers[msg.frm], negotiate=True)
        elif isinstance(msg, m.HotlinkProgress):
            sim.log(msg.frm, "progress@tx", msg.seq, "relay")
            self.s_apply(tx.on_progress(msg.frm, msg.seq))
        elif isinstance(msg, m.Ack):
            self.s_apply(tx.on_acked())

    def _tx_state(self, r: str) -> str:
        tx = self.tx
        flags = [
            n
            for n, on in (
                ("up", r in tx.direct_up),
                ("held", r in tx.direct_held),
                ("unanchored", r in tx.unanchored),
            )
            if on
        ]
        if r in tx.resend_asked:
            flags.append(f"resend_asked={tx.resend_asked[r]}")
        if r in tx.relay_tail:
            flags.append(f"relay_tail={tx.relay_tail[r]}")
        return f"[{','.join(flags)} ack={tx.reader_acks.get(r)} last={tx.last_seq}]"

    # --- relay -------------------------------------------------------------------------

    def relay_from_sender(self, msg: m.Message) -> None:
        if isinstance(msg, m.HotlinkData):
            self.relay_seq = max(self.relay_seq, msg.seq)
            for r in self.legs.values():
                r.down.send(partial(self.r_data, r, msg, "R"))
                if not r.first_relay and not r.answered:
                    r.first_relay = msg.seq
        elif isinstance(msg, m.HotlinkOpen):
            self.from_relay.send(partial(self.s_from_relay, m.Ack("open")))
        elif isinstance(msg, m.HotlinkSignal) and msg.to in self.legs:  # stream.start
            r = self.legs[msg.to]
            r.answered = True
            nxt = msg.seq or 0
            self.sim.log(r.name, "stream.start sent", nxt)
            r.down.send(partial(self.r_call, r, lambda now: self.r_answer(r, nxt, now)))

    def relay_from_reader(self, r: ModelReader, msg: m.Message) -> None:
        if isinstance(msg, m.HotlinkAccept):
            if r.name not in self.legs:
                self.legs[r.name] = r
                r.leg_at = self.tx.last_seq
                self.sim.log(r.name, "leg added", self.relay_seq, f"tx last={r.leg_at}")
            r.down.send(partial(self.r_acked, r))
            fwd = m.HotlinkAccept(msg.sid, r.name, msg.seq)
            self.from_relay.send(partial(self.s_from_relay, fwd))
        elif isinstance(msg, m.HotlinkProgress):
            fwd_p = m.HotlinkProgress(msg.sid, msg.seq, r.name)
            self.from_relay.send(partial(self.s_from_relay, fwd_p))
        elif isinstance(msg, m.FileSync):  # an empty store: one empty page
            page = m.FileSync(PATH, sid=SID, more=False)
            r.down.send(partial(self.r_call, r, lambda now: r.rx.on_file_sync(page, now)))

    # --- direct links --------------------------------------------------------------------

    def _link_later(self, r: ModelReader, negotiate: bool = False) -> None:
        rng, p = self.sim.rng, self.p
        wait = rng.uniform(0.001, 0.03) if negotiate else rng.expovariate(1 / p.link_off)
        self.sim.at(self.sim.now + wait, partial(self.link_up, r))

    def link_up(self, r: ModelReader) -> None:
        if not self.flapping() and self.sim.rng.random() < 0.5:
            return  # some runs end with the link down
        r.links += 1
        link = r.link = self.s_links[r.name] = Link(self.sim, self.p, r.links)
        self.sim.log(r.name, "link up", r.links, self._tx_state(r.name))
        self.s_apply(self.tx.direct_link_up(r.name))
        self.sim.log(r.name, "link up done", r.links, self._tx_state(r.name))
        self.sim.at(
            self.sim.now + self.sim.rng.uniform(0, PROGRESS_INTERVAL), partial(self.tick, r, link)
        )
        if self.flapping():
            life = self.sim.rng.expovariate(1 / self.p.link_life)
            self.sim.at(self.sim.now + life, partial(self.link_break, r, link))

    def link_break(self, r: ModelReader, link: Link) -> None:
        if not self.flapping():
            return
        link.alive = False
        r.link = None
        self.sim.log(r.name, "link broken", link.n)
        self.sim.at(self.sim.now + self.p.detect, partial(self.link_down, r, link))

    def link_down(self, r: ModelReader, link: Link) -> None:
        if self.s_links.get(r.name) is link:
            del self.s_links[r.name]
            self.sim.log(r.name, "link down", link.n, self._tx_state(r.name))
            self.s_apply(self.tx.direct_link_down(r.name, "flap"))
        self._link_later(r)

    def tick(self, r: ModelReader, link: Link) -> None:
        """The direct service's progress over the link (`_send_progress`)."""
        if not link.alive:
            return
        seq = r.rx.delivered()
        if seq > r.dprog and r.rx.sid:
            r.dprog = seq
            link.carry(link.to_sender, partial(self.direct_progress, r, seq))
        self.sim.at(self.sim.now + PROGRESS_INTERVAL, partial(self.tick, r, link))

    def direct_progress(self, r: ModelReader, seq: int) -> None:
        self.sim.log(r.name, "progress@tx", seq, "direct")
        self.s_apply(self.tx.on_progress(r.name, seq))

    # --- reader agents -----------------------------------------------------------------

    def join(self, r: ModelReader) -> None:
        """The relay's Open reaches the reader: catch-up, then Accept."""
        r.joined = True
        self.sim.log(r.name, "join")
        self.r_call(r, lambda now: r.rx.offer(m.HotlinkOpen(SID, PATH, SENDER, answers=True), now))

    def app_connect(self, r: ModelReader) -> None:
        self.sim.log(r.name, "app connected", r.rx.last_seq)
        self.r_call(r, r.rx.app_connected)

    def app_leave(self, r: ModelReader) -> None:
        if r.rx.apps:
            self.sim.log(r.name, "app gone", r.rx.last_seq)
            r.rx.app_disconnected()

    def r_acked(self, r: ModelReader) -> None:
        self.r_apply(r, r.rx.on_acked())

    def r_call(self, r: ModelReader, fn: Callable[[float], list[Effect]]) -> None:
        self.r_apply(r, fn(self.sim.now))

    def r_answer(self, r: ModelReader, nxt: int, now: float) -> list[Effect]:
        r.answer, r.app_at_answer = nxt, bool(r.rx.apps)
        return r.rx.stream_start(nxt, now)

    def r_data(self, r: ModelReader, msg: m.HotlinkData, via: str) -> None:
        """`ReaderSession.on_data`, for frames of either path."""
        rx = r.rx
        ro = rx.reorder
        r.arrived.add(msg.seq)
        exp, lost, refused = ro.expected, ro.lost, rx.refetch.refused
        header = rx.in_order(msg, self.sim.now)
        if header is not None:
            if rx.apps:
                r.got.append(int(msg.payload))
            self._arm(r)
        else:
            self.r_apply(r, rx.on_data(msg, self.sim.now))
        note = f"expected {exp}"
        if ro.lost != lost:
            note += f", SKIPPED {ro.lost - lost} (now expects {ro.expected})"
        if rx.refetch.refused != refused:
            note += f", refused (refetch from {rx.refetch.from_seq}, re-send awaited from"
            note += f" {rx.refetch.awaiting_from})"
        self.sim.log(r.name, "rx " + via, msg.seq, note)

    def r_apply(self, r: ModelReader, effects: list[Effect]) -> None:
        rx = r.rx
        for e in effects:
            t = type(e)
            if t is Deliver:
                r.got.append(int(e.payload))  # type: ignore[union-attr]
            elif t is DeliverBacklog:
                r.got.extend(int(p) for _, p in e.frames)  # type: ignore[union-attr]
            elif t is Send:
                msg: Any = e.msg  # type: ignore[union-attr]
                rx.sent(msg)
                if not isinstance(msg, m.FileSync):
                    self.sim.log(r.name, type(msg).__name__, getattr(msg, "seq", 0) or 0)
                r.up.send(partial(self.relay_from_reader, r, msg))
            elif t is Shutdown:
                self.errors.append(f"{r.name} shut down")
        self._arm(r)

    def _arm(self, r: ModelReader) -> None:
        """The reader session's timer at the core's next deadline."""
        due = r.rx.next_deadline()
        if due is not None and (r.timer_at is None or due < r.timer_at):
            r.timer_at = due
            # a real timer fires a little late: the core's `now >= due` then holds
            # (the core also asks at exactly `due`: tests/test_agent_core_reader.py)
            self.sim.at(max(due, self.sim.now) + 1e-6, partial(self.r_timer, r, due))

    def r_timer(self, r: ModelReader, due: float) -> None:
        if r.timer_at != due:
            return  # superseded by an earlier one, which re-armed
        r.timer_at = None
        ro = r.rx.reorder
        lost = ro.lost
        self.r_apply(r, r.rx.handle_timer(self.sim.now))
        if ro.lost != lost:
            self.sim.log(r.name, "gap timeout", ro.expected or 0, f"SKIPPED {ro.lost - lost}")
