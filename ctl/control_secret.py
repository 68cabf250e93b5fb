"""Client side of the control API's TCP authentication (agent/control_auth.py).

Over `--control-tcp` the agent serves a caller whose socket is not provably its own
user's (an app in a container, another uid acting on its behalf) only if each call
carries `authorization: Bearer <secret>`, the secret being the content of the agent's
`control-tcp.secret`. `bearer_interceptors(target)` adds that header to every call of
a channel when `HOTLINK_CONTROL_SECRET_FILE` names the file (or `secret_file` is
given), and only for TCP targets: the UNIX socket needs no secret.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import grpc

from .errors import UsageError

ENV = "HOTLINK_CONTROL_SECRET_FILE"


def read_secret(path: str) -> str:
    try:
        text = open(os.path.expanduser(path)).read().strip()  # noqa: SIM115
    except OSError as exc:
        raise UsageError(
            f"cannot read the control secret {path}: {exc}",
            f"{ENV} must name the agent's control-tcp.secret (or unset it)",
        ) from None
    if not text:
        raise UsageError(f"control secret file {path} is empty")
    return text


class _Bearer(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    def __init__(self, secret: str) -> None:
        self.header = ("authorization", f"Bearer {secret}")

    def _with_auth(self, details: Any) -> Any:
        md = list(details.metadata or ())
        md.append(self.header)
        return details._replace(metadata=md)

    async def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(self._with_auth(details), request)

    intercept_unary_unary = _call  # type: ignore[assignment]
    intercept_unary_stream = _call  # type: ignore[assignment]
    intercept_stream_unary = _call  # type: ignore[assignment]
    intercept_stream_stream = _call  # type: ignore[assignment]


def bearer_interceptors(target: str, secret_file: str | None = None) -> list[Any] | None:
    """Interceptors for a channel to `target` (None: nothing to add)."""
    path = secret_file or os.environ.get(ENV, "")
    if not path or target.startswith(("unix:", "unix-abstract:")):
        return None
    return [_Bearer(read_secret(path))]
