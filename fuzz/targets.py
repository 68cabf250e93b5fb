"""Fuzz targets: one function per decoder, `bytes -> None`, raising `Bug` on a finding.

Each target feeds arbitrary bytes to a codec and checks:
- the only exception that escapes is the codec's own error type (`ProtocolError` for
  the wire codecs, `AclError` for the ACL parser); anything else is a `Bug`;
- cheap oracles where the format allows one (re-encoding a decoded HLNK frame gives
  back the consumed bytes; a decoded envelope re-encodes and decodes to the same
  message; a validated path has no `..`, `//`, leading `/` or control character).

Time and memory bounds per case are enforced by the runner (`run.py`), not here, so
the targets stay usable from atheris and from hypothesis alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import msgpack
from hotlink.relay.acl import AclError, AclIndex, glob_to_regex, parse_acl
from hotlink.wire import paths
from hotlink.wire.envelope import PREFIX, decode, encode, encode_json
from hotlink.wire.errors import ProtocolError
from hotlink.wire.frames import Frame, FrameDecoder, encode_frame
from hotlink.wire.messages import Unsupported

VECTORS = Path(__file__).resolve().parent.parent / "tests" / "vectors"


class Bug(AssertionError):
    """A finding: the codec misbehaved on this input."""


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise Bug(what)


# --------------------------------------------------------------------------- HLNK


def frames(data: bytes) -> None:
    """`FrameDecoder` fed in fuzzer-chosen chunks with a fuzzer-chosen size limit."""
    if len(data) < 2:
        return
    limits = (0, 1, 16, 255, 4096, 1 << 16, 16 * 1024 * 1024)
    max_payload = limits[data[0] % len(limits)]
    chunk = 1 + data[1] % 64 if data[1] & 0x80 else len(data)
    body = data[2:]
    dec = FrameDecoder(max_payload)
    got: list[Frame] = []
    fed = 0
    try:
        while fed < len(body):
            got += dec.feed(body[fed : fed + chunk])
            fed += min(chunk, len(body) - fed)
    except ProtocolError:
        return
    consumed = b"".join(encode_frame(f) for f in got)
    _expect(body.startswith(consumed), "re-encoded frames differ from the input")
    _expect(dec.buffered == len(body) - len(consumed), "buffered byte count is wrong")
    for f in got:
        _expect(len(f.payload) <= max_payload, "frame over the payload limit")
    try:
        dec.close()
    except ProtocolError:
        _expect(dec.buffered > 0, "close() failed with nothing buffered")
    else:
        _expect(dec.buffered == 0, "close() accepted a partial frame")


# ----------------------------------------------------------------------- envelope


def _roundtrip(frame: bytes | str, max_size: int) -> None:
    try:
        env = decode(frame, max_size)
    except ProtocolError:
        return
    msg = env.msg
    if isinstance(msg, Unsupported):
        return
    # the relay re-encodes what it forwards: that must never fail on decoded input
    for enc in (encode(msg, env.id, env.traceparent), encode_json(msg, env.id)):
        again = decode(enc, 1 << 30).msg
        _expect(again == msg, f"round trip changed {msg!r} into {again!r}")


def envelope(data: bytes) -> None:
    """`envelope.decode` on raw binary frames, text frames, and well-formed outer maps
    whose `dat` is fuzzed (so the typed-payload parsers are reached quickly)."""
    if not data:
        return
    mode, body = data[0] % 4, data[1:]
    max_size = 1 << 20 if data[0] & 0x80 else 64
    if mode == 0:
        _roundtrip(body, max_size)
    elif mode == 1:
        _roundtrip(PREFIX + body, max_size)
    elif mode == 2:
        _roundtrip(body.decode("utf-8", "replace"), max_size)
    else:
        typ = body[0] % 16 if body else 0
        outer = {"id": "x", "typ": typ, "dat": body[1:]}
        _roundtrip(PREFIX + msgpack.packb(outer, use_bin_type=True), max_size)


# ---------------------------------------------------------------------------- ACL

_USERS = ("alice@example.org", "bob@example.org", "*", "eve@evil.org")


def acl(data: bytes) -> None:
    """`parse_acl`, then evaluating the parsed rules (the glob matcher must not blow
    up on user-written patterns either)."""
    try:
        parsed = parse_acl(data)
    except AclError:
        return
    _expect(isinstance(parsed.rules, tuple), "rules not a tuple")
    idx = AclIndex()
    idx.set_file("alice@example.org", parsed)
    tail = data[-64:].decode("ascii", "replace").replace("\ufffd", "x")
    rels = ["", "a", "a/b/c", "x" * 200, tail]
    for rule in parsed.rules:
        rels.append(rule.pattern.replace("*", "a").replace("?", "b"))
    for rel in rels:
        for rule in parsed.rules:
            glob_to_regex(rule.pattern).fullmatch(rel)
        try:
            full = paths.validate_path("alice@example.org/" + rel if rel else "alice@example.org")
        except ProtocolError:
            continue
        for user in _USERS[1:]:
            idx.can(user, full, 1)  # type: ignore[arg-type]


# -------------------------------------------------------------------------- paths


def path(data: bytes) -> None:
    """`validate_path` / `validate_relpath` / `validate_email` and their guarantees."""
    text = data.decode("utf-8", "surrogateescape")
    for fn in (paths.validate_path, paths.validate_relpath, paths.validate_email):
        try:
            fn(text)
        except ProtocolError:
            continue
        if fn is paths.validate_email:
            _expect("/" not in text and "@" in text, f"bad email accepted: {text!r}")
            _expect(text == text.lower(), f"mixed-case email accepted: {text!r}")
            continue
        segs = text.split("/")
        _expect(not text.startswith("/"), f"absolute path accepted: {text!r}")
        _expect("" not in segs and "." not in segs and ".." not in segs, repr(text))
        _expect(not any(ord(c) < 0x20 or c in "\\\x7f" for c in text), repr(text))
        if fn is paths.validate_path:
            owner, _ = paths.split_owner(text)
            _expect(paths.owner_of(text) == owner, "owner_of disagrees with split_owner")
            _expect(paths.is_within(text, owner), "path not within its owner")
            _expect(not paths.is_within(text, owner + ".evil"), "prefix ownership")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "frames": frames,
    "envelope": envelope,
    "acl": acl,
    "paths": path,
}

#: Codec error types a target may let escape (it catches them itself; listed for docs).
OWN_ERRORS = {"frames": ProtocolError, "envelope": ProtocolError, "acl": AclError}


def seeds(name: str) -> list[bytes]:
    """A few valid inputs per target, so coverage starts past the magic checks."""
    if name == "frames":
        vec = json.loads((VECTORS / "hlnk_frames.json").read_text())
        return [b"\x06\x00" + bytes.fromhex(v["frame_hex"]) for v in vec["valid"]]
    if name == "envelope":
        vec = json.loads((VECTORS / "ws_envelope.json").read_text())
        out = []
        for v in vec["messages"]:
            out.append(b"\x80" + bytes.fromhex(v["ws_binary_hex"]))
            if "ws_text_json" in v:
                out.append(b"\x82" + v["ws_text_json"].encode())
        return out
    if name == "acl":
        return [
            b'rules:\n  - pattern: "**"\n    access: {read: ["*"], write: ["bob@example.org"]}\n',
            b"terminal: true\nrules: [{pattern: 'a/*.txt', access: {admin: []}}]\n",
        ]
    return [b"alice@example.org/_mpc/0_to_1", b"bob@x.org", b"a/../b"]
