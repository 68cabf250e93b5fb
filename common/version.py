"""Hotlink's version, read once from the installed package's metadata.

`pyproject.toml` is the one place the version is written; the relay's System
greeting, the agent's GetStatus and the OpenTelemetry instrumentation scope all
report this value, so they can never disagree with what pip installed.
"""

from __future__ import annotations

from importlib import metadata

DIST_NAME = "hotlink"


def _read() -> str:
    try:
        return metadata.version(DIST_NAME)
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "0+unknown"


VERSION = _read()
