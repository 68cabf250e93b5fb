"""W3C traceparent helpers: round trip, and garbage from the wire never raises."""

from __future__ import annotations

from hotlink.telemetry.traceparent import (
    TRACEPARENT_LEN,
    ParsedTraceparent,
    format_traceparent,
    parse_fields,
    parse_traceparent,
    sampled_v00,
    with_span,
)
from hypothesis import given
from hypothesis import strategies as st

TID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SID = 0x00F067AA0BA902B7
EXAMPLE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_format_matches_the_spec_example() -> None:
    assert format_traceparent(TID, SID) == EXAMPLE
    assert len(EXAMPLE) == TRACEPARENT_LEN
    assert format_traceparent(TID, SID, sampled=False).endswith("-00")


def test_parse_round_trip() -> None:
    p = parse_traceparent(EXAMPLE)
    assert p == ParsedTraceparent(TID, SID, 1)
    assert p.sampled
    unsampled = parse_traceparent(EXAMPLE[:-2] + "00")
    assert unsampled is not None and not unsampled.sampled


def test_small_ids_are_zero_padded() -> None:
    tp = format_traceparent(1, 2)
    assert tp == "00-" + "0" * 31 + "1-" + "0" * 15 + "2-01"
    assert parse_traceparent(tp) == (1, 2, 1)


def test_future_version_accepts_trailing_fields() -> None:
    assert parse_traceparent("cc" + EXAMPLE[2:] + "-what-the-future-holds") == (TID, SID, 1)
    assert parse_traceparent("cc" + EXAMPLE[2:]) == (TID, SID, 1)
    assert parse_traceparent("cc" + EXAMPLE[2:] + "x") is None


BAD = [
    "",
    "00",
    EXAMPLE + "-",  # version 00 allows no trailing data
    EXAMPLE + "0",
    EXAMPLE[:-1],
    EXAMPLE.upper(),  # lower-case hex only
    "ff" + EXAMPLE[2:],  # version ff is invalid
    "00-" + "0" * 32 + "-00f067aa0ba902b7-01",  # zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",  # zero span id
    EXAMPLE.replace("-", "_"),
    "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
    "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    " 0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1 ",
    "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
]


def test_garbage_is_rejected() -> None:
    for value in BAD:
        assert parse_traceparent(value) is None, value


def test_non_strings_are_rejected() -> None:
    for value in (None, 1, b"x" * 55, EXAMPLE.encode(), ["00"], {"tpc": EXAMPLE}):
        assert parse_traceparent(value) is None


@given(st.text(max_size=80))
def test_parse_never_raises_on_text(value: str) -> None:
    p = parse_traceparent(value)
    if p is not None:
        assert p.trace_id and p.span_id
        assert format_traceparent(p.trace_id, p.span_id, p.sampled)[3:52] == value[3:52]


@given(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1), st.booleans())
def test_round_trip_any_ids(tid: int, sid: int, sampled: bool) -> None:
    assert parse_traceparent(format_traceparent(tid, sid, sampled)) == (tid, sid, int(sampled))


def _sampled_by_parse(value: str) -> bool:
    p = parse_fields(value)
    return value[:2] == "00" and p is not None and bool(p[2] & 1)


def test_sampled_v00_agrees_with_the_full_parse() -> None:
    for value in [*BAD, EXAMPLE, EXAMPLE[:-1] + "0", EXAMPLE[:-1] + "3", EXAMPLE[:-2] + "ff"]:
        assert sampled_v00(value) == _sampled_by_parse(value), value
    assert not sampled_v00("00-" + "0" * 32 + EXAMPLE[35:])  # all-zero trace id
    assert not sampled_v00(EXAMPLE[:36] + "0" * 16 + "-01")  # all-zero span id
    assert not sampled_v00("01" + EXAMPLE[2:])  # other versions take the full parse


@given(st.integers(0, 2**128 - 1), st.integers(0, 2**64 - 1), st.integers(0, 255))
def test_sampled_v00_agrees_on_any_ids_and_flags(tid: int, sid: int, flags: int) -> None:
    value = f"00-{tid:032x}-{sid:016x}-{flags:02x}"
    assert sampled_v00(value) == _sampled_by_parse(value)


@given(st.text(max_size=80))
def test_sampled_v00_agrees_on_any_text(value: str) -> None:
    assert sampled_v00(value) == _sampled_by_parse(value)


@given(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1), st.integers(1, 2**64 - 1))
def test_with_span_keeps_the_trace_and_names_the_new_span(tid: int, old: int, new: int) -> None:
    assert parse_fields(with_span(format_traceparent(tid, old), new)) == (tid, new, 1)
