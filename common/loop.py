"""Run a process's main coroutine on uvloop when it is there, else on asyncio.

uvloop cuts per-message latency (it is a dependency everywhere but Windows); grpc.aio
and websockets run on it as well. Every entry point (relay, agent, `hotlinkctl`, the
benchmark floor) starts its loop here, so "uvloop on" means the same thing in each and
the benchmark can report it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def uvloop_available() -> bool:
    if sys.platform == "win32":
        return False
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def running_on_uvloop() -> bool:
    """True inside a coroutine whose running loop is uvloop's."""
    return type(asyncio.get_running_loop()).__module__.startswith("uvloop")


def run_main(main: Coroutine[Any, Any, T], *, use_uvloop: bool = True) -> T:
    """`asyncio.run(main)`, on uvloop unless it is missing or `use_uvloop` is false."""
    if use_uvloop and uvloop_available():
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
