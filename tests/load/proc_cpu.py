#!/usr/bin/env python
"""CPU time of every relay, agent and floor process of a benchmark, per process.

    python tests/load/proc_cpu.py \
        hotlinkctl bench --sizes 1KB --count 20000 --inflight 1 --blocks 1 -q

Runs the command, polls `/proc/PID/stat` of every process whose command line names
hotlink (the benchmark's own process and this one excepted) every 50 ms, and prints,
once the command ends, each process's user and system ticks (`SC_CLK_TCK`, 100 a
second here) from its first 1.5 s on (start-up left out), with its minor page faults
and command line. Divide by the messages of the run for CPU per message; docs/
performance.md compares trees this way (alternating runs, each tree's own venv),
because one run's latency on a shared 2-core machine moves more than what a change
of a few µs of CPU per message can show.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from hotlink.ctl.proc_stat import stat_fields

SKIP = ("proc_cpu", "hotlinkctl bench")


def _sample() -> dict[str, tuple[str, int, int, int]]:
    """pid -> (command line, user ticks, system ticks, minor faults) of the processes
    of interest now."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").replace("\n", " ")
            if "hotlink" not in cmd or any(s in cmd for s in SKIP):
                continue
            st = stat_fields(int(pid))
        except OSError:
            continue  # gone meanwhile
        out[pid] = (cmd, int(st[11]), int(st[12]), int(st[7]))
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    proc = subprocess.Popen(argv)
    series: dict[str, list[tuple[float, tuple[str, int, int, int]]]] = {}
    while proc.poll() is None:
        now = time.monotonic()
        for pid, row in _sample().items():
            series.setdefault(pid, []).append((now, row))
        time.sleep(0.05)
    for pid, rows in series.items():
        after = [r for r in rows if r[0] >= rows[0][0] + 1.5]
        if len(after) < 2:
            continue
        (t0, a), (t1, b) = after[0], after[-1]
        print(
            f"{pid:>7} {t1 - t0:6.1f}s user {b[1] - a[1]:5d} sys {b[2] - a[2]:5d} "
            f"minflt {b[3] - a[3]:6d}  {b[0][:110]}"
        )
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
