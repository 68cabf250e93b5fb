"""W3C `traceparent` (Trace Context level 1) formatting and strict parsing.

The string arrives from the network (the WS envelope's `tpc`), so `parse` never
raises: anything that is not a well-formed value returns None and the message is
simply not traced. Only version `00` is accepted in its exact 55-character form;
higher versions are accepted by their first four fields, as the spec asks.
"""

from __future__ import annotations

import re
from typing import NamedTuple

#: Length of a version-00 traceparent: `00-<32 hex>-<16 hex>-<2 hex>`.
TRACEPARENT_LEN = 55
FLAG_SAMPLED = 0x01

_HEX = frozenset("0123456789abcdef")
#: Version 00, the only one anyone sends: one C-level match instead of Python checks.
_V00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})").fullmatch


class ParsedTraceparent(NamedTuple):
    trace_id: int
    span_id: int
    flags: int

    @property
    def sampled(self) -> bool:
        return bool(self.flags & FLAG_SAMPLED)


def format_traceparent(trace_id: int, span_id: int, sampled: bool = True) -> str:
    """`00-<trace id>-<span id>-<flags>`; ids are non-zero ints (128 and 64 bits)."""
    return ("00-%032x-%016x-01" if sampled else "00-%032x-%016x-00") % (trace_id, span_id)


#: A version-00 traceparent with non-zero ids and the sampled flag (bit 0 of flags).
_V00_SAMPLED = re.compile(
    r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f][13579bdf]"
).fullmatch


def sampled_v00(value: str) -> bool:
    """`value` is a well-formed version-00 traceparent with the sampled flag and
    non-zero ids: what `parse_fields` would accept and call sampled, in one C-level
    match and without building the ints (the relay and the reader ask this per
    message; the ids are parsed where the spans are built, off the data path)."""
    return _V00_SAMPLED(value) is not None


def with_span(traceparent: str, span_id: int) -> str:
    """A version-00 `traceparent` (checked by `sampled_v00`) naming `span_id` as the
    parent instead: same trace, sampled; its trace id is copied, not parsed."""
    return f"{traceparent[:36]}{span_id:016x}-01"


def _is_hex(s: str) -> bool:
    return _HEX.issuperset(s)


def parse_fields(value: object) -> tuple[int, int, int] | None:
    """`parse_traceparent` as a plain tuple (trace_id, span_id, flags): the hot-path form
    (a NamedTuple costs a Python-level `__new__`)."""
    if type(value) is not str or _V00(value) is None:
        return parse_traceparent(value)
    # validated by the match: plain slices are cheaper than its groups
    trace_id = int(value[3:35], 16)
    span_id = int(value[36:52], 16)
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id, int(value[53:55], 16)


def parse_traceparent(value: object) -> ParsedTraceparent | None:
    """The fields of a traceparent, or None if `value` is not a valid one.

    Rejects: non-strings, wrong length or separators, upper-case hex (the spec allows
    lower case only), version `ff`, all-zero trace or span ids, and for version 00
    any trailing data.
    """
    if type(value) is not str:
        return None
    m = _V00(value)
    if m is not None:
        tid, sid, flags = m.groups()
        trace_id = int(tid, 16)
        span_id = int(sid, 16)
        if trace_id == 0 or span_id == 0:
            return None
        return ParsedTraceparent(trace_id, span_id, int(flags, 16))
    if len(value) < TRACEPARENT_LEN:
        return None
    version = value[0:2]
    if value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    if not _is_hex(version) or version == "ff":
        return None
    if version == "00":
        if len(value) != TRACEPARENT_LEN:
            return None
    elif len(value) > TRACEPARENT_LEN and value[TRACEPARENT_LEN] != "-":
        return None
    tid, sid, flags = value[3:35], value[36:52], value[53:55]
    if not (_is_hex(tid) and _is_hex(sid) and _is_hex(flags)):
        return None
    trace_id = int(tid, 16)
    span_id = int(sid, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return ParsedTraceparent(trace_id, span_id, int(flags, 16))
