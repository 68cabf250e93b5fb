"""How the agent secures its relay link: TLS trust for wss://, a warning for ws://.

`wss://` URLs are verified against the system CAs, or against `--ca-file` (a PEM
bundle: a private CA, or the certificate of a relay behind a TLS terminator), with
hostname checking on. A `ws://` URL to a host other than loopback sends the bearer
token and every frame in clear: allowed (a private network may be trusted), but
logged as a warning at every start.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import urlsplit

from .open_args import is_loopback


def client_context(server: str, ca_file: Path | None) -> ssl.SSLContext | None:
    """The SSL context for `server`, or None for ws:// (raises OSError/SSLError for
    a CA file that cannot be loaded)."""
    if not server.startswith("wss://"):
        return None
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def cleartext_warning(server: str, ca_file: Path | None = None) -> str | None:
    """What to warn about for this relay URL, or None."""
    parts = urlsplit(server)
    if parts.scheme != "ws":
        return None
    host = parts.hostname or ""
    if ca_file is not None:
        return (
            f"--ca-file is set but the relay URL {server} is ws:// (no TLS): the CA file "
            "is unused and the token goes in clear; use wss://"
        )
    if is_loopback(host):
        return None
    return (
        f"the relay URL {server} is ws:// to a non-loopback host: the bearer token and "
        "all frames cross the network unencrypted; use wss:// (hotlink-relay serve "
        "--tls-cert/--tls-key, agent --ca-file for a private CA)"
    )
