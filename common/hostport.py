"""HOST:PORT text, parsed by one set of rules wherever an address is given.

Agent flags (`--direct-listen`, `--direct-advertise`, `--tcp-listen`…), tunnel
targets and listen addresses, direct-link addresses, a session's `stream.tcp` and a
control address all go through `split_hostport`, so an address one part accepts is
not refused by another, and a bad one is refused where it is given, not at the first
connection that uses it: spaces, a dotted quad that is no IPv4 address, an IPv6
address without brackets, a port with leading zeros or outside `min_port`..65535.
"""

from __future__ import annotations

import ipaddress
import re

#: a host name or an address: letters, digits, `.-_:` (IPv6), `%` (a zone); no spaces
_HOST = re.compile(r"[A-Za-z0-9._:%-]+")
_DOTTED = re.compile(r"[0-9.]+")


def split_hostport(text: str, *, min_port: int = 0) -> tuple[str, int]:
    """`127.0.0.1:7000`, `[::1]:7000`, `localhost:0` -> (host, port); ValueError
    naming the input if bad."""
    host, sep, port = text.rpartition(":") if isinstance(text, str) else ("", "", "")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    ok = (
        sep
        and _HOST.fullmatch(host) is not None
        and (bracketed or ":" not in host)
        and port.isdigit()
        and (port == "0" or not port.startswith("0"))
        and min_port <= int(port) <= 65535
    )
    if ok and (bracketed or _DOTTED.fullmatch(host)):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            ok = False
    if not ok:
        ports = f", port {min_port}-65535" if min_port else ""
        raise ValueError(f"expected HOST:PORT (IPv6 as [::1]:PORT{ports}), got {text!r}")
    return host, int(port)


def join_hostport(host: str, port: int) -> str:
    """(host, port) -> `host:port`, brackets around an IPv6 literal."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
