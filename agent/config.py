"""Agent configuration: command line > `HOTLINK_*` environment > TOML file > default.

Every option has one entry in `OPTIONS`; the flag is `--name-with-dashes`, the
environment variable `HOTLINK_NAME_UPPER` and the TOML key `name` (docs/design.md).
The config file itself is chosen by `--config` or `HOTLINK_CONFIG`.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hotlink import telemetry
from hotlink.common.sizes import parse_size
from hotlink.common.version import version_line
from hotlink.telemetry import TracingOptions
from hotlink.wire.envelope import DEFAULT_MAX_MESSAGE
from hotlink.wire.frames import DEFAULT_MAX_PAYLOAD
from hotlink.wire.paths import normalize_email

from .mirror_policy import DEFAULT_DATASITE_BYTES, DEFAULT_TOTAL_BYTES, parse_subscriptions


class ConfigError(ValueError):
    """A missing or invalid setting."""


@dataclass(slots=True)
class AgentConfig:
    server: str
    email: str
    token_file: Path
    root: Path
    control: Path
    control_tcp: str = ""
    #: PEM bundle to verify a wss:// relay with (default: the system CAs)
    ca_file: Path | None = None
    log_level: str = "INFO"
    #: frames a reader app connection may have queued (beyond the socket buffer)
    #: before the agent disconnects it as too slow.
    reader_queue: int = 4096
    #: bytes (headers + payloads) of that queue, and of the no-app backlog, at most:
    #: frames alone would allow 4096 x 16 MiB.
    reader_queue_bytes: int = 64 << 20
    #: the sum of all those queues and backlogs, agent-wide (`budget.py`): per-session
    #: bounds alone let memory grow with the number of sessions.
    reader_total_bytes: int = 256 << 20
    #: bytes the agent lets pile up in one reader connection's socket buffer
    #: before it starts counting frames against `reader_queue`.
    reader_buffer_bytes: int = 1 << 20
    #: frames / bytes a sender session holds while they cannot be sent.
    send_queue_frames: int = 10_000
    send_queue_bytes: int = 64 << 20
    #: sent frames / bytes no reader confirmed yet, kept per sender session and re-sent
    #: after a reconnect or a reader's re-accept (0 disables). Readers confirm what they
    #: delivered (HotlinkProgress), which trims it; when full and every reader confirms,
    #: the apps get back-pressure; readers that never confirm: oldest evicted.
    resend_frames: int = 8192
    resend_bytes: int = 64 << 20
    #: reorder window (seqs) and how long a gap may stay open before it is skipped.
    reorder_window: int = 4096
    reorder_timeout: float = 2.0
    max_payload: int = DEFAULT_MAX_PAYLOAD
    max_message: int = DEFAULT_MAX_MESSAGE
    backoff_initial: float = 0.05
    backoff_max: float = 5.0
    #: seconds between cheap mtime scans for changed `syft.pub.yaml` files.
    pub_scan_interval: float = 10.0
    open_timeout: float = 5.0
    #: keep fallback `.request` files after they were sent (sender, once the relay
    #: acknowledged them) and replayed (reader mirror); default: remove / do not keep.
    keep_files: bool = False
    #: folders of other datasites to mirror without a session, and the mirror's byte
    #: bounds per remote datasite and in all (`mirror_policy`)
    subscribe: tuple[str, ...] = ()
    mirror_datasite_bytes: int = DEFAULT_DATASITE_BYTES
    mirror_total_bytes: int = DEFAULT_TOTAL_BYTES
    #: write the open sessions to ROOT/.hotlink/state.json and restore them on start.
    restore_sessions: bool = True
    #: TCP tunnels: bytes in flight per connection and direction (the memory bound per
    #: stream), and how long a tunnel peer may stay silent while connections are open.
    tunnel_window: int = 1 << 20
    tunnel_peer_timeout: float = 60.0
    #: the direct peer-to-peer path: "auto" (negotiate a direct TCP link with each
    #: peer of a session, relay while it is down) or "off"; sessions may override it
    direct: str = "auto"
    #: where the direct listener binds ("HOST:PORT", port 0 = ephemeral); empty: the
    #: loopback and the host's interface addresses on one ephemeral port
    direct_listen: tuple[str, ...] = ()
    #: extra candidate addresses offered to peers (NAT / port forwarding)
    direct_advertise: tuple[str, ...] = ()
    #: OpenTelemetry (`--otel*` flags, HOTLINK_OTEL* env, `otel*` TOML keys; see
    #: `tracing_options`); OTEL_* variables apply below them
    tracing: TracingOptions = field(default_factory=TracingOptions)

    @property
    def servers(self) -> tuple[str, ...]:
        """The relay URLs, in the order they are tried."""
        return tuple(self.server.split(","))


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    conv: Callable[[Any], Any]
    help: str
    required: bool = False
    metavar: str | None = None
    #: a switch: `--flag` alone means true, `--flag=false` false
    switch: bool = False


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {v!r}")


def _pos_int(v: Any) -> int:
    n = int(v)
    if n <= 0:
        raise ValueError(f"must be a positive integer, got {v!r}")
    return n


def _nonneg_int(v: Any) -> int:
    n = int(v)
    if n < 0:
        raise ValueError(f"must be >= 0, got {v!r}")
    return n


def _pos_size(v: Any) -> int:
    return parse_size(v, minimum=1)


def _nonneg_size(v: Any) -> int:
    return parse_size(v, minimum=0)


def _pos_float(v: Any) -> float:
    x = float(v)
    if x <= 0:
        raise ValueError(f"must be a positive number, got {v!r}")
    return x


def _hostport(v: Any) -> str:
    s = str(v)
    if not s:
        return s
    host, sep, port = s.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {s!r}")
    return s


def _hostports(min_port: int) -> Callable[[Any], tuple[str, ...]]:
    """A list of HOST:PORT (a TOML list, repeated flags, or comma-separated; IPv6 in
    brackets: [::1]:7000), each port at least `min_port`."""

    def conv(v: Any) -> tuple[str, ...]:
        items = v if isinstance(v, list | tuple) else [v]
        out: list[str] = []
        for item in items:
            for a in str(item).split(","):
                a = a.strip()
                if not a:
                    continue
                host, sep, port = a.rpartition(":")
                bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
                if (
                    not sep
                    or not bare
                    or (":" in bare and not host.startswith("["))
                    or not port.isdigit()
                    or not min_port <= int(port) <= 65535
                ):
                    raise ValueError(
                        f"expected HOST:PORT with a port {min_port}-65535 (IPv6 as [::1]:PORT), "
                        f"got {a!r}"
                    )
                out.append(a)
        return tuple(out)

    return conv


def _server(v: Any) -> str:
    """One relay URL or several (a list, repeated flags, or comma-separated: the nodes
    of a relay cluster, tried in order); kept as one comma-separated string."""
    items = v if isinstance(v, list | tuple) else [v]
    urls = [u.strip() for item in items for u in str(item).split(",") if u.strip()]
    if not urls:
        raise ValueError("expected a ws:// or wss:// URL, got nothing")
    for s in urls:
        if not s.startswith(("ws://", "wss://")):
            raise ValueError(f"expected a ws:// or wss:// URL, got {s!r}")
    return ",".join(u.rstrip("/") for u in urls)


def _level(v: Any) -> str:
    s = str(v).upper()
    if s not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"unknown log level {v!r}")
    return s


def _direct_mode(v: Any) -> str:
    s = str(v).strip().lower()
    if s not in ("auto", "off"):
        raise ValueError(f"expected auto or off, got {v!r}")
    return s


def _path(v: Any) -> Path:
    return Path(os.path.expanduser(str(v))).absolute()


OPTIONS: tuple[Option, ...] = (
    Option(
        "server",
        _server,
        "relay URL, e.g. ws://127.0.0.1:8080; for a relay cluster repeat the flag or "
        "separate URLs by commas: tried in order, each failed attempt moves to the next "
        "with the reconnect backoff",
        True,
        "URL",
    ),
    Option(
        "email",
        normalize_email,
        "this peer's email (its datasite owner name; case-normalised to lower case)",
        True,
        "EMAIL",
    ),
    Option("token_file", _path, "file holding the relay bearer token", True, "FILE"),
    Option("root", _path, "peer root; DIR/datasites/<email>/... is the local tree", True, "DIR"),
    Option(
        "control",
        _path,
        "gRPC control UNIX socket (default DIR/.hotlink/agent.sock, mode 0600)",
        metavar="PATH",
    ),
    Option(
        "control_tcp",
        _hostport,
        "also serve the whole control API (open/close sessions as this user, list them, "
        "status, events) on this loopback HOST:PORT, which every local user can reach: a "
        "call is served only if its socket belongs to this OS user (/proc/net/tcp, tcp6) "
        "or it sends 'authorization: Bearer SECRET', SECRET being the content of "
        "control-tcp.secret (created 0600 beside the control socket; hotlinkctl reads it "
        "from env HOTLINK_CONTROL_SECRET_FILE); others get PERMISSION_DENIED",
        False,
        "HOST:PORT",
    ),
    Option(
        "ca_file",
        _path,
        "PEM file of the CA (or certificate) to verify a wss:// relay with, e.g. a "
        "private CA or a TLS terminator's; default: the system CAs",
        metavar="FILE",
    ),
    Option("log_level", _level, "DEBUG, INFO, WARNING or ERROR (default INFO)", metavar="LEVEL"),
    Option(
        "reader_queue",
        _pos_int,
        "frames a slow reader app may have queued before it is disconnected (default 4096)",
        metavar="N",
    ),
    Option(
        "reader_queue_bytes",
        _pos_size,
        "bytes a slow reader app may have queued before it is disconnected, and bytes kept "
        "for the first app while none is connected (default 64 MiB)",
        metavar="BYTES",
    ),
    Option(
        "reader_total_bytes",
        _pos_int,
        "bytes queued for slow reader apps and kept while no app is connected, summed over "
        "all sessions; past it the app whose queue would grow is disconnected, or the "
        "frame for an absent app dropped, both logged (default 256 MiB)",
        metavar="BYTES",
    ),
    Option(
        "reader_buffer_bytes",
        _pos_size,
        "socket write buffer per reader app before frames count as queued (default 1 MiB)",
        metavar="BYTES",
    ),
    Option(
        "send_queue_frames",
        _pos_int,
        "frames a sender session keeps while the link is down; then the app gets "
        "back-pressure (default 10000)",
        metavar="N",
    ),
    Option(
        "send_queue_bytes",
        _pos_size,
        "payload bytes a sender session keeps while the link is down (default 64 MiB)",
        metavar="BYTES",
    ),
    Option(
        "resend_frames",
        _nonneg_int,
        "sent frames not yet confirmed by every reader, kept per sender session and re-sent "
        "after a reconnect or a reader's re-accept; readers drop copies by seq; when full, "
        "the apps get back-pressure (default 8192, 0 disables)",
        metavar="N",
    ),
    Option(
        "resend_bytes",
        _nonneg_size,
        "payload bytes of that re-send window (default 64 MiB, 0 disables)",
        metavar="BYTES",
    ),
    Option("reorder_window", _pos_int, "reorder buffer size in seqs (default 4096)", metavar="N"),
    Option(
        "reorder_timeout",
        _pos_float,
        "seconds a seq gap may stay open before it is reported and skipped (default 2)",
        metavar="SECONDS",
    ),
    Option(
        "max_payload",
        _pos_size,
        "largest IPC frame payload accepted (default 16MiB)",
        metavar="BYTES",
    ),
    Option(
        "max_message",
        _pos_size,
        "largest WS message accepted (default 16MiB)",
        metavar="BYTES",
    ),
    Option("backoff_initial", _pos_float, "first reconnect delay in seconds (default 0.05)"),
    Option("backoff_max", _pos_float, "largest reconnect delay in seconds (default 5)"),
    Option(
        "pub_scan_interval",
        _pos_float,
        "seconds between safety-net scans for changed syft.pub.yaml files; a change is "
        "normally uploaded at once, on the file watcher's event (default 10)",
        metavar="SECONDS",
    ),
    Option(
        "open_timeout",
        _pos_float,
        "default seconds to wait for the relay's verdict on an open (default 5)",
        metavar="SECONDS",
    ),
    Option(
        "keep_files",
        _bool,
        "keep fallback .request files once sent (sender) and replayed (reader); "
        "default: remove them",
        switch=True,
    ),
    Option(
        "subscribe",
        parse_subscriptions,
        "mirror the files of this folder of another datasite (e.g. bob@example.org/public; "
        "repeat the flag or separate by commas). Without it, files of other datasites are "
        "written to disk only for an open reader session on their folder: the relay sends "
        "every file you may read, and is not trusted to fill your disk",
        metavar="PATH",
    ),
    Option(
        "mirror_datasite_bytes",
        _nonneg_size,
        "bytes the mirror may hold of one other datasite; a file over it is not written "
        "(logged; a session still gets its frame) (default 256 MiB, 0 = no bound)",
        metavar="BYTES",
    ),
    Option(
        "mirror_total_bytes",
        _nonneg_size,
        "bytes the mirror may hold of all other datasites together (default 1 GiB, 0 = no bound)",
        metavar="BYTES",
    ),
    Option(
        "restore_sessions",
        _bool,
        "save open sessions in ROOT/.hotlink/state.json and restore them on start (default true)",
        switch=True,
    ),
    Option(
        "direct",
        _direct_mode,
        "direct peer-to-peer path: 'auto' negotiates (through the relay) an encrypted TCP "
        "link to each peer of a session and sends frames over it, falling back to the relay "
        "while it is down; 'off': relay and files only. Sessions may override it "
        "(hotlinkctl open --direct). Default auto",
        metavar="auto|off",
    ),
    Option(
        "direct_listen",
        _hostports(0),
        "where the direct-path listener binds (repeat or comma-separate; port 0 = "
        "ephemeral); default: loopback and this host's interface addresses on one "
        "ephemeral port. Peers must be able to reach one of them (or an advertised one)",
        metavar="HOST:PORT",
    ),
    Option(
        "direct_advertise",
        _hostports(1),
        "extra HOST:PORT offered to peers for the direct path, for a forwarded or public "
        "port in front of the listener (repeat or comma-separate)",
        metavar="HOST:PORT",
    ),
    Option(
        "tunnel_window",
        _pos_int,
        "TCP tunnels: bytes a connection may have in flight per direction before the "
        "sending end stops reading (flow control; the memory bound per stream and "
        "direction, default 1 MiB, at least 1024)",
        metavar="BYTES",
    ),
    Option(
        "tunnel_peer_timeout",
        _pos_float,
        "TCP tunnels: seconds the other agent may stay silent while connections are open "
        "before they are reset on both ends (default 60)",
        metavar="SECONDS",
    ),
)


#: options whose flag may be given more than once (the values are collected)
_REPEATABLE = frozenset({"server", "subscribe", "direct_listen", "direct_advertise"})


def env_name(name: str) -> str:
    return "HOTLINK_" + name.upper()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hotlink-agent",
        description=(
            "Hotlink peer agent: holds one WebSocket to the relay and serves session "
            "endpoints (stream.sock / stream.tcp) plus a gRPC control API. Every option "
            "can also be set by the environment variable shown and by the TOML key of the "
            "same name (with '_'); precedence is flag > env > config file > default. "
            "BYTES values take binary units: 16777216, 16MiB, 512k, 1.5MB."
        ),
    )
    p.add_argument("--version", action="version", version=version_line("hotlink-agent"))
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        default=argparse.SUPPRESS,
        help="TOML config file with keys named like the flags (env HOTLINK_CONFIG)",
    )
    for opt in OPTIONS:
        flag = "--" + opt.name.replace("_", "-")
        req = " [required]" if opt.required else ""
        if opt.switch:
            p.add_argument(
                flag,
                dest=opt.name,
                nargs="?",
                const="true",
                metavar="BOOL",
                default=argparse.SUPPRESS,
                help=f"{opt.help} (env {env_name(opt.name)})",
            )
            continue
        p.add_argument(
            flag,
            dest=opt.name,
            metavar=opt.metavar or opt.name.upper(),
            action="append" if opt.name in _REPEATABLE else "store",
            default=argparse.SUPPRESS,
            help=f"{opt.help} (env {env_name(opt.name)}){req}",
        )
    telemetry.add_arguments(p)
    return p


def load_config(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> AgentConfig:
    """Merge flags, environment and TOML file; raise `ConfigError` on bad/missing values."""
    env = os.environ if env is None else env
    ns = vars(build_parser().parse_args(argv))
    tflags = {k: ns.pop(k) for k in TRACING_KEYS if ns.get(k) is not None}
    for k in TRACING_KEYS:
        ns.pop(k, None)
    cfg_file = ns.pop("config", None) or env.get("HOTLINK_CONFIG")
    file_vals: dict[str, Any] = {}
    if cfg_file:
        try:
            with open(os.path.expanduser(cfg_file), "rb") as fh:
                file_vals = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {cfg_file}: {exc}") from None
        known = {o.name for o in OPTIONS} | set(TRACING_KEYS)
        unknown = sorted(set(file_vals) - known)
        if unknown:
            raise ConfigError(f"unknown keys in {cfg_file}: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw: Any = None
        source = ""
        if opt.name in ns:
            raw, source = ns[opt.name], "--" + opt.name.replace("_", "-")
        elif env.get(env_name(opt.name)):
            raw, source = env[env_name(opt.name)], env_name(opt.name)
        elif opt.name in file_vals:
            raw, source = file_vals[opt.name], f"{cfg_file}:{opt.name}"
        if raw is None:
            if opt.required:
                raise ConfigError(
                    f"missing --{opt.name.replace('_', '-')} "
                    f"(or {env_name(opt.name)}, or '{opt.name}' in the config file)"
                )
            continue
        try:
            values[opt.name] = opt.conv(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid {source}: {exc}") from None
    if "control" not in values:
        values["control"] = values["root"] / ".hotlink" / "agent.sock"
    values["tracing"] = tracing_options(tflags, env, file_vals, cfg_file or "")
    cfg = AgentConfig(**values)
    if cfg.backoff_max < cfg.backoff_initial:
        raise ConfigError("backoff_max must be >= backoff_initial")
    return cfg


def config_fields() -> list[str]:
    return [f.name for f in fields(AgentConfig)]


# --------------------------------------------------------------------------- tracing


def _ratio(v: Any) -> float:
    x = float(v)
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"must be a number in [0, 1], got {v!r}")
    return x


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        s = str(v).strip().lower()
        if s not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {v!r}")
        return s

    return conv


#: Tracing settings: flag `--otel-...` (from `telemetry.add_arguments`), env
#: `HOTLINK_OTEL_...`, TOML key `otel_...`, with the usual precedence; the standard
#: OTEL_* variables come after all three (`hotlink.telemetry.config`).
TRACING_KEYS: dict[str, Callable[[Any], Any]] = {
    "otel": _bool,
    "otel_endpoint": str,
    "otel_protocol": _choice(telemetry.config.PROTOCOLS),
    "otel_sampler": _choice(telemetry.config.SAMPLERS),
    "otel_sampler_arg": _ratio,
}


def tracing_options(
    flags: Mapping[str, Any], env: Mapping[str, str], file_vals: Mapping[str, Any], cfg_file: str
) -> TracingOptions:
    vals: dict[str, Any] = {}
    for key, conv in TRACING_KEYS.items():
        if key in flags:
            raw, source = flags[key], "--" + key.replace("_", "-")
        elif env.get(env_name(key)):
            raw, source = env[env_name(key)], env_name(key)
        elif key in file_vals:
            raw, source = file_vals[key], f"{cfg_file}:{key}"
        else:
            continue
        try:
            vals[key] = conv(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid {source}: {exc}") from None
    return TracingOptions(
        enabled=vals.get("otel"),
        endpoint=vals.get("otel_endpoint") or None,
        protocol=vals.get("otel_protocol"),
        sampler=vals.get("otel_sampler"),
        ratio=vals.get("otel_sampler_arg"),
    )
