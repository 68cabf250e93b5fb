"""The installed package's version, one source for every program's `--version` and status.

Read from the distribution metadata (pyproject's `version`), so a release bump is one
edit; a source tree that is not installed reports `0+unknown` instead of failing.
"""

from __future__ import annotations

import sys
from importlib import metadata


def package_version() -> str:
    try:
        return metadata.version("hotlink")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def version_line(prog: str) -> str:
    """What `PROG --version` prints: program, package version and Python."""
    py = ".".join(map(str, sys.version_info[:3]))
    return f"{prog} {package_version()} (hotlink, Python {py})"
