"""`hotlinkctl`: drive a Hotlink agent from a shell or a script.

Every command takes `--json` (machine output on stdout, one object per line for
streams) and exits with a documented code (see `errors.ExitCode`), so scripts can branch
on the outcome without parsing text. Errors print what went wrong and what to do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hotlink.common.loop import run_main
from hotlink.v1 import agent_pb2 as pb

from . import bench as bench_mod
from . import devstack, output
from . import trace as trace_mod
from .agent_client import AgentClient, default_control_socket
from .errors import (
    EXIT_CODES_HELP,
    CtlError,
    ExitCode,
    NotFound,
    StreamClosed,
    Unavailable,
    UsageError,
)
from .stats import parse_size
from .stream import Stream

T = TypeVar("T")

DESCRIPTION = """\
Control a Hotlink agent: open and close streaming sessions, send and tail frames,
watch events, run a local devstack and the latency benchmark.

The agent is found from --agent, else --root (ROOT/.hotlink/agent.sock), else the
environment: HOTLINK_AGENT (control address), HOTLINK_ROOT.

quick start:
  hotlinkctl devstack                       # demo: relay + 2 agents, latency table
  hotlinkctl devstack up --dir ./devstack   # leave a stack running
  HOTLINK_ROOT=./devstack/alice@example.org hotlinkctl open _mpc/0_to_1 --to bob@example.org
  hotlinkctl bench --bench hotlink-protocol
"""

IPC_MODES = {"unix": pb.IPC_MODE_UNIX, "tcp": pb.IPC_MODE_TCP}
FALLBACK_MODES = {
    "off": pb.FALLBACK_MODE_OFF,
    "on-failure": pb.FALLBACK_MODE_ON_FAILURE,
    "tee": pb.FALLBACK_MODE_TEE,
}


# --------------------------------------------------------------------------- plumbing


def _common(defaults: bool) -> argparse.ArgumentParser:
    """Options accepted both before and after the subcommand.

    The subcommand copies use SUPPRESS defaults so they only override when given.
    """
    p = argparse.ArgumentParser(add_help=False)
    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    p.add_argument(
        "--agent",
        default=d(None),
        metavar="ADDR",
        help="agent control address: socket path, unix:PATH or host:port (env HOTLINK_AGENT)",
    )
    p.add_argument(
        "--root",
        default=d(None),
        metavar="DIR",
        help="agent root; the control socket is DIR/.hotlink/agent.sock (env HOTLINK_ROOT)",
    )
    p.add_argument("--json", action="store_true", default=d(False), help="machine-readable output")
    p.add_argument(
        "--rpc-timeout",
        type=float,
        default=d(10.0),
        metavar="S",
        help="seconds to wait for each control call (default 10)",
    )
    return p


def agent_address(args: argparse.Namespace) -> str:
    """--agent > --root > $HOTLINK_AGENT > $HOTLINK_ROOT."""
    if args.agent:
        return args.agent
    if args.root:
        return default_control_socket(args.root)
    if os.environ.get("HOTLINK_AGENT"):
        return os.environ["HOTLINK_AGENT"]
    if os.environ.get("HOTLINK_ROOT"):
        return default_control_socket(os.environ["HOTLINK_ROOT"])
    raise UsageError(
        "no agent given",
        "pass --agent SOCKET or --root ROOT, or set HOTLINK_ROOT (the agent's --root) "
        "or HOTLINK_AGENT",
    )


async def _with_agent(args: argparse.Namespace, fn: Callable[[AgentClient], Awaitable[T]]) -> T:
    client = AgentClient(agent_address(args), timeout=args.rpc_timeout)
    try:
        return await fn(client)
    finally:
        await client.close()


_run = run_main  # every subcommand's event loop: uvloop when available


def _say(args: argparse.Namespace, text: str) -> None:
    """Informational line for people: stderr, so stdout stays clean for data."""
    if not getattr(args, "quiet", False):
        print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- commands


def cmd_open(args: argparse.Namespace) -> int:
    async def go(c: AgentClient) -> pb.Session:
        return await c.open_session(
            args.path,
            to=args.to or "",
            ipc_mode=IPC_MODES[args.ipc],
            fallback_mode=FALLBACK_MODES[args.fallback],
            tcp_addr=args.tcp_addr or "",
            require_link=args.require_link,
            timeout_seconds=args.timeout,
        )

    s = _run(_with_agent(args, go))
    if args.json:
        output.dump_json(output.to_dict(s))
    else:
        print(output.session_detail(s))
        if s.role == pb.ROLE_SENDER:
            _say(args, f"apps write frames to: {s.endpoint or s.session_dir}")
        else:
            _say(args, f"apps read frames from: {s.endpoint or s.session_dir}")
    if s.state == pb.SESSION_STATE_REJECTED:
        return ExitCode.PERMISSION
    return ExitCode.OK


def cmd_close(args: argparse.Namespace) -> int:
    s = _run(_with_agent(args, lambda c: c.close_session(args.session, args.reason or "")))
    if args.json:
        output.dump_json(output.to_dict(s))
    else:
        print(f"closed {s.path or args.session}")
    return ExitCode.OK


def cmd_ls(args: argparse.Namespace) -> int:
    sessions = _run(_with_agent(args, lambda c: c.list_sessions()))
    if args.json:
        output.dump_json({"sessions": [output.to_dict(s) for s in sessions]})
    else:
        print(output.sessions_table(sessions))
    return ExitCode.OK


def cmd_get(args: argparse.Namespace) -> int:
    s = _run(_with_agent(args, lambda c: c.get_session(args.session)))
    if args.json:
        output.dump_json(output.to_dict(s))
    else:
        print(output.session_detail(s))
    return ExitCode.OK


def cmd_fallback(args: argparse.Namespace) -> int:
    s = _run(
        _with_agent(args, lambda c: c.set_fallback_mode(args.session, FALLBACK_MODES[args.mode]))
    )
    if args.json:
        output.dump_json(output.to_dict(s))
    else:
        print(f"{s.path}: fallback {args.mode}")
    return ExitCode.OK


def cmd_status(args: argparse.Namespace) -> int:
    async def go(c: AgentClient) -> tuple[str, pb.GetStatusResponse]:
        health = await c.health(timeout=args.rpc_timeout)
        return health, await c.get_status()

    health, st = _run(_with_agent(args, go))
    if args.json:
        d = output.to_dict(st)
        d["health"] = health
        output.dump_json(d)
    else:
        print(output.status_text(st))
    if st.link_state != pb.LINK_STATE_UP:
        return ExitCode.UNAVAILABLE
    return ExitCode.OK


async def _session_dir(c: AgentClient, path: str, want_role: int) -> pb.Session:
    try:
        s = await c.get_session(path)
    except NotFound:
        verb = "open it" if want_role == pb.ROLE_SENDER else "open it on the reader's agent"
        raise NotFound(
            f"no session {path} on the agent at {c.display_addr}",
            f"{verb} first: hotlinkctl open {path}",
        ) from None
    if s.role != want_role:
        role = output.enum_name(pb.Role, s.role, "ROLE_").lower()
        if want_role == pb.ROLE_SENDER:
            hint = "send on the sender's agent (the owner of the path's datasite)"
        else:
            hint = "tail on a reader's agent (open OWNER@x/_mpc/... there)"
        raise UsageError(f"{path} is a {role} session on this agent", hint)
    if s.state in (pb.SESSION_STATE_CLOSED, pb.SESSION_STATE_REJECTED):
        state = output.enum_name(pb.SessionState, s.state, "SESSION_STATE_")
        raise Unavailable(f"session {path} is {state}: {s.reason}", "open it again")
    return s


def cmd_send(args: argparse.Namespace) -> int:
    if args.file and args.stdin:
        raise UsageError("give either --file F or -, not both")
    if not args.file and not args.stdin and args.data is None:
        raise UsageError("nothing to send", "use --file F, - (stdin) or --data TEXT")
    if args.file:
        try:
            data = Path(args.file).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no such file: {args.file}") from None
    elif args.stdin:
        data = sys.stdin.buffer.read()
    else:
        data = args.data.encode()
    payloads = [ln for ln in data.splitlines() if ln] if args.lines else [data]

    async def go(c: AgentClient) -> pb.Session:
        s = await _session_dir(c, args.path, pb.ROLE_SENDER)
        stream = await Stream.connect(s.session_dir, timeout=args.connect_timeout)
        try:
            for i, payload in enumerate(payloads):
                name = args.name if args.name and len(payloads) == 1 else ""
                if args.name and len(payloads) > 1:
                    name = f"{args.name}.{i}"
                await stream.send(payload, path=name, etag=args.etag or "")
        finally:
            await stream.close()
        return s

    s = _run(_with_agent(args, go))
    total = sum(len(p) for p in payloads)
    if args.json:
        output.dump_json({"path": s.path, "frames": len(payloads), "bytes": total})
    else:
        _say(args, f"sent {len(payloads)} frame(s), {total} bytes on {s.path}")
    return ExitCode.OK


def cmd_tail(args: argparse.Namespace) -> int:
    async def go(c: AgentClient) -> int:
        s = await _session_dir(c, args.path, pb.ROLE_READER)
        stream = await Stream.connect(s.session_dir, timeout=args.connect_timeout)
        _say(args, f"tail: connected to {stream.endpoint} ({s.path}); Ctrl-C to stop")
        n = 0
        try:
            while args.count is None or n < args.count:
                try:
                    frame = await asyncio.wait_for(stream.recv(), args.idle_timeout)
                except TimeoutError:
                    raise Unavailable(
                        f"no frame within {args.idle_timeout:g}s ({n} received)",
                        "is the sender writing? check: hotlinkctl ls (on both agents)",
                    ) from None
                n += 1
                if args.raw:
                    sys.stdout.buffer.write(frame.payload)
                    sys.stdout.buffer.flush()
                elif args.json:
                    output.dump_json(output.frame_dict(frame))
                else:
                    print(output.frame_line(frame), flush=True)
        except StreamClosed:
            if args.count is None:  # tail until the end: the agent ending it is normal
                _say(args, "tail: the agent closed the stream")
                return ExitCode.OK
            raise
        finally:
            await stream.close()
        return ExitCode.OK

    return _run(_with_agent(args, go))


def cmd_watch(args: argparse.Namespace) -> int:
    async def go(c: AgentClient) -> int:
        await c.health(timeout=args.rpc_timeout)
        _say(args, f"watching events of the agent at {c.display_addr}; Ctrl-C to stop")
        n = 0
        events = c.watch_events()
        try:
            while args.count is None or n < args.count:
                try:
                    ev = await asyncio.wait_for(anext(events), args.idle_timeout)
                except StopAsyncIteration:
                    _say(args, "watch: the agent ended the stream")
                    return ExitCode.OK
                except TimeoutError:
                    if args.count is None:
                        return ExitCode.OK
                    raise Unavailable(
                        f"only {n} of {args.count} events within {args.idle_timeout:g}s"
                    ) from None
                n += 1
                if args.json:
                    output.dump_json(output.to_dict(ev))
                else:
                    print(output.event_line(ev), flush=True)
        finally:
            await events.aclose()
        return ExitCode.OK

    return _run(_with_agent(args, go))


def cmd_devstack(args: argparse.Namespace) -> int:
    action = args.action or "demo"
    if action == "up":
        state = _run(
            devstack.up(
                args.dir,
                devstack.parse_peers(args.peers),
                timeout=args.timeout,
                log_level=args.log_level or "",
                otel=args.otel,
                otel_ratio=args.otel_sampler_arg,
                tls=args.tls,
            )
        )
        if args.json:
            output.dump_json(_state_dict(state))
        else:
            print(_up_text(state))
        return ExitCode.OK
    if action == "down":
        res = devstack.down(args.dir)
        if args.json:
            output.dump_json({"dir": str(Path(args.dir).absolute()), "stopped": res})
        else:
            for name, what in res.items():
                print(f"{name}: {what}")
        return ExitCode.OK
    if action == "stop":
        what = devstack.stop(args.dir, args.name)
        if args.json:
            output.dump_json({"dir": str(Path(args.dir).absolute()), args.name: what})
        else:
            print(f"{args.name}: {what}")
        return ExitCode.OK
    if action == "start":
        pid = _run(devstack.start(args.dir, args.name, timeout=args.timeout))
        if args.json:
            output.dump_json({"dir": str(Path(args.dir).absolute()), args.name: pid})
        else:
            print(f"{args.name}: started (pid {pid})")
        return ExitCode.OK
    if action == "status":
        rows = _run(devstack.status(args.dir))
        healthy = all(r.running for r in rows) and all(
            "link UP" in r.detail for r in rows if r.name != "relay"
        )
        if args.json:
            output.dump_json(
                {"dir": str(Path(args.dir).absolute()), "healthy": healthy,
                 "components": [vars(r) for r in rows]}
            )  # fmt: skip
        else:
            for r in rows:
                state = "running" if r.running else "STOPPED"
                print(f"{r.name:<24} pid {r.pid:<8} {state:<8} {r.detail}")
        return ExitCode.OK if healthy else ExitCode.UNAVAILABLE
    from .demo import run_demo

    return _run(run_demo(args))


def _state_dict(state: devstack.DevstackState) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(state)


def _up_text(state: devstack.DevstackState) -> str:
    assert state.relay is not None
    lines = [
        f"devstack up in {state.dir}",
        f"relay   {state.relay.url}  (pid {state.relay.pid}, log {state.relay.log_file})",
    ]
    for p in state.peers:
        lines.append(f"{p.email:<24} pid {p.pid}, control {p.control}, log {p.log_file}")
    a, b = state.peers[0], state.peers[1]
    lines += [
        "",
        "try:",
        f"  hotlinkctl --root {a.root} open _mpc/0_to_1 --to {b.email}",
        f"  hotlinkctl --root {b.root} open {a.email}/_mpc/0_to_1",
        f"  hotlinkctl --root {b.root} tail {a.email}/_mpc/0_to_1 &",
        f"  echo hello | hotlinkctl --root {a.root} send _mpc/0_to_1 -",
        f"stop it with: hotlinkctl devstack down --dir {state.dir}",
    ]
    if "--otel-endpoint" in state.relay.args:
        ep = state.relay.args[state.relay.args.index("--otel-endpoint") + 1]
        lines.insert(
            2 + len(state.peers),
            f"tracing: spans to {ep} (Jaeger UI: http://localhost:16686, "
            "or: hotlinkctl trace --listen)",
        )
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.lang != "python":
        raise UsageError(
            f"--lang {args.lang}: this repository's client is Python",
            "use --lang python (go and rust are the reference implementation's clients)",
        )
    try:
        sizes = tuple(parse_size(s) for s in args.sizes.split(",") if s.strip())
        frame_size = parse_size(args.frame_size)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.count < 0 or args.warmup < 0 or args.inflight < 1:
        raise UsageError("--count and --warmup must be >= 0, --inflight >= 1")
    cfg = bench_mod.BenchConfig(
        bench=args.bench,
        sizes=sizes,
        count=args.count,
        warmup=args.warmup,
        inflight=args.inflight,
        ipc=args.ipc,
        floor=not args.no_floor,
        throughput_mb=args.throughput or 0.0,
        frame_size=frame_size,
        timeout=args.timeout,
        devstack_dir=args.dir or "",
        tls=args.tls,
    )
    progress = bench_mod.Progress(enabled=not args.quiet)
    report = _run(bench_mod.run_bench(cfg, progress))
    if args.json:
        output.dump_json(report.to_dict())
    else:
        print(bench_mod.render_table(report))
    return ExitCode.OK


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = _common(defaults=False)
    ap = argparse.ArgumentParser(
        prog="hotlinkctl",
        description=DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common(defaults=True)],
    )
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, help: str, fn: Callable[[argparse.Namespace], int], desc: str = "") -> Any:
        p = sub.add_parser(
            name,
            help=help,
            description=desc or help,
            parents=[common],
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=fn)
        return p

    p = add(
        "open",
        "open a session (sender on your own datasite, reader on another's)",
        cmd_open,
        "Open a session. PATH relative to your datasite (_mpc/0_to_1) makes this agent\n"
        "the sender; OWNER@x/_mpc/0_to_1 makes it a reader of OWNER's session.",
    )
    p.add_argument("path", metavar="PATH", help="_mpc/0_to_1 or owner@x/_mpc/0_to_1")
    p.add_argument("--to", metavar="EMAIL", help="sender only: the one reader allowed")
    p.add_argument("--ipc", choices=sorted(IPC_MODES), default="unix", help="app endpoint kind")
    p.add_argument(
        "--fallback",
        choices=list(FALLBACK_MODES),
        default="on-failure",
        help="file fallback: off, on-failure (default), tee",
    )
    p.add_argument("--tcp-addr", metavar="HOST:PORT", help="TCP IPC listen address")
    p.add_argument(
        "--require-link", action="store_true", help="fail (exit 6) if the relay link is down"
    )
    p.add_argument(
        "--timeout", type=float, default=5.0, metavar="S", help="wait for the relay's verdict"
    )

    p = add("close", "close a session by path or session id", cmd_close)
    p.add_argument("session", metavar="PATH|ID")
    p.add_argument("--reason", help="reason sent to the peers")

    add("ls", "list sessions", cmd_ls)

    p = add("get", "show one session in detail", cmd_get)
    p.add_argument("session", metavar="PATH|ID")

    p = add("fallback", "change a session's fallback mode", cmd_fallback)
    p.add_argument("session", metavar="PATH|ID")
    p.add_argument("mode", choices=list(FALLBACK_MODES))

    add(
        "status",
        "agent status: link, counters, sessions (exit 6 if the link is not up)",
        cmd_status,
    )

    p = add(
        "send",
        "send data as frames on a sender session",
        cmd_send,
        "Send data on a session this agent sends on: one frame with the whole input,\n"
        "or one frame per non-empty line with --lines.",
    )
    p.add_argument("path", metavar="PATH", help="the session path, as given to open")
    p.add_argument("stdin", nargs="?", choices=["-"], help="read the data from stdin")
    p.add_argument("--file", metavar="F", help="read the data from file F")
    p.add_argument("--data", metavar="TEXT", help="send TEXT")
    p.add_argument("--lines", action="store_true", help="one frame per non-empty line")
    p.add_argument("--name", metavar="NAME", help="frame path (default: <seq>.request)")
    p.add_argument("--etag", metavar="ETAG", help="frame etag")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S")

    p = add(
        "tail",
        "print frames of a reader session as they arrive",
        cmd_tail,
        "Connect to a reader session's endpoint and print frames as they arrive\n"
        "(--json: one object per line; --raw: payload bytes only).",
    )
    p.add_argument("path", metavar="PATH", help="owner@x/_mpc/0_to_1")
    p.add_argument("--count", type=int, metavar="N", help="exit 0 after N frames")
    p.add_argument("--raw", action="store_true", help="write raw payloads to stdout")
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        metavar="S",
        help="give up (exit 6) when no frame arrives for S seconds",
    )
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S")
    p.add_argument("-q", "--quiet", action="store_true", help="no status lines on stderr")

    p = add("watch", "print agent events (opens, accepts, link up/down ...)", cmd_watch)
    p.add_argument("--count", type=int, metavar="N", help="exit after N events")
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds without an event (exit 6 if --count was not reached)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no status lines on stderr")

    p = add(
        "devstack",
        "local relay + agents on loopback (bare: a demo with a latency table)",
        cmd_devstack,
        "Without an action: start a relay and two agents in a temp dir, open a session\n"
        "each way, stream a burst of 1 KB / 10 KB / 100 KB messages, print a latency\n"
        "table, stop everything. With up/down/status: manage a long-running stack.",
    )
    p.set_defaults(action=None)
    p.add_argument("--peers", metavar="A,B", help="peer emails (default alice/bob@example.org)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="readiness timeout")
    p.add_argument(
        "--keep", action="store_true", help="demo: keep the temp dir (logs) after success"
    )
    ds = p.add_subparsers(dest="action", metavar="ACTION")
    default_dir = os.environ.get("HOTLINK_DEVSTACK", "./devstack")
    for name, help in (
        ("up", "start relay + agents, return when all are ready"),
        ("down", "stop them (SIGTERM, wait, SIGKILL)"),
        ("status", "process, health and link state (exit 6 unless all healthy)"),
        ("stop", "stop one process (NAME: a peer's email or 'relay'), for fault tests"),
        ("start", "start one stopped process again (same port, data dir, root)"),
    ):
        q = ds.add_parser(name, help=help, description=help, parents=[common])
        q.add_argument(
            "--dir",
            default=default_dir,
            help=f"devstack directory (default {default_dir}; env HOTLINK_DEVSTACK)",
        )
        if name in ("stop", "start"):
            q.add_argument("name", metavar="NAME", help="a peer's email, or relay")
        if name == "start":
            q.add_argument(
                "--timeout",
                type=float,
                default=argparse.SUPPRESS,
                metavar="S",
                help="readiness timeout (default 30)",
            )
        if name == "up":
            q.add_argument(
                "--peers",
                metavar="A,B",
                default=argparse.SUPPRESS,
                help="comma-separated peer emails (default alice@example.org,bob@example.org)",
            )
            q.add_argument(
                "--timeout",
                type=float,
                default=argparse.SUPPRESS,
                metavar="S",
                help="readiness timeout (default 30)",
            )
            q.add_argument("--log-level", metavar="LEVEL", help="relay/agent log level")
            q.add_argument(
                "--tls",
                action="store_true",
                help="relay serves wss:// with a throwaway CA made in DIR/tls; agents "
                "trust it with --ca-file",
            )
            q.add_argument(
                "--otel",
                nargs="?",
                const=devstack.DEFAULT_OTEL_ENDPOINT,
                default=None,
                metavar="ENDPOINT",
                help="trace: relay and agents export spans over OTLP/gRPC to ENDPOINT "
                f"(default {devstack.DEFAULT_OTEL_ENDPOINT}: docker-compose.otel.yaml's "
                "Jaeger, or `hotlinkctl trace --listen`); see README 'See a message in Jaeger'",
            )
            q.add_argument(
                "--otel-sampler-arg",
                type=float,
                default=1.0,
                metavar="RATIO",
                help="with --otel: share of messages traced (default 1: every message; "
                "the processes' own default is 0.01)",
            )
    p.set_defaults(log_level=None, otel=None, otel_sampler_arg=None, tls=False)

    p = add(
        "bench",
        "latency benchmark against a plain-forwarding floor",
        cmd_bench,
        "Measure one-way latency app socket -> app socket through a devstack (started\n"
        "here unless --dir names a running one), and the same topology with plain\n"
        "forwarding (the floor) just before each run; report both and their ratio.",
    )
    p.add_argument(
        "--bench",
        default="hotlink-protocol",
        choices=["hotlink-protocol", "e2e-latency"],
        help="hotlink-protocol (default), or e2e-latency: the file path (.request file in "
        "the sender's session dir to the reader app)",
    )
    p.add_argument("--lang", default="python", help="client language (only python here)")
    p.add_argument("--count", type=int, default=1000, help="messages per size and mode")
    p.add_argument("--warmup", type=int, default=50, help="unmeasured messages before each run")
    p.add_argument("--sizes", default="1KB,10KB,100KB", help="payload sizes, comma-separated")
    p.add_argument(
        "--inflight",
        type=int,
        default=8,
        metavar="N",
        help="also run pipelined with N in flight (1: sequential only; default 8)",
    )
    p.add_argument("--ipc", choices=sorted(IPC_MODES), default="unix", help="app endpoint kind")
    p.add_argument("--no-floor", action="store_true", help="skip the floor measurement")
    p.add_argument(
        "--throughput", type=float, metavar="MB", help="also stream MB megabytes (10^6 B)"
    )
    p.add_argument("--frame-size", default="64KB", help="frame size in throughput mode")
    p.add_argument("--dir", help="use the running devstack in DIR instead of starting one")
    p.add_argument(
        "--tls",
        action="store_true",
        help="relay links over TLS (wss://, a throwaway local CA), the floor's too: the "
        "latency of a production setup (ignored with --dir: that stack decides)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per run")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    trace_mod.register(add)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CtlError as exc:
        _report_error(args, exc)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the exit flush
        return ExitCode.OK


def _report_error(args: argparse.Namespace, exc: CtlError) -> None:
    if getattr(args, "json", False):
        output.dump_json(exc.to_dict())
    print(f"hotlinkctl: error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"hotlinkctl: hint: {exc.hint}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
