"""`hotlinkctl bench --direct off,auto` and `devstack up --direct`, with real processes.

Needs agents that have the direct path (`--direct`); until the agent side is merged
the tests skip with that reason.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hotlink.v1 import agent_pb2 as pb
from test_ctl_e2e import ctl

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        "direct" not in pb.Session.DESCRIPTOR.fields_by_name,
        reason="the agents of this tree have no direct path (--direct)",
    ),
]


def test_bench_measures_relay_and_direct_in_one_run() -> None:
    r = ctl(
        "bench", "--direct", "off,auto", "--count", "20", "--warmup", "5", "--sizes", "1KB",
        "--inflight", "1", "--no-floor", "--json", "-q", timeout=240,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    report = json.loads(r.stdout)
    assert [x["path"] for x in report["results"]] == ["relay", "direct"]
    assert all(x["hotlink"]["count"] == 20 for x in report["results"])
    (row,) = report["direct_vs_relay"]
    assert row["size"] == 1024 and row["direct_over_relay"]["p50"] > 0


def test_devstack_up_passes_direct_to_every_agent() -> None:
    with tempfile.TemporaryDirectory(prefix="hlds-direct-", dir="/tmp") as d:
        r = ctl("devstack", "up", "--dir", d, "--direct", "off", "--json", timeout=120)
        try:
            assert r.returncode == 0, r.stderr.decode()
            state = json.loads((Path(d) / "devstack.json").read_text())
            for peer in state["peers"]:
                argv = peer["args"]
                assert argv[argv.index("--direct") + 1] == "off"
                header = Path(peer["log_file"]).read_text().splitlines()[0]
                assert "--direct off" in header  # the command the agent really ran
        finally:
            down = ctl("devstack", "down", "--dir", d)
            assert down.returncode == 0, down.stderr.decode()
