"""The client library apps import: `from hotlink.ctl.client import Stream, AgentClient`.

Two halves with different weights:
- streams (`Stream`, `Endpoint`, `resolve_endpoint`, ...) from `stream`, which imports
  no gRPC and no OpenTelemetry; loaded with this module.
- the control API (`AgentClient`, `translate_rpc_error`, ...) from `agent_client`,
  which needs grpc; loaded on first use of one of its names (a module `__getattr__`),
  so an app that only streams frames never imports grpc.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .stream import (
    PIPE_NAME,
    SOCK_NAME,
    TCP_NAME,
    Endpoint,
    Stream,
    parse_hostport,
    resolve_endpoint,
)

if TYPE_CHECKING:
    from .agent_client import (
        AgentClient,
        control_target,
        default_control_socket,
        session_ref,
        translate_rpc_error,
        unreachable,
    )

_CONTROL_NAMES = frozenset(
    {
        "AgentClient",
        "control_target",
        "default_control_socket",
        "session_ref",
        "translate_rpc_error",
        "unreachable",
    }
)

__all__ = [
    "PIPE_NAME",
    "SOCK_NAME",
    "TCP_NAME",
    "AgentClient",
    "Endpoint",
    "Stream",
    "control_target",
    "default_control_socket",
    "parse_hostport",
    "resolve_endpoint",
    "session_ref",
    "translate_rpc_error",
    "unreachable",
]


def __getattr__(name: str) -> Any:
    if name in _CONTROL_NAMES:
        from . import agent_client

        return getattr(agent_client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
