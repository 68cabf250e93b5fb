"""Payload keys per message type and encoding: what we write, what we read.

The reference declares its payloads as Go structs. The hotlink payloads (types 9-14)
carry explicit `msgpack:"..."` tags, so both encodings use the short keys (`sid`,
`pth`, ...). The older payloads (System, Error, FileWrite, FileDelete, Ack, Nack,
FileNotify, and Http / ACLManifest, which we do not interpret) have `json:"..."` tags
only: the reference's JSON uses the short keys, but its msgpack library falls back to
the Go *field names* (`OriginalId`, `Path`, `ETag`, ...) and, when decoding, matches
only those. A short-keyed msgpack Ack decodes there as an Ack with an empty id.

So in msgpack we write the Go field names for those types, in JSON the short keys,
and we read both spellings in both encodings (a peer written from the protocol table
may send short keys in msgpack). Keys the reference does not define (our extension
fields, e.g. FileWrite `mtm`) keep their short name in both encodings; the
reference's decoders skip unknown keys. docs/design.md "Payload keys" lists them all.

Type numbers are spelled out here (not imported from `messages`) so that `messages`
can use this table without an import circle.
"""

from __future__ import annotations

from typing import Any

_FILE = (("pth", "Path"), ("etg", "ETag"), ("len", "Length"), ("con", "Content"))

#: typ -> ((short key, Go field name), ...) for the payloads without msgpack tags,
#: in the reference's struct order.
GO_FIELDS: dict[int, tuple[tuple[str, str], ...]] = {
    0: (("ver", "SystemVersion"), ("msg", "Message")),  # System
    1: (("cod", "Code"), ("pth", "Path"), ("msg", "Message")),  # Error
    2: _FILE,  # FileWrite
    3: (("pth", "Path"),),  # FileDelete
    4: (("oid", "OriginalId"),),  # Ack
    5: (("oid", "OriginalId"), ("err", "Error")),  # Nack
    7: _FILE,  # FileNotify (the reference uses the FileWrite struct)
}

_TO_GO: dict[int, dict[str, str]] = {t: dict(f) for t, f in GO_FIELDS.items()}
_FROM_GO: dict[int, dict[str, str]] = {
    t: {go: short for short, go in f} for t, f in GO_FIELDS.items()
}


def msgpack_keys(typ: int, dat: dict[str, Any]) -> dict[str, Any]:
    """The payload map as the reference's msgpack spells it (Go field names for the
    untagged types; every other key unchanged)."""
    names = _TO_GO.get(typ)
    if names is None:
        return dat
    return {names.get(k, k): v for k, v in dat.items()}


def short_keys(typ: int, dat: dict[Any, Any]) -> dict[str, Any]:
    """The payload map with short keys, whichever spelling the peer used. Non-string
    keys are dropped (the typed decoders only look up string keys). A short key wins
    over the Go name of the same field if a peer sent both."""
    names = _FROM_GO.get(typ)
    out: dict[str, Any] = {}
    if names is None:
        for k, v in dat.items():
            if isinstance(k, str):
                out[k] = v
        return out
    for k, v in dat.items():
        if not isinstance(k, str):
            continue
        short = names.get(k)
        if short is None:
            out[k] = v
        elif short not in dat:
            out[short] = v
    return out
