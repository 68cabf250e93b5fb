"""The exporter process holds records back while its traced process is busy
(`telemetry/holdback.py`): the decisions without a process, then a real exporter
process and a real OTLP receiver (no timing assertions; waits have generous timeouts)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hotlink.telemetry import names as N
from hotlink.telemetry.config import resolve
from hotlink.telemetry.core import Telemetry, busy_can_wait
from hotlink.telemetry.exporter_process import ProcessSink, encode_batch, split_frames
from hotlink.telemetry.holdback import IDLE_ENV, MAX_HOLD_ENV, HoldBack
from hotlink.telemetry.receiver import OtlpReceiver, has_names


def test_nothing_held_nothing_due() -> None:
    h = HoldBack(idle=0.5, max_hold=10.0)
    assert h.due(100.0) is None and not h.should_release(100.0)


def test_released_once_the_process_has_been_quiet_for_idle_seconds() -> None:
    h = HoldBack(idle=0.5, max_hold=10.0)
    h.arrived(100, now=1.0)
    h.arrived(100, now=1.3)  # still busy: the quiet period restarts
    assert h.due(1.3) == pytest.approx(0.5)
    assert not h.should_release(1.7)
    assert h.should_release(1.8)
    h.released()
    assert h.held_bytes == 0 and h.due(2.0) is None


def test_a_busy_process_cannot_hold_records_back_for_longer_than_max_hold() -> None:
    h = HoldBack(idle=0.5, max_hold=2.0)
    t = 0.0
    h.arrived(10, now=t)
    while t < 1.9:  # new records every 0.2 s: never idle
        t += 0.2
        h.arrived(10, now=t)
        assert not h.should_release(t)
    assert h.should_release(2.0)
    assert h.due(2.0) == 0.0


def test_too_many_held_bytes_release_at_once() -> None:
    h = HoldBack(idle=100.0, max_hold=100.0, max_bytes=1000)
    h.arrived(999, now=0.0)
    assert not h.should_release(0.0)
    h.arrived(1, now=0.0)
    assert h.should_release(0.0)


def test_settings_from_the_environment_and_bad_values() -> None:
    h = HoldBack.from_env({IDLE_ENV: "0.25", MAX_HOLD_ENV: "3"})
    assert (h.idle, h.max_hold) == (0.25, 3.0)
    assert HoldBack.from_env({}).idle == 0.5
    with pytest.raises(ValueError, match=IDLE_ENV):
        HoldBack.from_env({IDLE_ENV: "soon"})
    with pytest.raises(ValueError, match=MAX_HOLD_ENV):
        HoldBack.from_env({MAX_HOLD_ENV: "-1"})


def test_split_frames_keeps_payloads_pickled_and_waits_for_torn_ones() -> None:
    one = encode_batch([("a", 1)])
    frames, used = split_frames(bytearray(one + one[:3]))
    assert used == len(one) and len(frames) == 1
    assert frames[0] == one[4:]


def _cfg(rx: OtlpReceiver):  # type: ignore[no-untyped-def]
    return resolve(
        None,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "OTEL_TRACES_SAMPLER": "always_on"},
        default_service_name=N.SERVICE_RELAY,
    )


def _traced(otlp_receiver: OtlpReceiver) -> tuple[ProcessSink, Telemetry, Any]:
    """A Telemetry whose records go to a real exporter process, and a sampled origin."""
    sink = ProcessSink(_cfg(otlp_receiver)).start()
    tel = Telemetry(enabled=True, root_ratio=1.0, sink=sink, start_thread=False)
    ctx = tel.sample_origin()
    assert ctx is not None
    return sink, tel, ctx


def test_held_records_go_out_once_the_process_is_quiet(
    otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(IDLE_ENV, "0.1")
    sink, tel, ctx = _traced(otlp_receiver)
    tel.record(N.HOTLINK_IPC_READ, ctx, 1_000, 2_000, {N.SEQ: 1})
    tel.drain()  # handed over, no flush request: only the quiet period releases it
    otlp_receiver.wait_for(has_names(N.HOTLINK_IPC_READ), timeout=30)
    tel.shutdown(timeout=30)
    assert sink.proc is not None and sink.proc.returncode == 0


def test_a_flush_request_releases_what_is_held_at_once(
    otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(IDLE_ENV, "3600")  # never quiet long enough within this test
    monkeypatch.setenv(MAX_HOLD_ENV, "3600")
    sink, tel, ctx = _traced(otlp_receiver)
    tel.record(N.HOTLINK_IPC_READ, ctx, 1_000, 2_000, {N.SEQ: 1})
    tel.record(N.RELAY_ROUTE, ctx.child(), 2_000, 3_000, {N.SEQ: 2})
    tel.flush(timeout=30)  # acknowledged only once the held records were sent
    spans = otlp_receiver.wait_for(has_names(N.HOTLINK_IPC_READ, N.RELAY_ROUTE), timeout=30)
    assert len(spans) == 2
    tel.shutdown(timeout=30)
    assert sink.dropped == 0


def test_flusher_leaves_records_queued_while_they_keep_arriving() -> None:
    assert busy_can_wait(queued=10, before=5, max_pending=100)  # busy: later
    assert not busy_can_wait(queued=10, before=10, max_pending=100)  # quiet: now
    assert not busy_can_wait(queued=50, before=40, max_pending=100)  # half full: now


def test_flusher_hands_records_over_once_the_process_is_quiet() -> None:
    got: list[object] = []

    class ListSink:
        compact = True

        def export(self, records: list[object]) -> None:
            got.extend(records)

    tel = Telemetry(enabled=True, root_ratio=1.0, sink=ListSink(), flush_interval=0.01)
    try:
        for i in range(100):
            tel.add((3, 1, 2, 3, 0, 1, {}, f"m{i}", 10, i, ""))
        deadline = time.monotonic() + 30
        while len(got) < 100 and time.monotonic() < deadline:
            time.sleep(0.01)  # condition wait, generous timeout
        assert len(got) == 100 and tel.pending == 0
    finally:
        tel.shutdown(timeout=5)
