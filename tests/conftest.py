"""Shared pytest setup: fixture modules of each component are registered here, and
long runs marked `slow` stay out of the default suite."""

from __future__ import annotations

import os

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
