"""Byte sizes as people write them: `16777216`, `16MiB`, `512k`, `1.5MB`, `64 MiB`.

One parser for every size a user gives Hotlink (relay flags, agent flags, environment
and TOML keys, `hotlinkctl bench` sizes), so the same text means the same number of
bytes everywhere. Units are binary (k = 1024), as in the reference's benchmark: `k`,
`K`, `KB`, `KiB` and `kib` all mean 1024; `B` or no unit means bytes.
"""

from __future__ import annotations

import argparse
import re

_SIZE = re.compile(r"(\d+(?:_\d+)*(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?", re.IGNORECASE)
_MULT = {None: 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class SizeError(ValueError, argparse.ArgumentTypeError):
    """Not a size, or below the minimum. A ValueError (config loaders catch those) and
    an ArgumentTypeError, so argparse prints this message rather than a generic one."""


def parse_size(value: str | int, *, minimum: int = 0) -> int:
    """`value` in bytes (an int, e.g. from TOML, is taken as bytes); at least `minimum`."""
    if isinstance(value, bool):
        raise SizeError(f"not a size: {value!r}")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.fullmatch(str(value).strip())
        if not m:
            raise SizeError(f"not a size: {value!r} (e.g. 16777216, 16MiB, 512k, 1.5MB)")
        exact = float(m.group(1).replace("_", "")) * _MULT[(m.group(2) or "").lower() or None]
        if exact != int(exact):
            raise SizeError(f"not a whole number of bytes: {value!r}")
        n = int(exact)
    if n < minimum:
        raise SizeError(f"size {value!r} is below the minimum of {minimum} bytes")
    return n
