from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IpcMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IPC_MODE_UNSPECIFIED: _ClassVar[IpcMode]
    IPC_MODE_UNIX: _ClassVar[IpcMode]
    IPC_MODE_TCP: _ClassVar[IpcMode]
    IPC_MODE_PIPE: _ClassVar[IpcMode]

class FallbackMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FALLBACK_MODE_UNSPECIFIED: _ClassVar[FallbackMode]
    FALLBACK_MODE_OFF: _ClassVar[FallbackMode]
    FALLBACK_MODE_ON_FAILURE: _ClassVar[FallbackMode]
    FALLBACK_MODE_TEE: _ClassVar[FallbackMode]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_SENDER: _ClassVar[Role]
    ROLE_READER: _ClassVar[Role]

class SessionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_STATE_UNSPECIFIED: _ClassVar[SessionState]
    SESSION_STATE_PENDING: _ClassVar[SessionState]
    SESSION_STATE_OPEN: _ClassVar[SessionState]
    SESSION_STATE_REJECTED: _ClassVar[SessionState]
    SESSION_STATE_CLOSED: _ClassVar[SessionState]

class LinkState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINK_STATE_UNSPECIFIED: _ClassVar[LinkState]
    LINK_STATE_DOWN: _ClassVar[LinkState]
    LINK_STATE_CONNECTING: _ClassVar[LinkState]
    LINK_STATE_UP: _ClassVar[LinkState]

class ActivePath(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVE_PATH_UNSPECIFIED: _ClassVar[ActivePath]
    ACTIVE_PATH_HOTLINK: _ClassVar[ActivePath]
    ACTIVE_PATH_FILES: _ClassVar[ActivePath]
    ACTIVE_PATH_DIRECT: _ClassVar[ActivePath]

class DirectMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECT_MODE_UNSPECIFIED: _ClassVar[DirectMode]
    DIRECT_MODE_OFF: _ClassVar[DirectMode]
    DIRECT_MODE_AUTO: _ClassVar[DirectMode]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_OPENED: _ClassVar[EventType]
    EVENT_TYPE_ACCEPTED: _ClassVar[EventType]
    EVENT_TYPE_REJECTED: _ClassVar[EventType]
    EVENT_TYPE_CLOSED: _ClassVar[EventType]
    EVENT_TYPE_LINK_UP: _ClassVar[EventType]
    EVENT_TYPE_LINK_DOWN: _ClassVar[EventType]
    EVENT_TYPE_PATH_SWITCHED: _ClassVar[EventType]

class TunnelSide(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TUNNEL_SIDE_UNSPECIFIED: _ClassVar[TunnelSide]
    TUNNEL_SIDE_FORWARD: _ClassVar[TunnelSide]
    TUNNEL_SIDE_EXPOSE: _ClassVar[TunnelSide]
IPC_MODE_UNSPECIFIED: IpcMode
IPC_MODE_UNIX: IpcMode
IPC_MODE_TCP: IpcMode
IPC_MODE_PIPE: IpcMode
FALLBACK_MODE_UNSPECIFIED: FallbackMode
FALLBACK_MODE_OFF: FallbackMode
FALLBACK_MODE_ON_FAILURE: FallbackMode
FALLBACK_MODE_TEE: FallbackMode
ROLE_UNSPECIFIED: Role
ROLE_SENDER: Role
ROLE_READER: Role
SESSION_STATE_UNSPECIFIED: SessionState
SESSION_STATE_PENDING: SessionState
SESSION_STATE_OPEN: SessionState
SESSION_STATE_REJECTED: SessionState
SESSION_STATE_CLOSED: SessionState
LINK_STATE_UNSPECIFIED: LinkState
LINK_STATE_DOWN: LinkState
LINK_STATE_CONNECTING: LinkState
LINK_STATE_UP: LinkState
ACTIVE_PATH_UNSPECIFIED: ActivePath
ACTIVE_PATH_HOTLINK: ActivePath
ACTIVE_PATH_FILES: ActivePath
ACTIVE_PATH_DIRECT: ActivePath
DIRECT_MODE_UNSPECIFIED: DirectMode
DIRECT_MODE_OFF: DirectMode
DIRECT_MODE_AUTO: DirectMode
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_OPENED: EventType
EVENT_TYPE_ACCEPTED: EventType
EVENT_TYPE_REJECTED: EventType
EVENT_TYPE_CLOSED: EventType
EVENT_TYPE_LINK_UP: EventType
EVENT_TYPE_LINK_DOWN: EventType
EVENT_TYPE_PATH_SWITCHED: EventType
TUNNEL_SIDE_UNSPECIFIED: TunnelSide
TUNNEL_SIDE_FORWARD: TunnelSide
TUNNEL_SIDE_EXPOSE: TunnelSide

class OpenSessionRequest(_message.Message):
    __slots__ = ("path", "to", "ipc_mode", "fallback_mode", "tcp_addr", "role", "require_link", "timeout_seconds", "direct")
    PATH_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    IPC_MODE_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_MODE_FIELD_NUMBER: _ClassVar[int]
    TCP_ADDR_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_LINK_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DIRECT_FIELD_NUMBER: _ClassVar[int]
    path: str
    to: str
    ipc_mode: IpcMode
    fallback_mode: FallbackMode
    tcp_addr: str
    role: Role
    require_link: bool
    timeout_seconds: float
    direct: DirectMode
    def __init__(self, path: _Optional[str] = ..., to: _Optional[str] = ..., ipc_mode: _Optional[_Union[IpcMode, str]] = ..., fallback_mode: _Optional[_Union[FallbackMode, str]] = ..., tcp_addr: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., require_link: _Optional[bool] = ..., timeout_seconds: _Optional[float] = ..., direct: _Optional[_Union[DirectMode, str]] = ...) -> None: ...

class OpenSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class SessionRef(_message.Message):
    __slots__ = ("session_id", "path")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    path: str
    def __init__(self, session_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("session", "reason")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    reason: str
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class CloseSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    def __init__(self, sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ...) -> None: ...

class SetFallbackModeRequest(_message.Message):
    __slots__ = ("session", "mode")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    mode: FallbackMode
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ..., mode: _Optional[_Union[FallbackMode, str]] = ...) -> None: ...

class SessionCounters(_message.Message):
    __slots__ = ("frames_sent", "bytes_sent", "frames_received", "bytes_received", "drops", "queued", "files_sent", "files_received", "duplicates", "file_duplicates", "files_pending", "path_switches", "confirmed_seq", "frames_direct", "bytes_direct", "frames_relay", "bytes_relay", "direct_switches", "refetched")
    FRAMES_SENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    FRAMES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    DROPS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    FILES_SENT_FIELD_NUMBER: _ClassVar[int]
    FILES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    FILE_DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    FILES_PENDING_FIELD_NUMBER: _ClassVar[int]
    PATH_SWITCHES_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_SEQ_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DIRECT_FIELD_NUMBER: _ClassVar[int]
    BYTES_DIRECT_FIELD_NUMBER: _ClassVar[int]
    FRAMES_RELAY_FIELD_NUMBER: _ClassVar[int]
    BYTES_RELAY_FIELD_NUMBER: _ClassVar[int]
    DIRECT_SWITCHES_FIELD_NUMBER: _ClassVar[int]
    REFETCHED_FIELD_NUMBER: _ClassVar[int]
    frames_sent: int
    bytes_sent: int
    frames_received: int
    bytes_received: int
    drops: int
    queued: int
    files_sent: int
    files_received: int
    duplicates: int
    file_duplicates: int
    files_pending: int
    path_switches: int
    confirmed_seq: int
    frames_direct: int
    bytes_direct: int
    frames_relay: int
    bytes_relay: int
    direct_switches: int
    refetched: int
    def __init__(self, frames_sent: _Optional[int] = ..., bytes_sent: _Optional[int] = ..., frames_received: _Optional[int] = ..., bytes_received: _Optional[int] = ..., drops: _Optional[int] = ..., queued: _Optional[int] = ..., files_sent: _Optional[int] = ..., files_received: _Optional[int] = ..., duplicates: _Optional[int] = ..., file_duplicates: _Optional[int] = ..., files_pending: _Optional[int] = ..., path_switches: _Optional[int] = ..., confirmed_seq: _Optional[int] = ..., frames_direct: _Optional[int] = ..., bytes_direct: _Optional[int] = ..., frames_relay: _Optional[int] = ..., bytes_relay: _Optional[int] = ..., direct_switches: _Optional[int] = ..., refetched: _Optional[int] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("session_id", "path", "role", "state", "reason", "sender", "to", "readers", "session_dir", "ipc_mode", "endpoint", "fallback_mode", "active_path", "last_seq", "ipc_clients", "counters", "opened_unix_nano", "direct_mode", "direct")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    READERS_FIELD_NUMBER: _ClassVar[int]
    SESSION_DIR_FIELD_NUMBER: _ClassVar[int]
    IPC_MODE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_MODE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_PATH_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    IPC_CLIENTS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    OPENED_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    DIRECT_MODE_FIELD_NUMBER: _ClassVar[int]
    DIRECT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    path: str
    role: Role
    state: SessionState
    reason: str
    sender: str
    to: str
    readers: _containers.RepeatedScalarFieldContainer[str]
    session_dir: str
    ipc_mode: IpcMode
    endpoint: str
    fallback_mode: FallbackMode
    active_path: ActivePath
    last_seq: int
    ipc_clients: int
    counters: SessionCounters
    opened_unix_nano: int
    direct_mode: DirectMode
    direct: _containers.RepeatedCompositeFieldContainer[DirectPeer]
    def __init__(self, session_id: _Optional[str] = ..., path: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., state: _Optional[_Union[SessionState, str]] = ..., reason: _Optional[str] = ..., sender: _Optional[str] = ..., to: _Optional[str] = ..., readers: _Optional[_Iterable[str]] = ..., session_dir: _Optional[str] = ..., ipc_mode: _Optional[_Union[IpcMode, str]] = ..., endpoint: _Optional[str] = ..., fallback_mode: _Optional[_Union[FallbackMode, str]] = ..., active_path: _Optional[_Union[ActivePath, str]] = ..., last_seq: _Optional[int] = ..., ipc_clients: _Optional[int] = ..., counters: _Optional[_Union[SessionCounters, _Mapping]] = ..., opened_unix_nano: _Optional[int] = ..., direct_mode: _Optional[_Union[DirectMode, str]] = ..., direct: _Optional[_Iterable[_Union[DirectPeer, _Mapping]]] = ...) -> None: ...

class DirectPeer(_message.Message):
    __slots__ = ("peer", "status")
    PEER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    peer: str
    status: str
    def __init__(self, peer: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Event(_message.Message):
    __slots__ = ("type", "time_unix_nano", "session_id", "path", "peer", "reason", "session")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    type: EventType
    time_unix_nano: int
    session_id: str
    path: str
    peer: str
    reason: str
    session: Session
    def __init__(self, type: _Optional[_Union[EventType, str]] = ..., time_unix_nano: _Optional[int] = ..., session_id: _Optional[str] = ..., path: _Optional[str] = ..., peer: _Optional[str] = ..., reason: _Optional[str] = ..., session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Counters(_message.Message):
    __slots__ = ("frames_in", "frames_out", "bytes_in", "bytes_out", "drops", "reconnects", "queued")
    FRAMES_IN_FIELD_NUMBER: _ClassVar[int]
    FRAMES_OUT_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    DROPS_FIELD_NUMBER: _ClassVar[int]
    RECONNECTS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    frames_in: int
    frames_out: int
    bytes_in: int
    bytes_out: int
    drops: int
    reconnects: int
    queued: int
    def __init__(self, frames_in: _Optional[int] = ..., frames_out: _Optional[int] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ..., drops: _Optional[int] = ..., reconnects: _Optional[int] = ..., queued: _Optional[int] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("version", "email", "server_url", "link_state", "link_since_unix_nano", "last_error", "root", "counters", "sessions", "relay_url", "tunnels")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    SERVER_URL_FIELD_NUMBER: _ClassVar[int]
    LINK_STATE_FIELD_NUMBER: _ClassVar[int]
    LINK_SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    RELAY_URL_FIELD_NUMBER: _ClassVar[int]
    TUNNELS_FIELD_NUMBER: _ClassVar[int]
    version: str
    email: str
    server_url: str
    link_state: LinkState
    link_since_unix_nano: int
    last_error: str
    root: str
    counters: Counters
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    relay_url: str
    tunnels: _containers.RepeatedCompositeFieldContainer[Tunnel]
    def __init__(self, version: _Optional[str] = ..., email: _Optional[str] = ..., server_url: _Optional[str] = ..., link_state: _Optional[_Union[LinkState, str]] = ..., link_since_unix_nano: _Optional[int] = ..., last_error: _Optional[str] = ..., root: _Optional[str] = ..., counters: _Optional[_Union[Counters, _Mapping]] = ..., sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ..., relay_url: _Optional[str] = ..., tunnels: _Optional[_Iterable[_Union[Tunnel, _Mapping]]] = ...) -> None: ...

class TunnelCounters(_message.Message):
    __slots__ = ("connections", "active", "bytes_in", "bytes_out", "resets", "refused", "last_refusal")
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    RESETS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    LAST_REFUSAL_FIELD_NUMBER: _ClassVar[int]
    connections: int
    active: int
    bytes_in: int
    bytes_out: int
    resets: int
    refused: int
    last_refusal: str
    def __init__(self, connections: _Optional[int] = ..., active: _Optional[int] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ..., resets: _Optional[int] = ..., refused: _Optional[int] = ..., last_refusal: _Optional[str] = ...) -> None: ...

class TunnelPeer(_message.Message):
    __slots__ = ("email", "state", "reason", "counters")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    email: str
    state: str
    reason: str
    counters: TunnelCounters
    def __init__(self, email: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., counters: _Optional[_Union[TunnelCounters, _Mapping]] = ...) -> None: ...

class Tunnel(_message.Message):
    __slots__ = ("path", "side", "target", "to", "listen", "state", "peers", "counters", "fallback_mode", "opened_unix_nano", "connect_timeout_seconds", "window_bytes", "reason")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    LISTEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_MODE_FIELD_NUMBER: _ClassVar[int]
    OPENED_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    CONNECT_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_BYTES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    path: str
    side: TunnelSide
    target: str
    to: str
    listen: str
    state: str
    peers: _containers.RepeatedCompositeFieldContainer[TunnelPeer]
    counters: TunnelCounters
    fallback_mode: FallbackMode
    opened_unix_nano: int
    connect_timeout_seconds: float
    window_bytes: int
    reason: str
    def __init__(self, path: _Optional[str] = ..., side: _Optional[_Union[TunnelSide, str]] = ..., target: _Optional[str] = ..., to: _Optional[str] = ..., listen: _Optional[str] = ..., state: _Optional[str] = ..., peers: _Optional[_Iterable[_Union[TunnelPeer, _Mapping]]] = ..., counters: _Optional[_Union[TunnelCounters, _Mapping]] = ..., fallback_mode: _Optional[_Union[FallbackMode, str]] = ..., opened_unix_nano: _Optional[int] = ..., connect_timeout_seconds: _Optional[float] = ..., window_bytes: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class OpenTunnelRequest(_message.Message):
    __slots__ = ("path", "target", "to", "listen", "allow_remote_listen", "fallback_mode", "connect_timeout_seconds", "window_bytes")
    PATH_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    LISTEN_FIELD_NUMBER: _ClassVar[int]
    ALLOW_REMOTE_LISTEN_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_MODE_FIELD_NUMBER: _ClassVar[int]
    CONNECT_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_BYTES_FIELD_NUMBER: _ClassVar[int]
    path: str
    target: str
    to: str
    listen: str
    allow_remote_listen: bool
    fallback_mode: FallbackMode
    connect_timeout_seconds: float
    window_bytes: int
    def __init__(self, path: _Optional[str] = ..., target: _Optional[str] = ..., to: _Optional[str] = ..., listen: _Optional[str] = ..., allow_remote_listen: _Optional[bool] = ..., fallback_mode: _Optional[_Union[FallbackMode, str]] = ..., connect_timeout_seconds: _Optional[float] = ..., window_bytes: _Optional[int] = ...) -> None: ...

class OpenTunnelResponse(_message.Message):
    __slots__ = ("tunnel", "warnings")
    TUNNEL_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    tunnel: Tunnel
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tunnel: _Optional[_Union[Tunnel, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class CloseTunnelRequest(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class CloseTunnelResponse(_message.Message):
    __slots__ = ("tunnel",)
    TUNNEL_FIELD_NUMBER: _ClassVar[int]
    tunnel: Tunnel
    def __init__(self, tunnel: _Optional[_Union[Tunnel, _Mapping]] = ...) -> None: ...

class ListTunnelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTunnelsResponse(_message.Message):
    __slots__ = ("tunnels",)
    TUNNELS_FIELD_NUMBER: _ClassVar[int]
    tunnels: _containers.RepeatedCompositeFieldContainer[Tunnel]
    def __init__(self, tunnels: _Optional[_Iterable[_Union[Tunnel, _Mapping]]] = ...) -> None: ...
