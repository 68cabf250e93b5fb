"""`hotlinkctl demo mpyc`: three columns in one run (tunnels via relay, via the direct
path, parties straight), and a direct column that is never a relabelled relay figure."""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
from collections import Counter
from collections.abc import Iterator

import pytest
from hotlink.ctl import demo_paths, devstack, mpyc_demo
from test_ctl_e2e import ctl


def test_direct_flag_pattern_matches_the_flag_only() -> None:
    flag = demo_paths._FLAG
    assert flag.search("  --direct {off,auto}  direct peer path")
    assert flag.search("usage: hotlink-agent [--direct MODE] [--x]")
    assert flag.search("  --direct=auto")
    assert not flag.search("  --direct-listen HOST:PORT")
    assert not flag.search("  --direct-advertise HOST:PORT  --indirect")


def test_missing_column_says_why_and_shows_no_figure() -> None:
    col = mpyc_demo.Column("tunnels via direct path", missing="no --direct here")
    assert " ".join(col.line().split()) == "tunnels via direct path not measured: no --direct here"
    assert not re.search(r"\d+\.\d+ ms", col.line())
    assert demo_paths.describe(Counter()) == "no tunnel sessions"
    assert demo_paths.describe(Counter(hotlink=4, direct=2)) == "2 on direct, 4 on hotlink"


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_demo_prints_three_columns() -> None:
    """The real CLI on its own devstack(s). Whether the direct column has a figure
    depends on the agent build: without `--direct` it must say so; with it, the
    figure must come from tunnel sessions that were seen on the direct path."""
    r = ctl("demo", "mpyc", "--rounds", "3", timeout=280)
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 0, err[-2000:]
    lines = {ln.split("  ")[0].strip(): ln for ln in out.splitlines() if "  " in ln}
    relay = lines["tunnels via relay"]
    direct = lines["tunnels via direct path"]
    straight = lines["parties connected straight"]
    for ln in (relay, straight):
        assert "sum=49 less=True" in ln and "per round: p50" in ln, ln
    assert "[tunnel sessions: 6 on hotlink]" in relay
    why = demo_paths.direct_flag_missing()
    if why:
        assert direct.endswith("not measured: " + why), direct
        assert "ms" not in direct
    else:
        assert "sum=49 less=True" in direct and "[tunnel sessions: 6 on direct]" in direct
    assert "logs kept" not in err


@contextlib.contextmanager
def _relay_only_stack() -> Iterator[devstack.DevstackState]:
    """Three agents whose tunnels stay on the relay: `--direct off` where the agent
    build has the direct path, nothing to turn off where it has not."""
    flags = [] if demo_paths.direct_flag_missing() else ["--direct", "off"]
    with tempfile.TemporaryDirectory(prefix="hltundemo-", dir="/tmp") as d:
        st = asyncio.run(devstack.up(d, list(mpyc_demo.DEMO_PEERS), agent_args=flags))
        try:
            yield st
        finally:
            devstack.down(d)


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_direct_column_on_relay_only_agents_is_not_measured(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Agents whose tunnel sessions stay on the relay give the direct column a reason,
    not the relay's figure; `--dir` labels its one column by the path it saw."""
    monkeypatch.setattr(mpyc_demo, "PATH_TIMEOUT", 1.0)
    monkeypatch.setattr(mpyc_demo, "DIRECT_SETTLE", 1.0)
    with _relay_only_stack() as st:
        controls = [p.control for p in st.peers]
        assert asyncio.run(demo_paths.tunnel_paths(controls)) == Counter()
        col = asyncio.run(
            mpyc_demo.tunnel_column(
                "tunnels via direct path", st, "direct", [1, 2, 3], 2, lambda t: None
            )
        )
        assert col.run is None
        assert "did not all go direct within 1 s (6 on hotlink)" in col.missing, col.missing
        # and the tunnels it opened are closed again, with their sessions (no session
        # is on a path called "none": this waits for there to be none at all)
        ok, after = asyncio.run(demo_paths.wait_for_path(controls, "none", 0, 30.0))
        assert ok and after == Counter(), after

        rc = asyncio.run(mpyc_demo.run_demo(2, st.dir, lambda t: None))
        out = capsys.readouterr().out
        assert rc == 0, out
        rows = [ln for ln in out.splitlines() if ln.startswith(("tunnels", "parties"))]
        assert len(rows) == 3, out
        assert rows[0].startswith("tunnels via relay") and "sum=49 less=True" in rows[0]
        assert rows[0].endswith("[tunnel sessions: 6 on hotlink]"), rows[0]
        assert "not measured: --dir measures the running devstack" in rows[1], rows[1]
        assert rows[1].startswith("tunnels via direct path")
        assert rows[2].startswith("parties connected straight") and "sum=49" in rows[2]
