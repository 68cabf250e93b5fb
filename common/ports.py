"""A free TCP port for a process that binds it itself (a server devstack starts, an
MPyC party, a test's listener): the kernel picks a port no socket uses right now.

Racy by nature: the port is free when asked, and any other bind of port 0 on the
machine could be given it before the process binds it. Callers start the process
right away; nothing long-lived should keep a port picked this way in a file.
"""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
