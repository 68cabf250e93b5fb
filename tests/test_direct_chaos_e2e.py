"""The direct path's re-send rules against real processes: a relay that lags (stopped
and resumed with SIGSTOP/SIGCONT, so what the sender gives it waits in its socket) while
the direct link is destroyed from outside (`ss -K`) mid-stream, with a small reorder
window so that the link soon runs a window ahead of the relay. This is the state the
direct-path model (tests/test_direct_model.py) found its last races in: frames re-sent
by the relay behind frames a window ahead, and readers far behind. Three shapes: one
reader; two readers whose links die apart; a reader app that stalls, is dropped as too
slow and connects again (its frames refetched). Every frame must reach each reader's
app once, in order."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import threading
import time

import pytest
from fixtures_agent import AppClient
from hotlink.common.ports import free_port
from hotlink.v1 import agent_pb2 as pb
from test_direct_e2e import AUTO, _ss_kill_works, direct_pair
from test_fallback_e2e import PATH, REL, A, B, Reader, send_paced
from test_fallback_join_e2e import C

pytestmark = pytest.mark.e2e

SMALL_WINDOW = ["--reorder-window", "16"]


class Stutter(threading.Thread):
    """Stops and resumes a process at random intervals until `stop()`; it is always
    left running."""

    def __init__(
        self, pid: int, seed: int, stopped_ms: tuple[int, int], running_ms: tuple[int, int]
    ) -> None:
        super().__init__(daemon=True)
        self.pid, self.rng = pid, random.Random(seed)
        self.stopped_ms, self.running_ms = stopped_ms, running_ms
        self.done = threading.Event()
        self.pauses = 0

    def run(self) -> None:
        try:
            while not self.done.is_set():
                os.kill(self.pid, signal.SIGSTOP)
                self.pauses += 1
                time.sleep(self.rng.uniform(*self.stopped_ms) / 1000)
                os.kill(self.pid, signal.SIGCONT)
                self.done.wait(self.rng.uniform(*self.running_ms) / 1000)
        finally:
            with contextlib.suppress(ProcessLookupError):  # gone: nothing to resume
                os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.done.set()
        self.join(5)


def _kill_link(port: int) -> None:
    subprocess.run(
        ["ss", "-K", "(", "sport", "=", f":{port}", "or", "dport", "=", f":{port}", ")"],
        capture_output=True,
        timeout=10,
    )


class LinkKiller(threading.Thread):
    """Destroys the direct link's connection at random intervals until `stop()`."""

    def __init__(self, port: int, seed: int, every_ms: tuple[int, int]) -> None:
        super().__init__(daemon=True)
        self.port, self.rng, self.every_ms = port, random.Random(seed), every_ms
        self.done = threading.Event()
        self.kills = 0

    def run(self) -> None:
        while not self.done.wait(self.rng.uniform(*self.every_ms) / 1000):
            _kill_link(self.port)
            self.kills += 1

    def stop(self) -> None:
        self.done.set()
        self.join(15)


def _stream_under_chaos(
    relay, alice, ports: list[int], seed: int, n: int, kill_every_ms: tuple[int, int]
) -> list[LinkKiller]:  # type: ignore[no-untyped-def]
    """alice's app writes `n` frames at ~4 000 a second while the relay stutters and
    each of `ports`' links is killed on its own schedule; returns the killers."""
    writer = AppClient(alice.session_dir(PATH))
    stutter = Stutter(relay.proc.pid, seed, stopped_ms=(2, 40), running_ms=(2, 30))
    killers = [LinkKiller(p, seed + i, kill_every_ms) for i, p in enumerate(ports)]
    for t in (stutter, *killers):
        t.start()
    try:
        send_paced(writer, 0, n, step=4, pause=0.001)
    finally:
        for k in killers:
            k.stop()
        stutter.stop()
    return killers


def _run(agent_factory, relay, seed: int, n: int) -> None:  # type: ignore[no-untyped-def]
    """`n` frames written at ~4 000 a second while the relay stutters and the link is
    killed every 30-300 ms: the link comes up (negotiated through the relay) and dies
    in every state of the relay's queue."""
    port = free_port()
    alice = agent_factory(A, args=[*AUTO, *SMALL_WINDOW])
    bob = agent_factory(B, args=[*AUTO, *SMALL_WINDOW, "--direct-listen", f"127.0.0.1:{port}"])
    direct_pair(alice, bob)
    reader = Reader(bob, n, timeout=120)
    reader.start()
    (killer,) = _stream_under_chaos(relay, alice, [port], seed, n, (30, 300))
    reader.check()
    a, b = alice.session(PATH), bob.session(PATH)
    # the states were reached: the link went down and up again, both paths carried frames
    assert killer.kills >= 5 and a.counters.direct_switches >= 3, (killer.kills, a.counters)
    assert b.counters.frames_direct > 0 and b.counters.frames_relay > 0, b.counters
    assert b.counters.frames_received == n and b.counters.drops == 0


def _run_two_readers(agent_factory, relay, seed: int, n: int) -> None:  # type: ignore[no-untyped-def]
    """As `_run`, with two readers, each with its own link (both killed at random,
    apart): the relay carries one reader's frames while the other's link runs ahead."""
    ports = {B: free_port(), C: free_port()}
    alice = agent_factory(A, args=[*AUTO, *SMALL_WINDOW])
    readers = {
        r: agent_factory(r, args=[*AUTO, *SMALL_WINDOW, "--direct-listen", f"127.0.0.1:{p}"])
        for r, p in ports.items()
    }
    alice.open(REL, fallback_mode=pb.FALLBACK_MODE_OFF)
    for agent in readers.values():
        agent.open(PATH)
    alice.wait_session(
        PATH, lambda s: sum(d.status == "up" for d in s.direct) == 2 and len(s.readers) == 2, 20
    )
    apps = {r: Reader(agent, n, timeout=120) for r, agent in readers.items()}
    for app in apps.values():
        app.start()
    killers = _stream_under_chaos(relay, alice, list(ports.values()), seed, n, (30, 400))
    for app in apps.values():
        app.check()
    a = alice.session(PATH)
    assert all(k.kills >= 5 for k in killers) and a.counters.direct_switches >= 6, a.counters
    for r, agent in readers.items():
        c = agent.session(PATH).counters
        assert c.frames_direct > 0 and c.frames_relay > 0, (r, c)
        assert c.frames_received == n and c.drops == 0, (r, c)


class StallingApp(Reader):
    """A reader app that stops reading now and then, long enough for the agent to
    disconnect it as too slow; it reads what it was sent up to the close, connects
    again and goes on. What it gets over all its connections must be the stream
    (`Reader.check`)."""

    def __init__(self, agent, n: int, seed: int, stall_every: int) -> None:  # type: ignore[no-untyped-def]
        super().__init__(agent, n, timeout=60)
        self.agent, self.rng, self.every = agent, random.Random(seed), stall_every
        self.reconnects = 0

    def run(self) -> None:
        try:
            app = self.app
            while True:
                try:
                    while len(self.frames) < self.n:
                        self.frames.append(app.recv())
                        if self.rng.randrange(self.every) == 0:
                            time.sleep(self.rng.uniform(0.2, 0.5))
                    return
                except (EOFError, ConnectionResetError):
                    self.reconnects += 1  # dropped as too slow: connect again
                finally:
                    app.close()
                app = self.app = AppClient(self.agent.session_dir(PATH), timeout=60)
        except BaseException as exc:
            self.error = exc


def _run_stalling_app(agent_factory, relay, seed: int, n: int) -> None:  # type: ignore[no-untyped-def]
    """As `_run`, but the reader's app stalls and is dropped for it, again and again:
    what it could not take is refetched (a re-send) while the link dies and the relay
    lags."""
    port = free_port()
    small_queue = ["--reader-queue", "64", "--reader-buffer-bytes", "65536"]
    alice = agent_factory(A, args=[*AUTO, *SMALL_WINDOW])
    bob = agent_factory(
        B, args=[*AUTO, *SMALL_WINDOW, *small_queue, "--direct-listen", f"127.0.0.1:{port}"]
    )
    direct_pair(alice, bob)
    app = StallingApp(bob, n, seed, stall_every=1500)
    app.start()
    _stream_under_chaos(relay, alice, [port], seed, n, (30, 300))
    app.check()
    c = bob.session(PATH).counters
    assert app.reconnects >= 2 and c.refetched > 0, (app.reconnects, c)
    assert c.frames_received == n, c


@pytest.mark.skipif(not _ss_kill_works(), reason="ss -K (CAP_NET_ADMIN, sock_destroy) unavailable")
def test_link_killed_under_a_stuttering_relay(agent_factory, relay):
    """12 000 frames (about 3 s), the relay stopped 2-40 ms at a time."""
    _run(agent_factory, relay, seed=1, n=12_000)


@pytest.mark.slow
@pytest.mark.skipif(not _ss_kill_works(), reason="ss -K (CAP_NET_ADMIN, sock_destroy) unavailable")
@pytest.mark.parametrize("seed", range(2, 12))
def test_link_killed_under_a_stuttering_relay_many(agent_factory, relay, seed):
    """The same, 10 seeds of 60 000 frames each (`pytest -m slow -k stuttering`)."""
    _run(agent_factory, relay, seed=seed, n=60_000)


@pytest.mark.slow
@pytest.mark.skipif(not _ss_kill_works(), reason="ss -K (CAP_NET_ADMIN, sock_destroy) unavailable")
@pytest.mark.parametrize("seed", range(2, 12))
def test_two_readers_links_killed_under_a_stuttering_relay_many(agent_factory, relay, seed):
    """Two readers, each reader's link killed on its own schedule, 10 seeds of 60 000
    frames each (slow only: the default suite's single-reader run covers the states)."""
    _run_two_readers(agent_factory, relay, seed=seed, n=60_000)


@pytest.mark.slow
@pytest.mark.skipif(not _ss_kill_works(), reason="ss -K (CAP_NET_ADMIN, sock_destroy) unavailable")
@pytest.mark.parametrize("seed", range(2, 12))
def test_stalling_app_refetches_under_a_stuttering_relay_many(agent_factory, relay, seed):
    """The reader app dropped for stalling, again and again, 10 seeds of 60 000 frames
    each (slow only: the default suite has the stalling app without the chaos,
    test_agent_control.py, and the chaos without the stalling app, above)."""
    _run_stalling_app(agent_factory, relay, seed=seed, n=60_000)
