"""Chaos for tunnels: the relay is killed (-9) and restarted while one tunnel
connection streams random bytes both ways at once. Checked: both ends get exactly the
bytes the other sent (sha256), the connection ends cleanly, and nothing is left open
(no active tunnel connection, the agents hold as many sockets as before).

Default suite: 2 MB each way, 2 kills. Full run (50 MB each way, 10 kills):

    pytest tests/test_tunnel_chaos.py -m slow -s
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
from test_ctl_e2e import Stack, _alive, ctl
from tunnel_util import (
    A,
    C,
    expose,
    forward,
    serve,
    sink_and_source,
    stream_both_ways,
    three_peer_stack,
    wait_direct_up,
    wait_tunnel,
)

pytestmark = pytest.mark.e2e


def _pids(stack: Stack) -> dict[str, int]:
    st = json.loads((Path(stack.dir) / "devstack.json").read_text())
    return {"relay": st["relay"]["pid"], **{p["email"]: p["pid"] for p in st["peers"]}}


def _socket_inodes(pid: int) -> list[str]:
    """Inodes of the sockets `pid` holds open (from its /proc fd links)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                out.append(link[len("socket:[") : -1])
    return out


def _sockets(pid: int) -> int:
    return len(_socket_inodes(pid))


def _socket_table(pid: int) -> dict[str, str]:
    """Socket inode -> what /proc/net says about it (TCP addresses and state, unix
    path), so a failed count shows which socket stayed open."""
    table: dict[str, str] = {}
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]:
                f = line.split()
                table[f[9]] = f"{name} {f[1]}->{f[2]} st={f[3]}"
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
            f = line.split()
            table[f[6]] = "unix " + (f[7] if len(f) > 7 else "(unnamed)")
    return table


def _socket_report(pid: int) -> list[str]:
    table = _socket_table(pid)
    return sorted(table.get(inode, f"socket {inode}: ?") for inode in _socket_inodes(pid))


def _at_most(pids: list[int], counts: list[int]) -> bool:
    return all(_sockets(p) <= n for p, n in zip(pids, counts, strict=True))


def _kill_and_restart_relay(stack: Stack) -> None:
    pid = _pids(stack)["relay"]
    os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < end:
        time.sleep(0.02)
    r = ctl("devstack", "start", "relay", "--dir", stack.dir)
    assert r.returncode == 0, r.stderr.decode()


def run_chaos(nbytes: int, kills: int, seconds: float) -> None:
    with three_peer_stack("hltunchaos-") as stack:

        async def main() -> None:
            pace = seconds / max(1, nbytes // 65536)
            srv, port = await serve(sink_and_source(nbytes, pace))
            await expose(stack, A, "_mpc/tun/chaos", f"127.0.0.1:{port}")
            host, lport = await forward(stack, C, f"{A}/_mpc/tun/chaos")
            await wait_tunnel(stack, C, f"{A}/_mpc/tun/chaos", lambda t: t.state == "ready")
            await wait_tunnel(stack, A, f"{A}/_mpc/tun/chaos", lambda t: t.state == "ready")
            for who in (A, C):  # direct links come up after "ready": count with them
                await wait_direct_up(stack, who, f"{A}/_mpc/tun/chaos")
            agents = [_pids(stack)[A], _pids(stack)[C]]
            before = [_sockets(p) for p in agents]
            before_report = [_socket_report(p) for p in agents]

            killed_at: list[float] = []
            relays = {_pids(stack)["relay"]}

            async def chaos() -> None:
                start = time.monotonic()
                for k in range(1, kills + 1):  # on a fixed schedule within the send time
                    await asyncio.sleep(
                        max(0.0, start + k * seconds / (kills + 1) - time.monotonic())
                    )
                    killed_at.append(time.monotonic())
                    await asyncio.to_thread(_kill_and_restart_relay, stack)
                    relays.add(_pids(stack)["relay"])

            marks: dict[str, float] = {}
            sent_c, got_s, sent_s, got_c = await stream_both_ways(
                host, lport, nbytes, during=chaos, pace=pace, marks=marks
            )
            assert got_s == sent_c, "server did not get the client's bytes"
            assert got_c == sent_s, "client did not get the server's bytes"
            # every kill hit the stream while the client was still sending
            assert len(relays) == kills + 1 and max(killed_at) < marks["client_sent"]
            for who in (A, C):
                t = await wait_tunnel(
                    stack, who, f"{A}/_mpc/tun/chaos", lambda t: t.counters.active == 0, 60
                )
                assert t.counters.resets == 0 and t.counters.connections == 1
                assert t.counters.bytes_in == nbytes and t.counters.bytes_out == nbytes
            srv.close()
            await srv.wait_closed()
            # (gRPC calls of this test come and go, so: never more than before)
            end = time.monotonic() + 30
            while not _at_most(agents, before) and time.monotonic() < end:
                await asyncio.sleep(0.1)
            assert _at_most(agents, before), {
                "before": before_report,
                "after": [_socket_report(p) for p in agents],
            }

        asyncio.run(main())


@pytest.mark.timeout(240)
def test_tunnel_chaos_reduced() -> None:
    run_chaos(2 * 1024 * 1024, kills=2, seconds=6.0)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_tunnel_chaos_full() -> None:
    run_chaos(50 * 1024 * 1024, kills=10, seconds=60.0)
