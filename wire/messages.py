"""Typed WS messages with the reference's type numbers and short keys (reference §2).

`to_dat` gives the short keys; how each encoding spells them is in `keys`.

Each class knows its `TYP` and how to turn itself into the `dat` map and back.
`from_dat` validates types strictly (a wrong type is a `ProtocolError`) and ignores
keys it does not know, so newer peers can add fields.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import ProtocolError
from .keys import short_keys

MAX_U64 = 2**64 - 1

# Reasons the relay uses; peers match on them, so they are part of the protocol.
REASON_PERMISSION_DENIED = "permission denied"
REASON_UNKNOWN_SESSION = "unknown session"
REASON_SENDER_GONE = "sender disconnected"
REASON_READER_GONE = "reader disconnected"
REASON_SESSION_IN_USE = "session id in use"
#: a session refused by the relay's limits (sessions per user, open rate): not final,
#: the same open can succeed later
REASON_TOO_MANY_SESSIONS = "too many sessions"
#: a session that carried nothing for the relay's --idle-timeout
REASON_IDLE = "idle timeout"
#: Nack prefixes of a refused FileWrite: the store is full for that datasite (final),
#: or the writer goes over the relay's write rate (send it again after a pause)
REASON_QUOTA_EXCEEDED = "quota exceeded"
REASON_RATE_LIMITED = "rate limited"
#: relay rejects of a session open that are limits, not verdicts: the open may be
#: tried again later
TRANSIENT_REJECTS = frozenset({REASON_TOO_MANY_SESSIONS, REASON_RATE_LIMITED})


def _norm(typ: int, dat: Any) -> dict[str, Any]:
    if not isinstance(dat, dict):
        raise ProtocolError(f"message payload must be a map, got {type(dat).__name__}")
    return short_keys(typ, dat)


def _str(d: dict[str, Any], key: str, default: str | None = None) -> str:
    v = d.get(key, default)
    if v is None:
        raise ProtocolError(f"missing field {key!r}")
    if not isinstance(v, str):
        raise ProtocolError(f"field {key!r} must be a string, got {type(v).__name__}")
    return v


def _int(d: dict[str, Any], key: str, default: int | None = None, hi: int = MAX_U64) -> int:
    v = d.get(key, default)
    if v is None:
        raise ProtocolError(f"missing field {key!r}")
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= hi:
        raise ProtocolError(f"field {key!r} must be an integer in [0, {hi}], got {v!r}")
    return v


def _sint(d: dict[str, Any], key: str, default: int = 0) -> int:
    v = d.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ProtocolError(f"field {key!r} must be an integer, got {v!r}")
    return v


def _bool(d: dict[str, Any], key: str) -> bool:
    """An optional flag of our extensions (absent: False); only a msgpack/JSON boolean."""
    v = d.get(key, False)
    if not isinstance(v, bool):
        raise ProtocolError(f"field {key!r} must be a boolean, got {type(v).__name__}")
    return v


def _bytes(d: dict[str, Any], key: str, text: bool) -> bytes:
    v = d.get(key, b"")
    if v is None:
        return b""
    if isinstance(v, bytes):
        return v
    if text and isinstance(v, str):  # legacy JSON carries bytes as base64
        try:
            return base64.b64decode(v, validate=True)
        except ValueError:
            raise ProtocolError(f"field {key!r} is not valid base64") from None
    raise ProtocolError(f"field {key!r} must be binary, got {type(v).__name__}")


def _strlist(d: dict[str, Any], key: str) -> list[str]:
    v = d.get(key) or []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ProtocolError(f"field {key!r} must be a list of strings")
    return list(v)


@dataclass(slots=True)
class System:
    TYP: ClassVar[int] = 0
    version: str = ""
    message: str = ""

    def to_dat(self) -> dict[str, Any]:
        return {"ver": self.version, "msg": self.message}

    @classmethod
    def from_dat(cls, d: dict[str, Any], text: bool = False) -> System:
        return cls(_str(d, "ver", ""), _str(d, "msg", ""))


@dataclass(slots=True)
class Error:
    TYP: ClassVar[int] = 1
    code: int = 0
    path: str = ""
    message: str = ""

    def to_dat(self) -> dict[str, Any]:
        return {"cod": self.code, "pth": self.path, "msg": self.message}

    @classmethod
    def from_dat(cls, d: dict[str, Any], text: bool = False) -> Error:
        return cls(_sint(d, "cod"), _str(d, "pth", ""), _str(d, "msg", ""))


@dataclass(slots=True)
class FileWrite:
    """`mtm` (our extension, omitted when 0) is the relay's store mtime in ns; the relay
    sets it only on files it sends in answer to a `FileSync`, so a reader can resume
    its catch-up from there. `wrt` (our extension, omitted when empty) is the user the
    relay authenticated as the file's writer, stamped by the relay on the fallback
    files it passes on, so a reader replays a session's files only if they come from
    its sender; a client's own `wrt` is ignored. Reference peers ignore both."""

    TYP: ClassVar[int] = 2
    path: str
    etag: str = ""
    length: int = 0
    content: bytes = b""
    mtime: int = 0
    writer: str = ""

    def to_dat(self) -> dict[str, Any]:
        d: dict[str, Any] = {"pth": self.path, "etg": self.etag, "len": self.length}
        if self.content:
            d["con"] = self.content
        if self.mtime:
            d["mtm"] = self.mtime
        if self.writer:
            d["wrt"] = self.writer
        return d

    @classmethod
    def from_dat(cls, d: dict[str, Any], text: bool = False) -> FileWrite:
        return cls(
            _str(d, "pth"),
            _str(d, "etg", ""),
            _int(d, "len", 0, 2**63 - 1),
            _bytes(d, "con", text),
            _int(d, "mtm", 0, 2**63 - 1),
            _str(d, "wrt", ""),
        )


@dataclass(slots=True)
class FileDelete:
    TYP: ClassVar[int] = 3
    path: str

    def to_dat(self) -> dict[str, Any]:
        return {"pth": self.path}

    @classmethod
    def from_dat(cls, d: dict[str, Any], text: bool = False) -> FileDelete:
        return cls(_str(d, "pth"))


@dataclass(slots=True)
class Ack:
    TYP: ClassVar[int] = 4
    original_id: str

    def to_dat(self) -> dict[str, Any]:
        return {"oid": self.original_id}

    @classmethod
    def from_dat(cls, d: dict[str, Any], text: bool = False) -> Ack:
        return cls(_str(d, "oid"))


@dataclass(slots=True)
class Nack:
    TYP: ClassVar[int] = 5
    original_id: str
    error: str = ""

    def to_dat(self) -> dict[str, Any]:
        return {"oid": self.original_id, "err": self.error}

    @classmethod
    def from_dat(cls, d: dict[str, Any], text: bool = False) -> Nack:
        return cls(_str(d, "oid"), _str(d, "err", ""))


@dataclass(slots=True)
class FileNotify(FileWrite):
    TYP: ClassVar[int] = 7


@dataclass(slots=True)
class HotlinkOpen:
    """`ans` (our extension, omitted when False; `extensions.STARTS`): on the offer the
    relay sends a reader, the session's sender answers a new reader's Accept with
    `hotlink.stream.start`, so the reader holds its first live frames for that answer.
    The relay sets it from the sender's announced extensions; a client never does."""

    TYP: ClassVar[int] = 9
    sid: str
    path: str
    frm: str = ""
    to: str = ""
    answers: bool = False

    def to_dat(self) -> dict[str, Any]:
        d: dict[str, Any] = {"sid": self.sid, "pth": self.path}
        if self.frm:
            d["frm"] = self.frm
        if self.to:
            d["to"] = self.to
        if self.answers:
            d["ans"] = True
        return d

    @classmethod
    def from_dat(cls, d: dict[str, Any], text: bool = False) -> HotlinkOpen:
        return cls(
            _str(d, "sid"), _str(d, "pth"), _str(d, "frm", ""), _str(d, "to", ""), _bool(d, "ans")
        )


@dataclass(slots=True)
class HotlinkAccept:
    """`frm` (our extension, omitted when empty) names the accepting reader when the
    relay passes the accept on to the sender; the relay sets it, never the client.

    `seq` (our extension; omitted when None): the last seq the reader has
    delivered in order on this sid (0: none yet). The relay passes it on with `frm`;
    the sender re-sends from `seq + 1`. Absent (reference reader): nothing is known."""

    TYP: ClassVar[int] = 10
    sid: str
    frm: str = ""
    seq: int | None = None

    def to_dat(self) -> dict[str, Any]:
        d: dict[str, Any] = {"sid": self.sid}
        if self.frm:
            d["frm"] = self.frm
        if self.seq is not None:
            d["seq"] = self.seq
        return d

    @classmethod
    def from_dat(cls, d: dict[str, Any], text: bool = False) -> HotlinkAccept:
        seq = _int(d, "seq") if d.get("seq") is not None else None
        return cls(_str(d, "sid"), _str(d, "frm", ""), seq)


@dataclass(slots=True)
class HotlinkReject:
    """`frm` (extension, relay-set) names the reader whose reject is passed on."""

    TYP: ClassVar[int] = 11
    sid: str
    reason: str = ""
    frm: str = ""

    def to_dat(self) -> dict[str, Any]:
        d: dict[str, Any] = {"sid": self.sid}
        if self.reason:
            d["rsn"] = self.reason
        if self.frm:
            d["frm"] = self.frm
        return d

    @classmethod
    def from_dat(cls, d: dict[str, Any], text: bool = False) -> HotlinkReject:
        return cls(_str(d, "sid"), _str(d, "rsn", ""), _str(d, "frm", ""))


@dataclass(slots=True)
class HotlinkData:
    TYP: ClassVar[int] = 12
    sid: str
    seq: int
    path: str = ""
    payload: bytes = b""
    etag: str = ""

    def to_dat(self) -> dict[str, Any]:
        d: dict[str, Any] = {"sid": self.sid, "seq": self.seq, "pth": self.path}
        if self.etag:
            d["etg"] = self.etag
        if self.payload:
            d["pay"] = self.payload
        return d

    @classmethod
    def from_dat(cls, d: dict[str, Any], text: bool = False) -> HotlinkData:
        return cls(
            _str(d, "sid"),
            _int(d, "seq"),
            _str(d, "pth", ""),
            _bytes(d, "pay", text),
            _str(d, "etg", ""),
        )


@dataclass(slots=True)
class HotlinkClose:
    """From the sender: the session ends. From the relay with `frm` set: only that
    reader's leg ended (`rsn` = READER_GONE). From the relay with `rsn` = SENDER_GONE:
    the sender's connection dropped; readers keep their endpoint and wait for a re-open.
    """

    TYP: ClassVar[int] = 13
    sid: str
    reason: str = ""
    frm: str = ""

    def to_dat(self) -> dict[str, Any]:
        d: dict[str, Any] = {"sid": self.sid}
        if self.reason:
            d["rsn"] = self.reason
        if self.frm:
            d["frm"] = self.frm
        return d

    @classmethod
    def from_dat(cls, d: dict[str, Any], text: bool = False) -> HotlinkClose:
        return cls(_str(d, "sid"), _str(d, "rsn", ""), _str(d, "frm", ""))


@dataclass(slots=True)
class HotlinkSignal:
    TYP: ClassVar[int] = 14
    sid: str
    kind: str = ""
    addrs: list[str] | None = None
    token: str = ""
    error: str = ""
    #: extension `direct` (docs/design.md "Direct path signalling"): relay-set sender
    #: of the signal (the authenticated user; whatever a client put here is replaced)
    frm: str = ""
    #: extension `direct`: the reader a session's sender addresses (its email)
    to: str = ""
    #: extension `direct`: relay-set IP address the relay saw the signaller connect from
    obs: str = ""
    #: extension `direct`, in a reader's answer: its reorder window in seqs (0: not
    #: said), which bounds how far its link may run ahead of the relay
    win: int = 0
    #: extension `direct`, in `hotlink.stream.start`: the first seq the sender sends
    #: the new reader it answers (None: not said)
    seq: int | None = None

    def to_dat(self) -> dict[str, Any]:
        # the reference's keys and order; `adr`, `tok`, `err` are omitempty there
        d: dict[str, Any] = {"sid": self.sid, "knd": self.kind}
        if self.addrs:
            d["adr"] = list(self.addrs)
        if self.token:
            d["tok"] = self.token
        if self.error:
            d["err"] = self.error
        if self.frm:
            d["frm"] = self.frm
        if self.to:
            d["to"] = self.to
        if self.obs:
            d["obs"] = self.obs
        if self.win:
            d["win"] = self.win
        if self.seq is not None:
            d["seq"] = self.seq
        return d

    @classmethod
    def from_dat(cls, d: dict[str, Any], text: bool = False) -> HotlinkSignal:
        return cls(
            _str(d, "sid"),
            _str(d, "knd", ""),
            _strlist(d, "adr") or None,
            _str(d, "tok", ""),
            _str(d, "err", ""),
            _str(d, "frm", ""),
            _str(d, "to", ""),
            _str(d, "obs", ""),
            _int(d, "win", 0),
            _int(d, "seq") if d.get("seq") is not None else None,
        )


@dataclass(slots=True)
class FileSync:
    """Hotlink extension (type 15, unused by the reference): "send me the files under
    `pth` stored after the cursor (`snc` mtime ns, then `aft` path, both exclusive)".

    Client -> relay: a request for at most `max` files (0 = the relay's page size),
    optionally only fallback files of session `sid` (files of other sessions are
    skipped; files that are not fallback files always pass) and only files of at most
    `lim` bytes (larger ones would not fit the client's WS message limit; skipped).
    Relay -> client: after
    the `FileWrite`s of the page (each with `mtm`), the same message type with the
    cursor after the last file sent and `mor` true when more files wait (ask again
    from that cursor). See docs/design.md "File path".
    """

    TYP: ClassVar[int] = 15
    path: str
    since: int = 0
    after: str = ""
    max: int = 0
    sid: str = ""
    more: bool = False
    limit: int = 0

    def to_dat(self) -> dict[str, Any]:
        d: dict[str, Any] = {"pth": self.path, "snc": self.since}
        if self.limit:
            d["lim"] = self.limit
        if self.after:
            d["aft"] = self.after
        if self.max:
            d["max"] = self.max
        if self.sid:
            d["sid"] = self.sid
        if self.more:
            d["mor"] = True
        return d

    @classmethod
    def from_dat(cls, d: dict[str, Any], text: bool = False) -> FileSync:
        return cls(
            _str(d, "pth"),
            _int(d, "snc", 0, 2**63 - 1),
            _str(d, "aft", ""),
            _int(d, "max", 0, 2**31 - 1),
            _str(d, "sid", ""),
            _bool(d, "mor"),
            _int(d, "lim", 0, 2**63 - 1),
        )


@dataclass(slots=True)
class HotlinkProgress:
    """Hotlink extension (type 16): a reader tells the sender, through the relay, the
    highest seq it has delivered in order (`seq`); the relay forwards it to the
    session's sender with `frm` set to the reader. The sender drops frames up to it
    from its re-send window, so after a relay failure it re-sends (or writes as
    fallback files) exactly the frames no reader confirmed."""

    TYP: ClassVar[int] = 16
    sid: str
    seq: int
    frm: str = ""

    def to_dat(self) -> dict[str, Any]:
        d: dict[str, Any] = {"sid": self.sid, "seq": self.seq}
        if self.frm:
            d["frm"] = self.frm
        return d

    @classmethod
    def from_dat(cls, d: dict[str, Any], text: bool = False) -> HotlinkProgress:
        return cls(_str(d, "sid"), _int(d, "seq"), _str(d, "frm", ""))


@dataclass(slots=True)
class Unsupported:
    """A message type the reference defines (Http, ACLManifest) or we do not know.

    Kept, not fatal: the receiver decides whether to answer with an Error.
    """

    typ: int
    dat: Any = None

    @property
    def TYP(self) -> int:
        return self.typ

    def to_dat(self) -> Any:
        return self.dat


Message = (
    System
    | Error
    | FileWrite
    | FileDelete
    | Ack
    | Nack
    | FileNotify
    | HotlinkOpen
    | HotlinkAccept
    | HotlinkReject
    | HotlinkData
    | HotlinkClose
    | HotlinkSignal
    | FileSync
    | HotlinkProgress
    | Unsupported
)

BY_TYP: dict[int, Any] = {
    cls.TYP: cls
    for cls in (
        System,
        Error,
        FileWrite,
        FileDelete,
        Ack,
        Nack,
        FileNotify,
        HotlinkOpen,
        HotlinkAccept,
        HotlinkReject,
        HotlinkData,
        HotlinkClose,
        HotlinkSignal,
        FileSync,
        HotlinkProgress,
    )
}


def message_from_dat(typ: int, dat: Any, text: bool = False) -> Message:
    cls = BY_TYP.get(typ)
    if cls is None:
        return Unsupported(typ, dat)
    return cls.from_dat(_norm(typ, dat), text)
