"""CPU time of processes from /proc, for the benchmarks that report or wait on it."""

from __future__ import annotations


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
