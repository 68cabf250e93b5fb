"""`hotlink.ctl.stream` (and the `hotlink.ctl.client` names apps use for it) import no
gRPC and no OpenTelemetry; the control-API names still import from `client`."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("grpc", "grpc_health", "opentelemetry", "google.protobuf", "hotlink.v1")


def _loaded_after(code: str) -> list[str]:
    check = (
        f"{code}\nimport sys\n"
        f"print(' '.join(sorted(k for k in sys.modules if k.startswith({HEAVY!r}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout.split()


@pytest.mark.parametrize(
    "code",
    [
        "from hotlink.ctl.client import Stream, Endpoint, resolve_endpoint, parse_hostport",
        "import hotlink.ctl.client",
        "from hotlink.ctl.stream import Stream",
    ],
)
def test_streams_import_no_grpc_or_opentelemetry(code: str) -> None:
    assert _loaded_after(code) == []


def test_control_names_still_import_from_client() -> None:
    loaded = _loaded_after(
        "from hotlink.ctl.client import AgentClient, translate_rpc_error, default_control_socket\n"
        "from hotlink.ctl.agent_client import AgentClient as A\n"
        "assert AgentClient is A"
    )
    assert "grpc" in loaded  # loaded on demand, by the names that need it


def test_unknown_name_is_an_attribute_error() -> None:
    import hotlink.ctl.client as client

    with pytest.raises(AttributeError):
        _ = client.NoSuchThing  # type: ignore[attr-defined]
