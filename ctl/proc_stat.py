"""CPU time of processes from /proc, for the benchmarks that report or wait on it."""

from __future__ import annotations

import os


def stat_fields(pid: int) -> list[str]:
    """The fields of `/proc/PID/stat` after the command name (which is in parentheses
    and may hold spaces), so that index 0 is the state (field 3 of the line), 7 the
    minor faults, 11 and 12 utime and stime (fields 14 and 15). Raises OSError for a
    process that is gone or a system without /proc."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def process_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (`SC_CLK_TCK`). Raises OSError
    for a process that is gone (for callers whose figure would be wrong without it)."""
    fields = stat_fields(pid)
    return int(fields[11]) + int(fields[12])


def cpu_ticks(pids: list[int]) -> int:
    """utime + stime of `pids`, in clock ticks (`SC_CLK_TCK`); a process that is gone,
    or a system without /proc, counts 0."""
    total = 0
    for pid in pids:
        try:
            total += process_ticks(pid)
        except (OSError, IndexError):
            continue
    return total


def cpu_seconds(pids: list[int]) -> float:
    """`cpu_ticks` in seconds."""
    return cpu_ticks(pids) / os.sysconf("SC_CLK_TCK")


def cpu_ns(pid: int) -> int:
    """Time on CPU of every thread of `pid`, in ns: the scheduler's own count
    (`/proc/PID/task/*/schedstat`, user and system time alike), exact where
    `/proc/PID/stat`'s ticks are 10 ms steps; from those ticks where schedstat is not
    there; 0 for a process that is gone or a system without /proc."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            if tid == str(pid):  # no schedstat on this kernel: the ticks, whole process
                return cpu_ticks([pid]) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total
