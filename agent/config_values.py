"""How each agent option's value is read, from a flag, an environment variable or a
TOML key alike (`config.OPTIONS` names one per option): each returns the value or
raises ValueError saying what was expected, which `load_config` reports with the
option's flag name."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hotlink.common.hostport import split_hostport
from hotlink.common.sizes import parse_size

from .tunnels.mux import MAX_WINDOW, MIN_WINDOW


def boolean(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {v!r}")


def pos_int(v: Any) -> int:
    n = int(v)
    if n <= 0:
        raise ValueError(f"must be a positive integer, got {v!r}")
    return n


def nonneg_int(v: Any) -> int:
    n = int(v)
    if n < 0:
        raise ValueError(f"must be >= 0, got {v!r}")
    return n


def pos_size(v: Any) -> int:
    return parse_size(v, minimum=1)


def nonneg_size(v: Any) -> int:
    return parse_size(v, minimum=0)


def pos_float(v: Any) -> float:
    x = float(v)
    if not 0 < x < math.inf:  # also refuses nan
        raise ValueError(f"must be a positive number, got {v!r}")
    return x


def tunnel_window(v: Any) -> int:
    """A size (`4MiB` as for `tunnel expose --window`) in the tunnel layer's range."""
    n = parse_size(v)
    if not MIN_WINDOW <= n <= MAX_WINDOW:
        raise ValueError(f"must be {MIN_WINDOW} .. {MAX_WINDOW} bytes (1 KiB .. 1 GiB), got {v!r}")
    return n


def hostport(v: Any) -> str:
    """One HOST:PORT (`common.hostport` rules), or "" for none."""
    s = str(v)
    if s:
        split_hostport(s)
    return s


def hostports(min_port: int) -> Callable[[Any], tuple[str, ...]]:
    """A list of HOST:PORT (a TOML list, repeated flags, or comma-separated; IPv6 in
    brackets: [::1]:7000), each port at least `min_port`."""

    def conv(v: Any) -> tuple[str, ...]:
        items = v if isinstance(v, list | tuple) else [v]
        out = [a.strip() for item in items for a in str(item).split(",") if a.strip()]
        for a in out:
            split_hostport(a, min_port=min_port)
        return tuple(out)

    return conv


def server_urls(v: Any) -> str:
    """One relay URL or several (a list, repeated flags, or comma-separated: the nodes
    of a relay cluster, tried in order); kept as one comma-separated string."""
    items = v if isinstance(v, list | tuple) else [v]
    urls = [u.strip() for item in items for u in str(item).split(",") if u.strip()]
    if not urls:
        raise ValueError("expected a ws:// or wss:// URL, got nothing")
    for s in urls:
        if not s.startswith(("ws://", "wss://")):
            raise ValueError(f"expected a ws:// or wss:// URL, got {s!r}")
    return ",".join(u.rstrip("/") for u in urls)


def log_level(v: Any) -> str:
    s = str(v).upper()
    if s not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"unknown log level {v!r}")
    return s


def direct_mode(v: Any) -> str:
    s = str(v).strip().lower()
    if s not in ("auto", "off"):
        raise ValueError(f"expected auto or off, got {v!r}")
    return s


def path(v: Any) -> Path:
    return Path(os.path.expanduser(str(v))).absolute()


def ratio(v: Any) -> float:
    x = float(v)
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"must be a number in [0, 1], got {v!r}")
    return x


def choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        s = str(v).strip().lower()
        if s not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {v!r}")
        return s

    return conv
