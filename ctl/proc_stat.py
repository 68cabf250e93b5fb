"""CPU time of processes from /proc, for the benchmarks that report or wait on it."""

from __future__ import annotations

import os


def cpu_ticks(pids: list[int]) -> int:
    """utime + stime of `pids`, in clock ticks (`SC_CLK_TCK`); a process that is gone,
    or a system without /proc, counts 0."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                # after the command name (in parentheses, may hold spaces): state is
                # field 3 of the whole line, utime and stime fields 14 and 15
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            continue
    return total


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
