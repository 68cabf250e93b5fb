"""TLS for the relay's listener (`hotlink-relay serve --tls-cert --tls-key`).

Tokens and frames otherwise cross the network in clear. The relay terminates TLS
itself (no proxy needed): TLS 1.2 at least, the certificate chain and key as PEM
files; clients verify it against the system CAs or their `--ca-file`.
"""

from __future__ import annotations

import ssl


class TlsConfigError(ValueError):
    """Certificate or key files that cannot be used; the message says which."""


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except FileNotFoundError as exc:
        raise TlsConfigError(f"TLS: cannot read {exc.filename}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(
            f"TLS: cannot load certificate {cert_file} with key {key_file}: {exc}"
        ) from None
    return ctx
