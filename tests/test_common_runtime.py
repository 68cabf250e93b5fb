"""`hotlink.common.loop` and `hotlink.common.version`, and the shared protocol constants
(`EVENTS_PATH`, `header_seq`) that replaced per-component copies."""

from __future__ import annotations

import asyncio
from importlib import metadata

import pytest
from hotlink.agent.control import VERSION as AGENT_VERSION
from hotlink.agent.link import events_url
from hotlink.common import loop
from hotlink.common.version import VERSION
from hotlink.relay.router import VERSION as RELAY_VERSION
from hotlink.telemetry.export import SCOPE
from hotlink.wire.envelope import EVENTS_PATH
from hotlink.wire.frames import HEADER_SIZE, MAX_SEQ, Frame, encode_frame, encode_header, header_seq


def test_version_comes_from_package_metadata() -> None:
    assert metadata.version("hotlink") == VERSION
    assert AGENT_VERSION == VERSION
    assert f"hotlink-relay/{VERSION}" == RELAY_VERSION
    assert SCOPE.version == VERSION


def test_events_path_shared_by_agent_and_relay() -> None:
    assert EVENTS_PATH == "/api/v1/events"  # reference §1
    assert events_url("ws://h:1") == "ws://h:1" + EVENTS_PATH


@pytest.mark.parametrize("seq", [0, 1, 255, 1 << 32, MAX_SEQ])
def test_header_seq_reads_the_seq_in_place(seq: int) -> None:
    whole = encode_frame(Frame(b"payload", seq, "x.request", "etag"))
    assert header_seq(whole) == seq
    head = encode_header(b"p", b"", 3, seq)
    assert header_seq(head) == header_seq(memoryview(head)) == header_seq(bytearray(head)) == seq
    assert header_seq(head[:HEADER_SIZE]) == seq


def test_run_main_uses_uvloop_when_asked_and_available() -> None:
    async def which() -> bool:
        await asyncio.sleep(0)
        return loop.running_on_uvloop()

    assert loop.run_main(which(), use_uvloop=False) is False
    assert loop.run_main(which()) is loop.uvloop_available()
