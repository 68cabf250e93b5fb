"""Wiring: config -> link + sessions + control server, lifecycle and signals."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import ssl
import sys
from collections.abc import Callable
from pathlib import Path

from hotlink import telemetry
from hotlink.common import hot_modules, locks
from hotlink.telemetry import names as N

from .config import AgentConfig
from .control import EventBus, start_control_server
from .direct.service import DirectService
from .ipc import EndpointRegistry
from .link import WsLink
from .pubsync import PubSync
from .runtime_dir import default_runtime_dir, ensure_private_dir
from .sessions import SessionManager
from .state import StateKeeper, load_state
from .tls import cleartext_warning, client_context
from .tokenfile import foreign_subject, permission_problem
from .tracing import AgentTracer
from .tunnels.control import TunnelServicer
from .tunnels.manager import TunnelManager
from .tunnels.tracing import TunnelTracer
from .watcher import RequestWatcher, default_backend

log = logging.getLogger("hotlink.agent")


class StartupError(RuntimeError):
    """The agent cannot start (bad token file, insecure directories, ...)."""


class FatalError(StartupError):
    """The agent ran but had to stop for good (the relay knows its token as another
    user): restarting it as it is cannot help, so it exits non-zero."""


def read_token(cfg: AgentConfig) -> str:
    try:
        token = cfg.token_file.read_text().strip()
    except OSError as exc:
        raise StartupError(f"cannot read token file {cfg.token_file}: {exc}") from None
    if not token:
        raise StartupError(f"token file {cfg.token_file} is empty")
    problem = permission_problem(cfg.token_file)
    if problem:
        log.warning("%s", problem)
    sub = foreign_subject(token, cfg.email)
    if sub:
        raise StartupError(
            f"token file {cfg.token_file} holds a token for {sub}, but this agent is "
            f"{cfg.email} (--email); use a token minted for {cfg.email}: "
            f"hotlink-relay token {cfg.email} --data DIR --out FILE"
        )
    return token


def token_reader(cfg: AgentConfig) -> Callable[[], str]:
    """What the link calls to re-read the token file before each attempt (so a token
    rotated on disk is used without a restart). "" keeps the token in use: an empty
    file (being rewritten) or a token for another user (logged once per token)."""
    warned = ""

    def read() -> str:
        nonlocal warned
        token = cfg.token_file.read_text().strip()
        sub = foreign_subject(token, cfg.email)
        if sub:
            if token != warned:
                warned = token
                log.warning(
                    "token file %s now holds a token for %s, not %s: ignored",
                    cfg.token_file, sub, cfg.email,
                )  # fmt: skip
            return ""
        return token

    return read


LOCK_NAME = "agent.lock"


def lock_root(hl_dir: Path) -> int:
    """Hold `ROOT/.hotlink/agent.lock` (flock) for the agent's lifetime: one agent per
    root. A second agent on the same root must fail *before* it touches anything of
    the running one (its endpoint files, state.json, the session sockets), whatever
    --control it was given. Returns the fd to close at exit (without flock, on
    Windows, the control socket check is all there is)."""
    try:
        return locks.acquire(hl_dir / LOCK_NAME, wait=False)
    except OSError:
        raise StartupError(
            f"another agent is running on the root {hl_dir.parent} "
            f"({hl_dir / LOCK_NAME} is held); stop it first"
        ) from None


async def run_agent(cfg: AgentConfig, stop: asyncio.Event | None = None) -> None:
    token = read_token(cfg)
    hl_dir = cfg.root / ".hotlink"
    try:
        ensure_private_dir(hl_dir, fix_mode=True)
    except OSError as exc:
        raise StartupError(f"control directory: {exc}") from None
    lock = lock_root(hl_dir)
    try:
        await _run_agent(cfg, token, stop)
    finally:
        os.close(lock)


async def _run_agent(cfg: AgentConfig, token: str, stop: asyncio.Event | None) -> None:
    try:
        watcher_backend = default_backend()
    except ValueError as exc:  # a bad HOTLINK_WATCHER
        raise StartupError(str(exc)) from None
    stop = stop or asyncio.Event()
    #: why the link gave up for good (the relay knows our token as another user)
    fatal: list[str] = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    hl_dir = cfg.root / ".hotlink"
    runtime_dir = default_runtime_dir()
    if sys.platform != "win32":
        try:
            ensure_private_dir(runtime_dir)
        except OSError as exc:
            # Only sessions with long socket paths need it; they fail (and say why).
            log.warning("runtime dir unusable, long session paths will fail: %s", exc)
    (cfg.root / "datasites" / cfg.email).mkdir(parents=True, exist_ok=True)

    registry = EndpointRegistry(hl_dir / "endpoints.json")
    stale = registry.clean_stale()
    if stale:
        log.info("removed %d stale endpoint files of a previous run", len(stale))

    for url in cfg.servers:
        warning = cleartext_warning(url, cfg.ca_file)
        if warning:
            log.warning("%s", warning)
    try:
        # one trust store for every wss:// node of the list (ws:// ones connect without)
        tls_url = next((u for u in cfg.servers if u.startswith("wss://")), "")
        ssl_context = client_context(tls_url, cfg.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"--ca-file {cfg.ca_file}: {exc}") from None
    link = WsLink(
        cfg.servers,
        token,
        max_message=cfg.max_message,
        backoff_initial=cfg.backoff_initial,
        backoff_max=cfg.backoff_max,
        expect_user=cfg.email,
        on_fatal=lambda reason: (fatal.append(reason), stop.set()),
        ssl_context=ssl_context,
        token_loader=token_reader(cfg),
    )
    bus = EventBus()
    mgr = SessionManager(cfg, link, runtime_dir=runtime_dir, registry=registry, emit=bus.emit)
    tel = telemetry.setup(
        cfg.tracing, service_name=N.SERVICE_AGENT, resource_attrs={N.RES_PEER_EMAIL: cfg.email}
    )
    if tel.enabled:
        link.tracer = mgr.tracer = AgentTracer(tel, mgr)
    pub = PubSync(cfg.root, cfg.email, link, cfg.pub_scan_interval)
    mgr.link_up_hooks.append(pub.on_link_up)
    mgr.ack_hooks.append(pub.on_ack)
    tunnels = TunnelManager(
        mgr,
        publish=pub.rescan,
        state_path=hl_dir / "tunnels.json" if cfg.restore_sessions else None,
        window=cfg.tunnel_window,
        peer_timeout=cfg.tunnel_peer_timeout,
        tracer=TunnelTracer(tel) if tel.enabled else None,
        subscribe=bus.subscribe,
    )
    # the saved tunnels' ports before the direct listener's port 0 can land on one
    await tunnels.bind_saved()
    direct: DirectService | None = None
    if cfg.direct != "off":
        try:
            direct = DirectService(mgr)
        except (OSError, ValueError) as exc:  # a bad HOTLINK_DIRECT_KEY_BYTES or key file
            raise StartupError(f"direct path: {exc}") from None
        try:
            await direct.start()
        except (OSError, ValueError) as exc:
            raise StartupError(f"--direct-listen: {exc}") from None

    servicer = TunnelServicer(mgr, bus, cfg.server).with_tunnels(tunnels)
    try:
        server, health_servicer = await start_control_server(servicer, cfg.control, cfg.control_tcp)
    except (OSError, RuntimeError, ValueError) as exc:
        raise StartupError(f"control API: {exc}") from None
    await pub.rescan()  # prime the ACL files before the first link up
    registry.go_async()
    keeper: StateKeeper | None = None
    if cfg.restore_sessions:
        state_path = hl_dir / "state.json"
        saved = load_state(state_path)
        if saved is not None and saved.sessions:
            n = await mgr.restore(saved)
            log.info(
                "restored %d of %d sessions of the previous run (%s shutdown)",
                n,
                len(saved.sessions),
                "clean" if saved.clean else "unclean",
            )
        keeper = StateKeeper(state_path, mgr.snapshot_state)
        keeper.start()
    n_tunnels = await tunnels.restore()
    if n_tunnels:
        log.info("restored %d tunnels of the previous run", n_tunnels)
    watcher = RequestWatcher(
        cfg.root / "datasites" / cfg.email,
        mgr.on_watched,
        on_acl=pub.request_rescan,
        backend=watcher_backend,
    )
    watcher.start()
    await mgr.files.load_mirror()
    await link.start()
    pub_task = loop.create_task(pub.run(), name="hotlink-pubsync")
    # Startup objects never die: keep them out of the collector's way on the hot path.
    gc.collect()
    gc.freeze()
    hot_modules.log_status(log)
    await health_servicer.set("", health_pb2_serving())
    log.info(
        "hotlink-agent %s for %s serving control on %s%s",
        os.getpid(),
        cfg.email,
        cfg.control,
        f" and {cfg.control_tcp}" if cfg.control_tcp else "",
    )
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await health_servicer.enter_graceful_shutdown()
        pub_task.cancel()
        await tunnels.shutdown()
        await pub.stop()
        await watcher.stop()
        mgr.spill_all()
        await mgr.files.close()
        if keeper is not None:
            await keeper.close()
        mgr.close_all()
        if direct is not None:
            await direct.close()
        registry.go_sync()
        await link.stop()
        with contextlib.suppress(Exception):
            await server.stop(0.5)
        with contextlib.suppress(OSError):
            cfg.control.unlink()
        tel.shutdown()  # export what is still queued
    if fatal:
        raise FatalError(fatal[0])


def health_pb2_serving() -> int:
    from grpc_health.v1 import health_pb2

    return health_pb2.HealthCheckResponse.SERVING
