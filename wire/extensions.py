"""Hotlink protocol extensions and their negotiation at connect.

A reference client knows message types 0-14 and their fields only. It logs every
unknown type as a decode error, and it reads some of our additions wrongly: a
relay-made `HotlinkClose` naming one reader (`frm`) would end its whole session. So
the relay sends an addition only to a peer that announced it.

Negotiation rides on the WS upgrade, like the reference's encoding negotiation:
the client lists what it supports in `X-Hotlink-Extensions` (comma-separated names);
the relay answers with the same header holding the subset it will use on that
connection. A client that sends no header (every reference client) gets the
reference protocol and nothing else. Unknown names are ignored both ways, so either
side can add extensions later. docs/design.md "Extensions" has the table.

`for_peer` is the one place that turns a relay message into what a peer that
announced `ext` may receive. It is sans-I/O; the relay's adapter applies it per
connection. Messages from a client are accepted whatever it announced.
"""

from __future__ import annotations

from dataclasses import replace

from .messages import (
    FileSync,
    FileWrite,
    HotlinkAccept,
    HotlinkClose,
    HotlinkOpen,
    HotlinkProgress,
    HotlinkReject,
    HotlinkSignal,
    Message,
)

HDR_EXTENSIONS = "X-Hotlink-Extensions"

#: `Ack`/`Nack` answering `HotlinkOpen` and `HotlinkAccept` (the reference answers an
#: Open only with a Reject, and an Accept with nothing).
ACKS = "acks"
#: reader legs: `frm` (the reader) on the `HotlinkAccept`/`HotlinkReject` the relay
#: passes to a sender, and the `HotlinkClose(rsn="reader disconnected", frm=reader)`
#: that ends one reader's leg while the session goes on.
READER_LEGS = "reader-legs"
#: loss-free resume: `HotlinkProgress` (typ 16) and `HotlinkAccept.seq`.
RESUME = "resume"
#: file catch-up: `FileSync` (typ 15) and `FileWrite.mtm`.
FILE_SYNC = "file-sync"

#: direct path signalling: `HotlinkSignal` kinds `hotlink.direct.*` routed between a
#: session's sender and its accepted readers, with the relay-set `frm` and `obs` and
#: the sender-set `to`.
DIRECT = "direct"
#: the prefix of the direct path's signal kinds (the relay refuses them to a peer
#: without `DIRECT`: the signaller stops negotiating)
DIRECT_KIND_PREFIX = "hotlink.direct."
#: the prefix of all our own signal kinds (never passed to a peer without `DIRECT`)
OUR_KIND_PREFIX = "hotlink."
#: sender -> a new reader, in answer to its Accept: `seq` is the first seq the sender
#: sends it from then on (by the hotlink or as fallback files), so a reader joining a
#: running stream knows where its start is without waiting for a live frame
STREAM_START = "hotlink.stream.start"
#: the sender sends `STREAM_START`, and a reader may be told so: `HotlinkOpen.ans`, which
#: the relay sets on an offer when the session's sender announced this and passes only
#: to a reader that announced it (it then holds its first live frames for the answer)
STARTS = "stream-start"

#: fallback-file writers: `FileWrite.wrt`, the authenticated writer the relay stamps on
#: the fallback files it passes on (broadcasts and catch-up pages).
WRITER = "writer"

#: Everything this version speaks (what our agent announces and the relay accepts).
ALL: frozenset[str] = frozenset({ACKS, READER_LEGS, RESUME, FILE_SYNC, DIRECT, STARTS, WRITER})
NONE: frozenset[str] = frozenset()


def parse(header_values: list[str]) -> frozenset[str]:
    """The extensions we know among the announced ones (all header lines, any case)."""
    names = {item.strip().lower() for value in header_values for item in value.split(",")}
    found = ALL & names
    return ALL if found == ALL else frozenset(found)


def header_value(ext: frozenset[str]) -> str:
    return ",".join(sorted(ext))


def for_peer(msg: Message, ext: frozenset[str]) -> Message | None:
    """`msg` as a peer that announced `ext` may receive it: the same object when it
    needs no change, a copy without the fields it did not announce, or None when the
    whole message is an extension it would misread."""
    if ext is ALL:
        return msg
    t = type(msg)
    if t is HotlinkOpen:
        if msg.answers and STARTS not in ext:  # type: ignore[union-attr]
            return replace(msg, answers=False)  # type: ignore[type-var]
        return msg
    if t is HotlinkProgress:
        return msg if RESUME in ext else None
    if t is FileSync:
        return msg if FILE_SYNC in ext else None
    if t is HotlinkClose:
        # a relay-made reader-leg close; to a reference sender a Close ends the session
        return None if msg.frm and READER_LEGS not in ext else msg  # type: ignore[union-attr]
    if t is HotlinkAccept:
        frm = msg.frm if READER_LEGS in ext else ""  # type: ignore[union-attr]
        seq = msg.seq if RESUME in ext else None  # type: ignore[union-attr]
        if frm != msg.frm or seq != msg.seq:  # type: ignore[union-attr]
            return replace(msg, frm=frm, seq=seq)  # type: ignore[type-var]
        return msg
    if t is HotlinkReject:
        if msg.frm and READER_LEGS not in ext:  # type: ignore[union-attr]
            return replace(msg, frm="")  # type: ignore[type-var]
        return msg
    if t is HotlinkSignal:
        if DIRECT in ext:
            return msg
        if msg.kind.startswith(OUR_KIND_PREFIX):  # type: ignore[union-attr]
            return None
        if msg.frm or msg.to or msg.obs or msg.win or msg.seq is not None:  # type: ignore[union-attr]
            return replace(msg, frm="", to="", obs="", win=0, seq=None)  # type: ignore[type-var]
        return msg
    if t is FileWrite:
        mtime = msg.mtime if FILE_SYNC in ext else 0  # type: ignore[union-attr]
        writer = msg.writer if WRITER in ext else ""  # type: ignore[union-attr]
        if mtime != msg.mtime or writer != msg.writer:  # type: ignore[union-attr]
            return replace(msg, mtime=mtime, writer=writer)  # type: ignore[type-var]
        return msg
    return msg
