"""`hotlink.common.fd_limit`: the descriptor limit raised at start, and the budget the
relay checks before serving a client (sans-I/O: counts in, verdicts out)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest
from hotlink.common.fd_limit import FdBudget, open_fds, raise_nofile_limit, reserve_for

_SHOW = (
    "from hotlink.common.fd_limit import raise_nofile_limit; import resource; "
    "r = raise_nofile_limit(); print(r.describe()); "
    "print(*resource.getrlimit(resource.RLIMIT_NOFILE))"
)


def _run_with(soft: int, hard: int) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _SHOW],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.splitlines()


def test_soft_limit_raised_to_the_hard_one() -> None:
    assert _run_with(40, 64) == ["file descriptor limit raised from 40 to 64", "64 64"]


def test_a_soft_limit_at_the_hard_one_is_left_and_said() -> None:
    assert _run_with(64, 64) == ["file descriptor limit 64", "64 64"]


def test_raise_is_idempotent_in_this_process() -> None:
    first = raise_nofile_limit()
    again = raise_nofile_limit()
    assert again.soft == again.was == first.soft and not again.error


def test_open_fds_counts_a_new_descriptor() -> None:
    before = open_fds()
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        assert open_fds() == before + 1
    finally:
        os.close(fd)


@pytest.mark.parametrize(("limit", "reserve"), [(64, 32), (1024, 51), (1 << 20, 52428)])
def test_reserve_is_a_twentieth_at_least_32(limit: int, reserve: int) -> None:
    assert reserve_for(limit) == reserve


def test_budget_has_room_until_the_reserve() -> None:
    b = FdBudget(limit=100, base=20, reserve=32)
    for _ in range(48):
        b.opened()
    assert b.room and b.in_use == 68  # 68 + 32 = 100: the last one that fits
    b.opened()
    assert not b.room
    assert b.describe() == (
        "69 of 100 file descriptors in use (49 by client connections, 32 kept for files and links)"
    )
    b.closed()
    assert b.room


def test_refusals_are_reported_at_once_then_once_per_interval() -> None:
    b = FdBudget(limit=100, base=20, reserve=32)
    assert b.refuse(1000.0) == 1  # the first: at once
    assert [b.refuse(1000.0 + t) for t in (1, 2, 59)] == [0, 0, 0]
    assert b.refuse(1060.0) == 4  # the three held back, and this one
    assert b.refuse(1061.0) == 0


def test_no_budget_when_the_limit_is_unlimited() -> None:
    assert FdBudget.for_process(limit=resource.RLIM_INFINITY) is None
    b = FdBudget.for_process(limit=1000)
    assert b is not None and b.base == open_fds() and b.reserve == 50
