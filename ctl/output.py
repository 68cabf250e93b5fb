"""Rendering control-API messages for people (tables, one-liners) and scripts (JSON).

JSON keeps the proto field names (snake_case) and enum names without their prefix
(`state: "OPEN"`), with every field present, so scripts need no proto knowledge.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from hotlink.v1 import agent_pb2 as pb
from hotlink.wire.frames import Frame

_ENUM_PREFIXES = (
    "SESSION_STATE_",
    "LINK_STATE_",
    "ROLE_",
    "IPC_MODE_",
    "FALLBACK_MODE_",
    "ACTIVE_PATH_",
    "EVENT_TYPE_",
    "DIRECT_MODE_",
)


def _strip_enums(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _strip_enums(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_strip_enums(x) for x in v]
    if isinstance(v, str):
        for p in _ENUM_PREFIXES:
            if v.startswith(p):
                return v.removeprefix(p)
    return v


#: `active_path` as scripts and people read it: the relay hop, the file path, or
#: the direct peer link
PATH_NAMES = {"HOTLINK": "relay", "FILES": "files", "DIRECT": "direct", "UNSPECIFIED": ""}


def path_name(value: int) -> str:
    name = enum_name(pb.ActivePath, value, "ACTIVE_PATH_")
    return PATH_NAMES.get(name, name.lower())


def _paths(d: Any) -> Any:
    """Every `active_path` (sessions, also nested in events) as `path_name` spells it."""
    if isinstance(d, dict):
        return {
            k: PATH_NAMES.get(v, v) if k == "active_path" and isinstance(v, str) else _paths(v)
            for k, v in d.items()
        }
    if isinstance(d, list):
        return [_paths(x) for x in d]
    return d


def to_dict(msg: Message) -> dict[str, Any]:
    d = MessageToDict(
        msg,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    return _paths(_strip_enums(d))


def dump_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=None, sort_keys=False) + "\n")
    sys.stdout.flush()


def enum_name(enum: Any, value: int, prefix: str) -> str:
    try:
        return enum.Name(value).removeprefix(prefix)
    except ValueError:
        return str(value)


def session_line(s: pb.Session) -> str:
    state = enum_name(pb.SessionState, s.state, "SESSION_STATE_")
    role = enum_name(pb.Role, s.role, "ROLE_")
    return f"{s.path}  {role.lower()}  {state}" + (f" ({s.reason})" if s.reason else "")


def session_detail(s: pb.Session) -> str:
    rows = [
        ("path", s.path),
        ("session id", s.session_id or "-"),
        ("role", enum_name(pb.Role, s.role, "ROLE_").lower()),
        ("state", enum_name(pb.SessionState, s.state, "SESSION_STATE_")),
        ("reason", s.reason or "-"),
        ("sender", s.sender or "-"),
        ("to", s.to or "-"),
        ("readers", ", ".join(s.readers) or "-"),
        ("session dir", s.session_dir),
        ("ipc", enum_name(pb.IpcMode, s.ipc_mode, "IPC_MODE_").lower()),
        ("endpoint", s.endpoint),
        ("fallback", enum_name(pb.FallbackMode, s.fallback_mode, "FALLBACK_MODE_").lower()),
        ("active path", path_name(s.active_path)),
        ("direct", enum_name(pb.DirectMode, s.direct_mode, "DIRECT_MODE_").lower()),
        *((f"  {d.peer}", d.status) for d in s.direct),
        ("last seq", str(s.last_seq)),
        ("apps connected", str(s.ipc_clients)),
    ]
    c = s.counters
    rows.append(
        (
            "counters",
            f"sent {c.frames_sent} ({c.bytes_sent} B), received {c.frames_received} "
            f"({c.bytes_received} B), drops {c.drops}, queued {c.queued}"
            + (f", refetched {c.refetched}" if c.refetched else ""),
        )
    )
    return "\n".join(f"{k + ':':<16}{v}" for k, v in rows)


def sessions_table(sessions: list[pb.Session]) -> str:
    if not sessions:
        return "no sessions"
    header = ("PATH", "ROLE", "STATE", "PEERS", "APPS", "SENT", "RECV", "ENDPOINT")
    rows = [header]
    for s in sessions:
        peers = ", ".join(s.readers) if s.role == pb.ROLE_SENDER else s.sender
        rows.append(
            (
                s.path,
                enum_name(pb.Role, s.role, "ROLE_").lower(),
                enum_name(pb.SessionState, s.state, "SESSION_STATE_"),
                peers or "-",
                str(s.ipc_clients),
                str(s.counters.frames_sent),
                str(s.counters.frames_received),
                s.endpoint or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def status_text(st: pb.GetStatusResponse) -> str:
    link = enum_name(pb.LinkState, st.link_state, "LINK_STATE_")
    since = ""
    if st.link_since_unix_nano:
        ago = time.time() - st.link_since_unix_nano / 1e9
        since = f" for {ago:.0f}s"
    c = st.counters
    lines = [
        f"agent {st.version} for {st.email}",
        f"relay:     {st.server_url}"
        + (f" (on {st.relay_url})" if "," in st.server_url and st.relay_url else ""),
        f"link:      {link}{since}"
        + (
            f" (last error: {st.last_error})"
            if st.last_error and st.link_state != pb.LINK_STATE_UP
            else ""
        ),
        f"root:      {st.root}",
        f"frames:    out {c.frames_out} ({c.bytes_out} B), in {c.frames_in} ({c.bytes_in} B), "
        f"drops {c.drops}, queued {c.queued}, reconnects {c.reconnects}",
        f"sessions:  {len(st.sessions)}",
    ]
    lines += ["  " + session_line(s) for s in st.sessions]
    return "\n".join(lines)


def event_line(ev: pb.Event) -> str:
    t = (
        time.strftime("%H:%M:%S", time.localtime(ev.time_unix_nano / 1e9))
        if ev.time_unix_nano
        else "-"
    )
    kind = enum_name(pb.EventType, ev.type, "EVENT_TYPE_")
    parts = [t, kind]
    if ev.path:
        parts.append(ev.path)
    if ev.peer:
        parts.append(f"peer={ev.peer}")
    if ev.session_id:
        parts.append(f"sid={ev.session_id}")
    if ev.reason:
        parts.append(f"reason={ev.reason!r}")
    return "  ".join(parts)


def frame_dict(frame: Frame) -> dict[str, Any]:
    d: dict[str, Any] = {"seq": frame.seq, "path": frame.path, "etag": frame.etag}
    d["size"] = len(frame.payload)
    try:
        d["payload"] = frame.payload.decode()
    except UnicodeDecodeError:
        d["payload_b64"] = base64.b64encode(frame.payload).decode()
    return d


def frame_line(frame: Frame, max_preview: int = 200) -> str:
    text = frame.payload[:max_preview].decode(errors="replace").rstrip("\n")
    more = "…" if len(frame.payload) > max_preview else ""
    return f"[{frame.seq}] {frame.path or '-'} ({len(frame.payload)} B): {text}{more}"
