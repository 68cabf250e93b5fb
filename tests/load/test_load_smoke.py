"""Smoke runs of the load tools, so they keep working: `run_load.py` (4 agents, 8
sessions, 3 s), `file_flood.py` (a fallback-file flood through the relay),
`carriers_cpu.py` (the direct-path sender's per-frame decision) and `proc_cpu.py` (CPU
per process of a benchmark).

Checks completeness only (every frame of every session arrived once, in order; every
file acknowledged and passed on); the figures are printed, never asserted. The full
runs and their figures: docs/reliability.md and docs/performance.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).with_name("run_load.py")
FLOOD = Path(__file__).with_name("file_flood.py")


def test_load_smoke(tmp_path):
    out = tmp_path / "report.json"
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--peers",
        "4",
        "--sessions",
        "8",
        "--duration",
        "3",
        "--rate",
        "50",
        "--workdir",
        str(tmp_path / "work"),
        "--json",
        str(out),
        "--quiet",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=100)
    assert out.exists(), p.stdout + p.stderr
    r = json.loads(out.read_text())
    print(json.dumps(r, indent=1))
    assert r["sent"] >= 8 * 50  # every session wrote (at least ~1 s worth)
    assert (r["lost"], r["duplicates"], r["out_of_order"]) == (0, 0, 0), r
    assert r["received"] == r["sent"] and r["sessions_incomplete"] == 0, r
    assert p.returncode == 0, p.stderr


def test_file_flood_smoke():
    cmd = [sys.executable, str(FLOOD), "--files", "400", "--window", "64"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=100)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    print(json.dumps(r, indent=1))
    assert (r["nacks"], r["bob_received"], r["ack_rtt"]["n"]) == (0, 400, 400), r
    assert r["healthz"]["n"] >= 1, r


def test_carriers_cpu_smoke():
    script = Path(__file__).with_name("carriers_cpu.py")
    env = {**os.environ, "MICRO_N": "1000"}
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and "ns per call" in p.stdout, p.stdout + p.stderr


def test_proc_cpu_smoke():
    """The poller reports a busy child that names hotlink, and not itself."""
    busy = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 2.5: pass  # hotlink"
    cmd = [sys.executable, str(Path(__file__).with_name("proc_cpu.py")), sys.executable, "-c", busy]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = p.stdout.splitlines()
    assert len(rows) == 1 and "import time t = time" in rows[0], p.stdout
    user = int(rows[0].split("user")[1].split()[0])
    assert user > 0, rows
