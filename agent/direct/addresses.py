"""Direct-link addresses: "host:port" parsing (`common.hostport`) and the default
listen set.

The default is loopback plus the host's own interface addresses, every one on the
same ephemeral port where the kernel allows it (one port to forward or open in a
firewall). Interface discovery reads the kernel directly (no extra dependency):
IPv4 through SIOCGIFADDR per interface, IPv6 from /proc/net/if_inet6 (link-local
addresses are left out: they need a scope id a peer on another host cannot use).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import sys
from pathlib import Path

from hotlink.common.hostport import split_hostport

_SIOCGIFADDR = 0x8915
_IF_INET6 = Path("/proc/net/if_inet6")


def parse_address(text: str) -> tuple[str, int]:
    """ "host:port" or "[v6]:port" -> (host, port); ValueError that names the input."""
    try:
        return split_hostport(text)
    except ValueError as exc:
        raise ValueError(f"direct address: {exc}") from None


def has_ipv6_loopback() -> bool:
    """True when ::1 can be bound (IPv6 may be disabled in containers)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def _ipv4_interfaces() -> list[str]:
    if not sys.platform.startswith("linux"):
        return []
    import fcntl

    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                reply = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
            except OSError:
                continue  # interface without an IPv4 address
            found.append(socket.inet_ntoa(reply[20:24]))
    return found


def _ipv6_interfaces() -> list[str]:
    found: list[str] = []
    with contextlib.suppress(OSError):
        for line in _IF_INET6.read_text().splitlines():
            fields = line.split()
            if not fields or len(fields[0]) != 32:
                continue
            addr = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            if not addr.is_link_local:
                found.append(str(addr))
    return found


def interface_addresses() -> list[str]:
    """Non-loopback addresses of this host's interfaces (IPv4 first)."""
    out: list[str] = []
    for addr in _ipv4_interfaces() + (_ipv6_interfaces() if has_ipv6_loopback() else []):
        ip = ipaddress.ip_address(addr)
        if not ip.is_loopback and not ip.is_unspecified and addr not in out:
            out.append(addr)
    return out


def default_listen() -> list[tuple[str, int]]:
    """Loopback and interface addresses, port 0 (the listener picks one shared port)."""
    hosts = ["127.0.0.1"] + (["::1"] if has_ipv6_loopback() else []) + interface_addresses()
    return [(host, 0) for host in hosts]
