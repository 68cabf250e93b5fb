"""`hotlinkctl`: drive a Hotlink agent from a shell or a script.

Every command takes `--json` (machine output on stdout, one object per line for
streams) and exits with a documented code (see `errors.ExitCode`), so scripts can branch
on the outcome without parsing text. Errors print what went wrong and what to do.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hotlink.common.version import version_line

from . import bench as bench_mod
from . import devstack, devstack_cluster, mpyc_demo, output, tunnel_cli
from . import trace as trace_mod
from .commands import acl as acl_cmds
from .commands import peers as peers_cmds
from .commands import sessions as session_cmds
from .commands.common import IPC_MODES, common_options, with_agent
from .commands.common import run as _run
from .errors import EXIT_CODES_HELP, CtlError, ExitCode, UsageError
from .stats import parse_size

DESCRIPTION = """\
Control a Hotlink agent: open and close streaming sessions, send and tail frames,
watch events, run a local devstack and the latency benchmark.

The agent is found from --agent, else --root (ROOT/.hotlink/agent.sock), else the
environment: HOTLINK_AGENT (control address), HOTLINK_ROOT.

quick start:
  hotlinkctl devstack                       # demo: relay + 2 agents, latency table
  hotlinkctl devstack up --dir ./devstack   # leave a stack running
  HOTLINK_ROOT=./devstack/alice@example.org hotlinkctl open _mpc/0_to_1 --to bob@example.org
  hotlinkctl --root ROOT acl grant _mpc bob@example.org --read   # bob may read your _mpc/...
  hotlinkctl bench --bench hotlink-protocol
"""


def cmd_devstack(args: argparse.Namespace) -> int:
    devstack.CLUSTER = devstack_cluster  # --relays N (it registers on import as well)
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
                relays=args.relays,
                tls=args.tls,
                direct=args.direct,
                agent_args=args.agent_arg,
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
            "link UP" in r.detail for r in rows if "@" in r.name
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
    lines = [f"devstack up in {state.dir}"]
    if state.relay is not None:
        r = state.relay
        lines.append(f"relay   {r.url}  (pid {r.pid}, log {r.log_file})")
    if state.cluster is not None:
        c = state.cluster
        lines.append(f"nats    {c['nats']['url']}  (pid {c['nats']['pid']})")
        for n in c["nodes"]:
            lines.append(f"{n['name']}  {n['url']}  (pid {n['pid']}, log {n['log_file']})")
    for p in state.peers:
        node = f", on {state.cluster['placement'][p.email]}" if state.cluster else ""
        lines.append(f"{p.email:<24} pid {p.pid}, control {p.control}, log {p.log_file}{node}")
    a, b = state.peers[0], state.peers[1]
    lines += [
        "",
        "try:",
        f"  hotlinkctl --root {shlex.quote(str(a.root))} open _mpc/0_to_1 --to {b.email}",
        f"  hotlinkctl --root {shlex.quote(str(b.root))} open {a.email}/_mpc/0_to_1",
        f"  hotlinkctl --root {shlex.quote(str(b.root))} tail {a.email}/_mpc/0_to_1 &",
        f"  echo hello | hotlinkctl --root {shlex.quote(str(a.root))} send _mpc/0_to_1 -",
        f"stop it with: hotlinkctl devstack down --dir {shlex.quote(str(state.dir))}",
    ]
    if state.relay is not None and "--otel-endpoint" in state.relay.args:
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
    if args.count < 0 or args.warmup < 0 or args.inflight < 1 or args.blocks < 1:
        raise UsageError("--count and --warmup must be >= 0, --inflight and --blocks >= 1")
    if not args.throughput and (args.count == 0 or not sizes):
        raise UsageError(
            "nothing to measure: --count 0 or no --sizes, and no --throughput",
            "give --count N (messages per size) and --sizes, or --throughput MB",
        )
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
        otel=args.otel,
        otel_ratio=args.otel_sampler_arg,
        tls=args.tls,
        direct=tuple(v.strip() for v in (args.direct or "").split(",") if v.strip()),
        blocks=args.blocks,
    )
    if not 0.0 <= cfg.otel_ratio <= 1.0:
        raise UsageError("--otel-sampler-arg must be between 0 and 1")
    progress = bench_mod.Progress(enabled=not args.quiet)
    report = _run(bench_mod.run_bench(cfg, progress))
    if args.json:
        output.dump_json(report.to_dict())
    else:
        print(bench_mod.render_table(report))
    return ExitCode.OK


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = common_options(defaults=False)
    ap = argparse.ArgumentParser(
        prog="hotlinkctl",
        description=DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common_options(defaults=True)],
    )
    ap.add_argument("--version", action="version", version=version_line("hotlinkctl"))
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    # devstack manages its own processes: the options that find one agent do not apply
    json_only = argparse.ArgumentParser(add_help=False)
    json_only.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )

    def add(
        name: str,
        help: str,
        fn: Callable[[argparse.Namespace], int],
        desc: str = "",
        parents: list[argparse.ArgumentParser] | None = None,
    ) -> Any:
        p = sub.add_parser(
            name,
            help=help,
            description=desc or help,
            parents=parents if parents is not None else [common],
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=fn)
        return p

    session_cmds.register(add)
    acl_cmds.register(add, common)
    peers_cmds.register(add, common)

    p = add(
        "devstack",
        "local relay + agents on loopback (bare: a demo with a latency table)",
        cmd_devstack,
        "Without an action: start a relay and two agents in a temp dir, open a session\n"
        "each way, stream a burst of 1 KB / 10 KB / 100 KB messages, print a latency\n"
        "table, stop everything. With up/down/status: manage a long-running stack.",
        parents=[json_only],
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
        q = ds.add_parser(name, help=help, description=help, parents=[json_only])
        q.add_argument(
            "--dir",
            default=default_dir,
            help=f"devstack directory (default {default_dir}; env HOTLINK_DEVSTACK)",
        )
        if name in ("stop", "start"):
            q.add_argument(
                "name",
                metavar="NAME",
                help="a peer's email, or relay; with --relays: relay-N or nats",
            )
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
                "--relays",
                type=int,
                default=1,
                metavar="N",
                help="N >= 2: a relay cluster: nats-server (from PATH) and N relay nodes "
                "relay-0.. sharing one data dir; peer i connects to node i mod N first "
                "(recorded in devstack.json); default 1: one relay, no NATS",
            )
            q.add_argument(
                "--tls",
                action="store_true",
                help="relay serves wss:// with a throwaway CA made in DIR/tls; agents "
                "trust it with --ca-file",
            )
            q.add_argument(
                "--direct",
                choices=devstack.DIRECT_MODES,
                default=None,
                help="pass --direct off|auto to every agent: auto lets each session's two "
                "agents set up a direct TCP link and skip the relay hop, off keeps them on "
                "the relay (default: no flag, the agents' own default)",
            )
            q.add_argument(
                "--agent-arg",
                action="append",
                default=[],
                metavar="ARG",
                help="one more command-line argument for every agent, repeatable; write "
                "flags with '=': --agent-arg=--reader-queue=64 (recorded in devstack.json, "
                "so `devstack start` keeps it; `hotlink-agent --help` lists the flags)",
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
    p.set_defaults(
        log_level=None,
        otel=None,
        otel_sampler_arg=None,
        relays=1,
        tls=False,
        direct=None,
        agent_arg=[],
    )

    p = add(
        "bench",
        "latency benchmark against a plain-forwarding floor",
        cmd_bench,
        "Measure one-way latency app socket -> app socket through a devstack (started\n"
        "here unless --dir names a running one), and the same topology with plain\n"
        "forwarding (the floor) just before each run; report both and their ratio,\n"
        "and each path's processes' time on CPU per message (from /proc).",
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
        "--blocks",
        type=int,
        default=4,
        metavar="N",
        help="measure every row in N blocks per path, alternating between the floor and "
        "each devstack (A B, B A, ...), so a machine that speeds up or slows down during "
        "the run moves every path alike (default 4; 1: one path after the other)",
    )
    p.add_argument(
        "--throughput", type=float, metavar="MB", help="also stream MB megabytes (10^6 B)"
    )
    p.add_argument("--frame-size", default="64KB", help="frame size in throughput mode")
    p.add_argument("--dir", help="use the running devstack in DIR instead of starting one")
    p.add_argument(
        "--otel",
        action="store_true",
        help="also measure a traced devstack (started here, spans to a receiver process of "
        "its own) after the untraced one for every size and mode: adds a 'traced' row, its "
        "ratio to the untraced row, and the spans the receiver got",
    )
    p.add_argument(
        "--otel-sampler-arg",
        type=float,
        default=1.0,
        metavar="RATIO",
        help="with --otel: share of messages traced (default 1: every message; the "
        "processes' own default is 0.01)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="relay links over TLS (wss://, a throwaway local CA), the floor's too: the "
        "latency of a production setup (ignored with --dir: that stack decides)",
    )
    p.add_argument(
        "--direct",
        metavar="off,auto",
        help="measure each value in the same run: a devstack per value with its agents "
        "started with --direct VALUE ('off': relay path, 'auto': direct TCP link between "
        "the agents, waited for before measuring); with off,auto a 'direct vs relay' "
        "table gives P50/P99 and throughput side by side with their ratios",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per run")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    trace_mod.register(add)
    tunnel_cli.register(add, common, lambda a, fn: _run(with_agent(a, fn)))
    mpyc_demo.register(add, _run)
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
