"""File fallback through `hotlinkctl`: `devstack stop NAME` / `devstack start NAME` as fault
injection (a reader agent away while the sender goes on; the relay restarted), and the
`e2e-latency` benchmark (the file path) against the running stack."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hotlink.ctl.client import AgentClient, Stream
from hotlink.v1 import agent_pb2 as pb
from test_ctl_e2e import A, B, Stack, _alive, ctl

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

#: an agent flag passed through `devstack up --agent-arg` (the default value: harmless)
QUEUE_FLAG = "--reader-queue=4096"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="hlfb-ds-", dir="/tmp") as d:
        # the relay and file paths (the direct path would carry the frames meanwhile)
        r = ctl(
            "devstack", "up", "--dir", d, "--direct", "off", "--json",
            f"--agent-arg={QUEUE_FLAG}",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr.decode()
        try:
            yield Stack(d, json.loads(r.stdout))
        finally:
            down = ctl("devstack", "down", "--dir", d, "--json")
            assert down.returncode == 0, down.stderr.decode()


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _pids(d: str) -> dict[str, int]:
    st = json.loads((Path(d) / "devstack.json").read_text())
    return {"relay": st["relay"]["pid"], **{p["email"]: p["pid"] for p in st["peers"]}}


def test_stop_start_reader_and_relay(stack: Stack) -> None:
    async def main() -> None:
        ca, cb = AgentClient(stack.control(A)), AgentClient(stack.control(B))
        full = f"{A}/_mpc/ds"
        s = await ca.open_session("_mpc/ds", to=B)
        r = await cb.open_session(full)
        rx = await Stream.connect(r.session_dir)
        tx = await Stream.connect(s.session_dir)
        await ca.wait_session(full, lambda x: B in x.readers, 15, "bob")
        for i in range(50):
            await tx.send(b"a%d" % i)
        assert [(await rx.recv()).seq for _ in range(50)] == list(range(1, 51))
        await rx.close()
        await cb.close()

        old = _pids(stack.dir)[B]
        assert QUEUE_FLAG in _cmdline(old)
        out = ctl("devstack", "stop", B, "--dir", stack.dir)
        assert out.returncode == 0 and b"stopped" in out.stdout, out.stderr.decode()
        assert not _alive(old)
        await ca.wait_session(full, lambda x: B not in x.readers, 15, "bob gone")
        for i in range(300):
            await tx.send(b"b%d" % i)
        await ca.wait_session(
            full, lambda x: x.last_seq == 350 and x.counters.files_pending == 0, 15, "files"
        )
        out = ctl("devstack", "start", B, "--dir", stack.dir)
        assert out.returncode == 0 and b"started" in out.stdout, out.stderr.decode()
        new = _pids(stack.dir)[B]
        assert new != old and _alive(new)
        assert QUEUE_FLAG in _cmdline(new)  # `start` keeps the flags `up` was given

        rx = await Stream.connect(r.session_dir)  # same stream.sock, restored session
        got = [await asyncio.wait_for(rx.recv(), 30) for _ in range(300)]
        assert [f.seq for f in got] == list(range(51, 351))
        assert [f.payload for f in got] == [b"b%d" % i for i in range(300)]

        # the relay: stop, start on the same port and data dir; the stream goes on
        assert ctl("devstack", "stop", "relay", "--dir", stack.dir).returncode == 0
        for i in range(20):
            await tx.send(b"c%d" % i)
        out = ctl("devstack", "start", "relay", "--dir", stack.dir)
        assert out.returncode == 0, out.stderr.decode()
        got = [await asyncio.wait_for(rx.recv(), 30) for _ in range(20)]
        assert [f.seq for f in got] == list(range(351, 371))
        cb = AgentClient(stack.control(B))
        st = await cb.get_session(full)
        assert st.counters.files_received >= 300 and st.counters.drops == 0
        await ca.wait_session(full, lambda x: x.active_path == pb.ACTIVE_PATH_HOTLINK, 15, "hl")
        for x in (rx, tx):
            await x.close()
        await ca.close()
        await cb.close()

    asyncio.run(main())
    st = ctl("devstack", "status", "--dir", stack.dir)
    assert st.returncode == 0, st.stdout.decode()


def test_bench_e2e_latency_smoke(stack: Stack) -> None:
    r = ctl(
        "bench", "--bench", "e2e-latency", "--dir", stack.dir, "--count", "5", "--warmup",
        "1", "--inflight", "2", "--sizes", "1KB", "--json", "-q", timeout=90,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)
    assert doc["bench"] == "e2e-latency"
    assert {x["mode"] for x in doc["results"]} == {"sequential", "pipelined"}
    for x in doc["results"]:
        assert x["hotlink"]["count"] == 5 and "floor" not in x
    # this stack's agents do not keep replayed files: the bench says so
    assert any("--keep-files" in n for n in doc["notes"])
