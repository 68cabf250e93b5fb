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
from hotlink.common.version import version_line
from hotlink.telemetry import TracingOptions
from hotlink.wire.envelope import DEFAULT_MAX_MESSAGE
from hotlink.wire.frames import DEFAULT_MAX_PAYLOAD
from hotlink.wire.paths import normalize_email

from . import config_values as V
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


OPTIONS: tuple[Option, ...] = (
    Option(
        "server",
        V.server_urls,
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
    Option("token_file", V.path, "file holding the relay bearer token", True, "FILE"),
    Option("root", V.path, "peer root; DIR/datasites/<email>/... is the local tree", True, "DIR"),
    Option(
        "control",
        V.path,
        "gRPC control UNIX socket (default DIR/.hotlink/agent.sock, mode 0600)",
        metavar="PATH",
    ),
    Option(
        "control_tcp",
        V.hostport,
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
        V.path,
        "PEM file of the CA (or certificate) to verify a wss:// relay with, e.g. a "
        "private CA or a TLS terminator's; default: the system CAs",
        metavar="FILE",
    ),
    Option(
        "log_level", V.log_level, "DEBUG, INFO, WARNING or ERROR (default INFO)", metavar="LEVEL"
    ),
    Option(
        "reader_queue",
        V.pos_int,
        "frames a slow reader app may have queued before it is disconnected, and frames "
        "kept for the first app while none is connected; the frames it could not take "
        "are asked from the sender again when an app connects (default 4096)",
        metavar="N",
    ),
    Option(
        "reader_queue_bytes",
        V.pos_size,
        "bytes a slow reader app may have queued before it is disconnected, and bytes kept "
        "for the first app while none is connected (default 64 MiB)",
        metavar="BYTES",
    ),
    Option(
        "reader_total_bytes",
        V.pos_size,
        "bytes queued for slow reader apps and kept while no app is connected, summed over "
        "all sessions; past it the app whose queue would grow is disconnected, or the "
        "frame for an absent app refused, both logged, and asked from the sender again "
        "when an app connects (default 256 MiB)",
        metavar="BYTES",
    ),
    Option(
        "reader_buffer_bytes",
        V.pos_size,
        "socket write buffer per reader app before frames count as queued (default 1 MiB)",
        metavar="BYTES",
    ),
    Option(
        "send_queue_frames",
        V.pos_int,
        "frames a sender session keeps while the link is down; then the app gets "
        "back-pressure (default 10000)",
        metavar="N",
    ),
    Option(
        "send_queue_bytes",
        V.pos_size,
        "payload bytes a sender session keeps while the link is down (default 64 MiB)",
        metavar="BYTES",
    ),
    Option(
        "resend_frames",
        V.nonneg_int,
        "sent frames not yet confirmed by every reader, kept per sender session and re-sent "
        "after a reconnect or a reader's re-accept; readers drop copies by seq; when full, "
        "the apps get back-pressure (default 8192, 0 disables)",
        metavar="N",
    ),
    Option(
        "resend_bytes",
        V.nonneg_size,
        "payload bytes of that re-send window (default 64 MiB, 0 disables)",
        metavar="BYTES",
    ),
    Option("reorder_window", V.pos_int, "reorder buffer size in seqs (default 4096)", metavar="N"),
    Option(
        "reorder_timeout",
        V.pos_float,
        "seconds a seq gap may stay open before it is reported and skipped (default 2)",
        metavar="SECONDS",
    ),
    Option(
        "max_payload",
        V.pos_size,
        "largest IPC frame payload accepted (default 16MiB)",
        metavar="BYTES",
    ),
    Option(
        "max_message",
        V.pos_size,
        "largest WS message accepted (default 16MiB)",
        metavar="BYTES",
    ),
    Option("backoff_initial", V.pos_float, "first reconnect delay in seconds (default 0.05)"),
    Option("backoff_max", V.pos_float, "largest reconnect delay in seconds (default 5)"),
    Option(
        "pub_scan_interval",
        V.pos_float,
        "seconds between safety-net scans for changed syft.pub.yaml files; a change is "
        "normally uploaded at once, on the file watcher's event (default 10)",
        metavar="SECONDS",
    ),
    Option(
        "open_timeout",
        V.pos_float,
        "default seconds to wait for the relay's verdict on an open (default 5)",
        metavar="SECONDS",
    ),
    Option(
        "keep_files",
        V.boolean,
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
        V.nonneg_size,
        "bytes the mirror may hold of one other datasite; a file over it is not written "
        "(logged; a session still gets its frame) (default 256 MiB, 0 = no bound)",
        metavar="BYTES",
    ),
    Option(
        "mirror_total_bytes",
        V.nonneg_size,
        "bytes the mirror may hold of all other datasites together (default 1 GiB, 0 = no bound)",
        metavar="BYTES",
    ),
    Option(
        "restore_sessions",
        V.boolean,
        "save open sessions in ROOT/.hotlink/state.json and restore them on start (default true)",
        switch=True,
    ),
    Option(
        "direct",
        V.direct_mode,
        "direct peer-to-peer path: 'auto' negotiates (through the relay) an encrypted TCP "
        "link to each peer of a session and sends frames over it, falling back to the relay "
        "while it is down; 'off': relay and files only. Sessions may override it "
        "(hotlinkctl open --direct). Default auto",
        metavar="auto|off",
    ),
    Option(
        "direct_listen",
        V.hostports(0),
        "where the direct-path listener binds (repeat or comma-separate; port 0 = "
        "ephemeral); default: loopback and this host's interface addresses on one "
        "ephemeral port. Peers must be able to reach one of them (or an advertised one)",
        metavar="HOST:PORT",
    ),
    Option(
        "direct_advertise",
        V.hostports(1),
        "extra HOST:PORT offered to peers for the direct path, for a forwarded or public "
        "port in front of the listener (repeat or comma-separate)",
        metavar="HOST:PORT",
    ),
    Option(
        "tunnel_window",
        V.tunnel_window,
        "TCP tunnels: bytes a connection may have in flight per direction before the "
        "sending end stops reading (flow control; the memory bound per stream and "
        "direction, default 1 MiB, at least 1024)",
        metavar="BYTES",
    ),
    Option(
        "tunnel_peer_timeout",
        V.pos_float,
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


#: Tracing settings: flag `--otel-...` (from `telemetry.add_arguments`), env
#: `HOTLINK_OTEL_...`, TOML key `otel_...`, with the usual precedence; the standard
#: OTEL_* variables come after all three (`hotlink.telemetry.config`).
TRACING_KEYS: dict[str, Callable[[Any], Any]] = {
    "otel": V.boolean,
    "otel_endpoint": str,
    "otel_protocol": V.choice(telemetry.config.PROTOCOLS),
    "otel_sampler": V.choice(telemetry.config.SAMPLERS),
    "otel_sampler_arg": V.ratio,
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
