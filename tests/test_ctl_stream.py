"""`hotlink.ctl.stream` (and the `hotlink.ctl.client` names apps use for it) import no
gRPC and no OpenTelemetry; the control-API names still import from `client`."""

from __future__ import annotations

import contextlib
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


APP = """
import asyncio, socket, sys
from hotlink.ctl.stream import Stream

async def app() -> None:
    s = await Stream.connect(sys.argv[1], timeout=5)
    # a small kernel buffer, and less than the high-water mark in frames: none of the
    # sends waits, and most of the bytes are still in the transport at close()
    s._transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    for _ in range(4):
        await s.send(b"x" * 10_000)
    await s.close()

asyncio.run(app())
"""


def test_close_delivers_what_was_buffered_before_the_app_exits(tmp_path) -> None:
    """An app that sends, closes and exits at once must not lose the frames still in
    its transport's buffer: `close()` returns once they are written. The endpoint
    here reads only after the app has exited, so the buffer is full at close."""
    import socket

    from hotlink.wire.frames import Frame, encode_frame

    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(tmp_path / "stream.sock"))
    srv.listen(1)
    app = subprocess.Popen([sys.executable, "-c", APP, str(tmp_path)])
    conn, _ = srv.accept()
    srv.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        app.wait(0.5)  # the app's close() waits until the endpoint has read it all
    conn.settimeout(30)
    got = bytearray()
    while chunk := conn.recv(1 << 16):
        got.extend(chunk)
    conn.close()
    assert app.wait(30) == 0
    want = encode_frame(Frame(b"x" * 10_000)) * 4
    assert bytes(got) == want, len(got)
