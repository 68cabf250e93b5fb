"""`hotlinkctl` session commands: open, close, ls, get, fallback, status, send, tail, watch."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

from hotlink.v1 import agent_pb2 as pb
from hotlink.wire.paths import split_owner

from .. import output
from ..agent_client import AgentClient
from ..errors import CtlError, ExitCode, NotFound, StreamClosed, Unavailable, UsageError
from ..reconnect import ReconnectingStream, session_still_open
from ..stream import Stream
from .common import DIRECT_MODES, FALLBACK_MODES, IPC_MODES, SECONDS, run, say, with_agent


def cmd_open(args: argparse.Namespace) -> int:
    wait: float | None = args.timeout

    async def go(c: AgentClient) -> pb.Session:
        t0 = time.monotonic()
        s = await c.open_session(
            args.path,
            to=args.to or "",
            ipc_mode=IPC_MODES[args.ipc],
            fallback_mode=FALLBACK_MODES[args.fallback],
            tcp_addr=args.tcp_addr or "",
            require_link=args.require_link,
            timeout_seconds=wait or 0.0,
            direct=DIRECT_MODES[args.direct],
        )
        # With --timeout the caller asked to wait for the session to be live: a reader
        # waits for the sender's open and the relay's accept, a sender whose link is
        # down for the link. Without it, PENDING is an answer (with its reason).
        while wait is not None and s.state == pb.SESSION_STATE_PENDING:
            left = wait - (time.monotonic() - t0)
            if left <= 0:
                break
            await asyncio.sleep(min(0.05, left))
            s = await c.get_session(s.session_id or s.path)
        return s

    s = run(with_agent(args, go))
    if args.json:
        output.dump_json(output.to_dict(s))
    else:
        print(output.session_detail(s))
        if s.role == pb.ROLE_SENDER:
            say(args, f"apps write frames to: {s.endpoint or s.session_dir}")
        else:
            say(args, f"apps read frames from: {s.endpoint or s.session_dir}")
    if s.state == pb.SESSION_STATE_REJECTED:
        return ExitCode.PERMISSION
    if s.state == pb.SESSION_STATE_PENDING:
        if wait is not None:
            print(
                f"hotlinkctl: error: {s.path} still PENDING after --timeout {wait:g}s: "
                f"{s.reason or 'no verdict'}\n"
                "hotlinkctl: hint: the session stays open on the agent and goes live by "
                "itself; check: hotlinkctl get " + s.path,
                file=sys.stderr,
            )
            return ExitCode.UNAVAILABLE
        say(args, f"PENDING: {s.reason or 'waiting for the relay'}")
    elif s.role == pb.ROLE_SENDER and not s.readers and not args.json:
        say(args, no_reader_yet(s))
    return ExitCode.OK


def no_reader_yet(s: pb.Session) -> str:
    """What a sender session with no reader (yet, or any more) does with its frames,
    and what a reader needs to join: named when the session is `--to` one (the relay
    accepted the open, so that reader's read access is there already)."""
    if s.to:
        who = (
            f"{s.to} is not in this session: it joins by opening {s.path} on its own "
            "agent; until it does"
        )
        readers = "it"
    else:
        folder, path = shlex.quote(split_owner(s.path)[1]), shlex.quote(s.path)
        who = (
            "no reader is in this session; readers need read access (on this agent: "
            f"hotlinkctl acl grant {folder} READER --read) and open {path} on their own "
            "agent; until one does"
        )
        readers = "the readers the ACL allows"
    if s.fallback_mode == pb.FALLBACK_MODE_OFF:
        return (
            f"{who}, frames wait in this agent's send queue (--fallback off: apps are "
            "held back when it is full)"
        )
    return f"{who}, frames go by file and wait on the relay for {readers}"


def cmd_close(args: argparse.Namespace) -> int:
    s = run(with_agent(args, lambda c: c.close_session(args.session, args.reason or "")))
    if args.json:
        output.dump_json(output.to_dict(s))
    else:
        print(f"closed {s.path or args.session}")
    return ExitCode.OK


def cmd_ls(args: argparse.Namespace) -> int:
    sessions = run(with_agent(args, lambda c: c.list_sessions()))
    if args.json:
        output.dump_json({"sessions": [output.to_dict(s) for s in sessions]})
    else:
        print(output.sessions_table(sessions))
    return ExitCode.OK


def cmd_get(args: argparse.Namespace) -> int:
    s = run(with_agent(args, lambda c: c.get_session(args.session)))
    if args.json:
        output.dump_json(output.to_dict(s))
    else:
        print(output.session_detail(s))
    return ExitCode.OK


def cmd_fallback(args: argparse.Namespace) -> int:
    s = run(
        with_agent(args, lambda c: c.set_fallback_mode(args.session, FALLBACK_MODES[args.mode]))
    )
    if args.json:
        output.dump_json(output.to_dict(s))
    else:
        print(f"{s.path}: fallback {args.mode}")
    return ExitCode.OK


def cmd_status(args: argparse.Namespace) -> int:
    async def go(c: AgentClient) -> tuple[str, pb.GetStatusResponse]:
        if args.wait:
            # a script that just started the agent: wait for it and its link, then
            # report whatever the state is (the exit code says if the link is up)
            with contextlib.suppress(CtlError):
                await c.wait_ready(args.wait, link_up=True)
        health = await c.health(timeout=args.rpc_timeout)
        return health, await c.get_status()

    health, st = run(with_agent(args, go))
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
            f"{verb} first: hotlinkctl open {shlex.quote(path)}",
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

    s = run(with_agent(args, go))
    total = sum(len(p) for p in payloads)
    if args.json:
        output.dump_json({"path": s.path, "frames": len(payloads), "bytes": total})
    else:
        say(args, f"sent {len(payloads)} frame(s), {total} bytes on {s.path}")
        if not s.readers:
            # not an error (readers catch up), but say where it went
            say(args, no_reader_yet(s))
    return ExitCode.OK


def cmd_tail(args: argparse.Namespace) -> int:
    async def go(c: AgentClient) -> int:
        s = await _session_dir(c, args.path, pb.ROLE_READER)

        def reconnected(st: Stream) -> None:
            say(args, f"tail: reconnected to {st.endpoint}")

        stream = await ReconnectingStream.connect(
            s.session_dir,
            timeout=args.connect_timeout,
            retry_for=0.0 if args.no_reconnect else args.reconnect_for,
            still_open=session_still_open(c, s.path, args.rpc_timeout),
            on_reconnect=reconnected,
        )
        say(args, f"tail: connected to {stream.endpoint} ({s.path}); Ctrl-C to stop")
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
        except StreamClosed as exc:
            if args.count is None:  # tail until the end: the session ending it is normal
                say(args, f"tail: {exc.message}")
                return ExitCode.OK
            raise
        finally:
            await stream.close()
        return ExitCode.OK

    return run(with_agent(args, go))


def cmd_watch(args: argparse.Namespace) -> int:
    async def go(c: AgentClient) -> int:
        await c.health(timeout=args.rpc_timeout)
        say(args, f"watching events of the agent at {c.display_addr}; Ctrl-C to stop")
        n = 0
        events = c.watch_events()
        try:
            while args.count is None or n < args.count:
                try:
                    ev = await asyncio.wait_for(anext(events), args.idle_timeout)
                except StopAsyncIteration:
                    say(args, "watch: the agent ended the stream")
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

    return run(with_agent(args, go))


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the session commands to `hotlinkctl`'s parser (`add` makes a subcommand)."""
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
        "--direct",
        choices=list(DIRECT_MODES),
        default="default",
        help="direct peer-to-peer path for this session: auto (an encrypted TCP link to "
        "each peer, relay while it is down), off (relay and files only), or default (the "
        "agent's --direct, itself auto unless set); an agent started with --direct off "
        "keeps every session off",
    )
    p.add_argument(
        "--require-link", action="store_true", help="fail (exit 6) if the relay link is down"
    )
    p.add_argument(
        "--timeout",
        type=SECONDS,
        default=None,
        metavar="S",
        help="wait up to S seconds for the session to go live (OPEN); still PENDING then: "
        "exit 6 saying why. Without it a sender waits for the relay's verdict (the "
        "agent's --open-timeout) and a PENDING session is reported with its reason, exit 0",
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

    p = add(
        "status",
        "agent status: link, counters, sessions (exit 6 if the link is not up)",
        cmd_status,
    )
    p.add_argument(
        "--wait",
        type=SECONDS,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for the agent to answer and its relay link to be up "
        "(for scripts that just started it)",
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
    p.add_argument("--connect-timeout", type=SECONDS, default=10.0, metavar="S")

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
        type=SECONDS,
        default=None,
        metavar="S",
        help="give up (exit 6) when no frame arrives for S seconds",
    )
    p.add_argument("--connect-timeout", type=SECONDS, default=10.0, metavar="S")
    p.add_argument(
        "--reconnect-for",
        type=SECONDS,
        default=None,
        metavar="S",
        help="when the agent restarts, wait up to S seconds for it to serve the session "
        "again (default: as long as the agent does not say the session is closed)",
    )
    p.add_argument(
        "--no-reconnect", action="store_true", help="exit when the agent closes the stream"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no status lines on stderr")

    p = add("watch", "print agent events (opens, accepts, link up/down ...)", cmd_watch)
    p.add_argument("--count", type=int, metavar="N", help="exit after N events")
    p.add_argument(
        "--idle-timeout",
        type=SECONDS,
        default=None,
        metavar="S",
        help="stop after S seconds without an event (exit 6 if --count was not reached)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no status lines on stderr")
