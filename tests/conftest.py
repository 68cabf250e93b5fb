"""Shared pytest setup: fixture modules of each component are registered here, and
long runs marked `slow` stay out of the default suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["fixtures_relay", "fixtures_agent", "fixtures_otel", "fixtures_cluster"]


def pytest_sessionstart(session: pytest.Session) -> None:
    """A compiled hot module built from an older source would test the old code."""
    from hotlink.common import hot_modules

    st = hot_modules.status()
    if st.stale:
        pytest.exit(st.summary(), returncode=4)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`slow` tests (minutes of chaos or load) run only when asked for: `-m slow` (or any
    marker expression naming `slow`) or HOTLINK_SLOW=1. The default suite must stay
    within minutes on a 2-core machine."""
    if "slow" in (config.getoption("markexpr") or "") or os.environ.get("HOTLINK_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="long run: select it with -m slow (or HOTLINK_SLOW=1)")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


#: lines of each process log shown when a test on a devstack fails
LOG_TAIL_LINES = 80


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that ran on a devstack (a fixture value with a `dir` holding
    `logs/`) shows the end of each process log in its report: the relay's and agents'
    side of a failure that happened once, in CI, is otherwise gone with the temp dir."""
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    if rep.when != "call" or not rep.failed:
        return
    for value in getattr(item, "funcargs", {}).values():
        d = getattr(value, "dir", None)
        logs = Path(d) / "logs" if isinstance(d, str) else None
        if logs is None or not logs.is_dir():
            continue
        for f in sorted(logs.glob("*.log")):
            try:
                lines = f.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            except OSError as exc:
                lines = [f"(unreadable: {exc})"]
            rep.sections.append((f"{f} (last {LOG_TAIL_LINES} lines)", "\n".join(lines)))
