"""Who is on the other end of a loopback TCP connection (Linux `/proc/net/tcp{,6}`).

TCP has no SO_PEERCRED: on loopback the client's socket is a row of the kernel's
socket table with its owner's uid, found by the connection's two addresses swapped.
Both families are looked up (`::1`, and IPv4 clients of a dual-stack listener, which
appear to us as `::ffff:a.b.c.d` but are rows of `tcp`). The answer is None when the row cannot be
found or read (another OS, a namespace that hides it): callers must treat None as
"not our user" (fail closed), never as "allowed".
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import urllib.parse

_TABLES = {socket.AF_INET: "/proc/net/tcp", socket.AF_INET6: "/proc/net/tcp6"}


def _v6_hex(packed: bytes) -> str:
    return "".join(f"{w:08X}" for w in struct.unpack("=4I", packed))


def proc_addrs(host: str, port: int) -> dict[int, str]:
    """How `/proc/net/tcp{,6}` may print an address, by family: the raw address in
    32-bit words, each in host byte order, then `:PORT` in hex. An IPv4 address may
    sit in either table (a dual-stack socket holds it as `::ffff:a.b.c.d`, which is
    how gRPC's sockets hold 127.0.0.1)."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    p = f":{port:04X}"
    if isinstance(ip, ipaddress.IPv6Address):
        return {socket.AF_INET6: _v6_hex(ip.packed) + p}
    (n,) = struct.unpack("=I", ip.packed)
    mapped = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed)
    return {socket.AF_INET: f"{n:08X}" + p, socket.AF_INET6: _v6_hex(mapped.packed) + p}


def _rows(fam: int) -> list[list[str]]:
    with open(_TABLES[fam]) as fh:
        next(fh)
        return [line.split() for line in fh]


def tcp_peer_uid(peer: tuple, local: tuple | None) -> int | None:
    """Owner uid of the client end of a TCP connection we accepted, or None.

    `peer` / `local` are `getpeername()` / `getsockname()` of our accepted socket
    (2-tuples for IPv4, 4-tuples for IPv6). The client's row has them swapped.
    """
    if local is None or len(peer) < 2 or len(local) < 2:
        return None
    try:
        want_local = proc_addrs(str(peer[0]), int(peer[1]))
        want_rem = proc_addrs(str(local[0]), int(local[1]))
        for fam, loc in want_local.items():
            rem = want_rem.get(fam)
            if rem is None:
                continue
            for f in _rows(fam):
                if f[1] == loc and f[2] == rem:
                    return int(f[7])
    except (OSError, ValueError, StopIteration, IndexError, KeyError):
        return None
    return None


def peer_is_us(peer: tuple, local: tuple | None) -> bool:
    """True only when the client end is proven to belong to this process's user."""
    return tcp_peer_uid(peer, local) == os.getuid()


def grpc_peer_address(peer: str) -> tuple[str, int] | None:
    """`("::1", 5000)` from a gRPC peer string (`ipv4:127.0.0.1:5000`,
    `ipv6:[::1]:5000`, percent-encoded or not); None for other transports (`unix:`)."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None
    rest = urllib.parse.unquote(rest)
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def tcp_peer_uid_to_port(peer: tuple[str, int], ports: set[int]) -> int | None:
    """Owner uid of a client at `peer` connected to one of our listening `ports` on
    any local address: for servers (gRPC) that expose only the peer's address."""
    try:
        for fam, loc in proc_addrs(peer[0], peer[1]).items():
            for f in _rows(fam):
                if f[1] == loc and int(f[2].rsplit(":", 1)[1], 16) in ports:
                    return int(f[7])
    except (OSError, ValueError, StopIteration, IndexError, KeyError):
        return None
    return None
