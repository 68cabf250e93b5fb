"""Session IPC endpoints (`stream.sock`, `stream.tcp`) and app connections.

One `IpcEndpoint` per session serves any number of app connections. Each connection
is an `asyncio.Protocol` (no StreamReader/Writer): bytes go straight into a
`FrameDecoder` (whose length check runs before any buffering, so a hostile length
prefix cannot make the agent allocate) and frames out with
`transport.writelines((header, payload))`.

Back-pressure toward a slow reader app (`AppConnection.write`): frames go straight to
the socket while its write buffer is under `buffer_bytes`. Above that the transport
pauses us and further frames wait in a per-connection queue of at most `queue_limit`
frames and `queue_bytes` bytes. When that queue is full the app is too slow: its
connection is aborted with a logged reason, the frames it did not get (queued ones
plus the one that overflowed) are counted as drops for the session, and it can
reconnect to read from then on.
One slow app therefore costs bounded memory and never delays other apps or
sessions: nothing on the data path ever waits for it.

A TCP endpoint (`stream.tcp`) is reachable by every local user: a connection is
served only if `/proc/net/tcp{,6}` proves its client belongs to the agent's user, or
if it first presents the endpoint's session cookie (`hotlink.wire.cookie`, from the
0600 file `stream.tcp.cookie` next to the marker). Anything else is closed with a
logged reason (fail closed: an owner that cannot be found is not the agent's user).

Malformed input (bad magic/version, oversized or non-UTF-8 header fields, unsafe
path, a partial frame at EOF) closes only that connection, with a logged reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from hotlink.wire.cookie import COOKIE_NAME, CookieCheck, Verdict, cookie_text, new_cookie
from hotlink.wire.errors import ProtocolError
from hotlink.wire.frames import Frame, FrameDecoder, header_seq

from .budget import ByteBudget
from .peercred import peer_is_us
from .runtime_dir import (
    bind_unix_socket,
    ensure_private_dir,
    is_windows,
    pipe_name,
    unix_socket_location,
    write_file_atomic,
)

log = logging.getLogger("hotlink.agent.ipc")

MODE_UNIX = 1
MODE_TCP = 2
MODE_PIPE = 3
#: Seconds a TCP client that is not provably the agent's user has to send its cookie.
AUTH_TIMEOUT = 10.0


class EndpointOwner(Protocol):
    """What an endpoint needs from its session."""

    path: str

    def app_connected(self, conn: AppConnection) -> None: ...

    def app_disconnected(self, conn: AppConnection) -> None: ...

    def app_frames(self, conn: AppConnection, frames: list[Frame]) -> None: ...

    def app_dropped(self, conn: AppConnection, frames: int, first: int) -> None: ...

    def app_dropped_revised(self, conn: AppConnection, was: int, first: int) -> None: ...


def _writes_after_abort(t: asyncio.BaseTransport) -> bool:
    """uvloop's `abort()` closes the handle only when `connection_lost` runs, and its
    queued writes go on until then; asyncio's drops its buffer at once."""
    return type(t).__module__.startswith("uvloop")


class AppConnection(asyncio.Protocol):
    """One app on a session endpoint. See the module docstring for back-pressure."""

    __slots__ = (
        "auth",
        "auth_timer",
        "backlog",
        "backlog_bytes",
        "budget",
        "buffer_bytes",
        "closed",
        "cookie",
        "decoder",
        "is_sender",
        "lost_from",
        "marks",
        "owner",
        "paused",
        "peer",
        "queue_bytes",
        "queue_limit",
        "registered",
        "transport",
        "uid_ok",
        "written",
    )

    def __init__(
        self,
        owner: EndpointOwner,
        *,
        is_sender: bool,
        max_payload: int,
        queue_limit: int,
        buffer_bytes: int,
        queue_bytes: int,
        budget: ByteBudget | None = None,
        cookie: bytes = b"",
    ) -> None:
        self.owner = owner
        self.is_sender = is_sender
        self.decoder = FrameDecoder(max_payload)
        self.queue_limit = queue_limit
        self.buffer_bytes = buffer_bytes
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.backlog: deque[tuple[bytes, bytes]] = deque()
        self.queue_bytes = queue_bytes
        self.backlog_bytes = 0
        self.closed = False
        self.registered = False
        self.peer = ""
        #: agent-wide bound shared with every reader queue (`budget.py`)
        self.budget = budget if budget is not None else ByteBudget()
        #: TCP endpoints: the session cookie, the preamble reader while the connection
        #: has not yet shown one or its first frame, and whether its uid is ours
        self.cookie = cookie
        self.auth: CookieCheck | None = None
        self.auth_timer: asyncio.TimerHandle | None = None
        self.uid_ok = False
        #: bytes handed to the transport, and (end offset, frame header) of frames
        #: handed to it that may still sit in its buffer (see `flushed_seq`)
        self.written = 0
        self.marks: deque[tuple[int, bytes]] = deque()
        #: dropped as too slow: the first seq it was found not to have (0: not dropped)
        self.lost_from = 0

    # asyncio callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"
        self.transport.set_write_buffer_limits(high=self.buffer_bytes)  # type: ignore[union-attr]
        if isinstance(peer, tuple):
            sock = transport.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.uid_ok = peer_is_us(peer, transport.get_extra_info("sockname"))
            if self.cookie:
                self.auth = CookieCheck(self.cookie)
            if not self.uid_ok:
                if self.auth is None:
                    self.fail("TCP client is not provably this user's (uid check failed)")
                    return
                # Served once it shows the cookie; until then it is not registered.
                self.auth_timer = asyncio.get_running_loop().call_later(
                    AUTH_TIMEOUT, self._auth_timeout
                )
                return
        self.registered = True
        self.owner.app_connected(self)

    def _auth_timeout(self) -> None:
        self.auth_timer = None
        if not self.closed and not self.registered:
            self.fail(f"no session cookie within {AUTH_TIMEOUT:g}s")

    def _check_cookie(self, data: bytes) -> bytes | None:
        """Consume the optional cookie preamble; the bytes after it, or None when the
        connection must wait for more or was refused."""
        assert self.auth is not None
        verdict, rest = self.auth.feed(data)
        if verdict is Verdict.NEED_MORE:
            return None
        self.auth = None
        if verdict is Verdict.INVALID:
            self.fail("wrong session cookie")
            return None
        if verdict is Verdict.ABSENT and not self.uid_ok:
            self.fail("TCP client is not provably this user's and sent no session cookie")
            return None
        if self.auth_timer is not None:
            self.auth_timer.cancel()
            self.auth_timer = None
        if not self.registered:
            self.registered = True
            self.owner.app_connected(self)
            if self.closed:
                return None
        return rest

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.auth is not None:
            rest = self._check_cookie(data)
            if not rest:
                return
            data = rest
        try:
            frames = self.decoder.feed(data)
            if frames and self.is_sender:
                self.owner.app_frames(self, frames)
            # Frames written to a reader endpoint have nowhere to go: ignored.
        except ProtocolError as exc:
            self.fail(f"malformed frame: {exc}")

    def eof_received(self) -> bool | None:
        try:
            self.decoder.close()
        except ProtocolError as exc:
            log.warning("app connection on %s closed: %s", self.owner.path, exc)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.auth_timer is not None:
            self.auth_timer.cancel()
            self.auth_timer = None
        t = self.transport
        if self.lost_from and t is not None and _writes_after_abort(t):
            # uvloop went on writing the buffer between abort() and now: the app may
            # have more than counted then (re-sending that would duplicate it)
            first = self._first_unflushed(b"")
            if first > self.lost_from:
                self.owner.app_dropped_revised(self, self.lost_from, first)
        self._clear_backlog()
        self.transport = None
        if self.registered:
            self.registered = False
            self.owner.app_disconnected(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        bl = self.backlog
        t = self.transport
        while bl and not self.paused and t is not None:
            h, p = bl.popleft()
            t.writelines((h, p))
            n = len(h) + len(p)
            self.backlog_bytes -= n
            self.budget.give(n)
            self.written += len(h) + len(p)
            self.marks.append((self.written, h))

    # data path -----------------------------------------------------------------

    def write(self, header: bytes, payload: bytes) -> bool:
        """Queue one frame for this app; False if the connection is (now) gone."""
        if self.closed:
            return False
        if self.paused or self.backlog:
            size = len(header) + len(payload)
            over_agent = False
            if (
                len(self.backlog) >= self.queue_limit
                or self.backlog_bytes + size > self.queue_bytes
                or (over_agent := not self.budget.take(size))
            ):
                n = len(self.backlog) + 1
                log.warning(
                    "reader app on %s too slow: %d frames / %d bytes queued beyond a %d-byte "
                    "socket buffer (limits %d frames, %d bytes; %s); disconnecting it (%d "
                    "frames dropped for it)",
                    self.owner.path,
                    len(self.backlog),
                    self.backlog_bytes,
                    self.buffer_bytes,
                    self.queue_limit,
                    self.queue_bytes,
                    f"agent-wide bound of {self.budget.limit} bytes reached"
                    if over_agent
                    else "session bound reached",
                    n,
                )
                first = self.lost_from = self._first_unflushed(header)
                self._clear_backlog()
                self._abort()
                self.owner.app_dropped(self, n, first)
                return False
            self.backlog.append((header, payload))
            self.backlog_bytes += size
            return True
        t = self.transport
        if t is None:
            return False
        t.writelines((header, payload))
        self.written += len(header) + len(payload)
        self.marks.append((self.written, header))
        return True

    def _first_unflushed(self, header: bytes) -> int:
        """The seq of the oldest frame this app has not got: still in the transport's
        buffer, else in our backlog, else `header`'s (the frame being written; none:
        the one after the last written)."""
        t = self.transport
        out = self.written - (t.get_write_buffer_size() if t is not None else 0)
        for end, h in self.marks:
            if end > out:
                return header_seq(h)
        if self.backlog:
            return header_seq(self.backlog[0][0])
        if header:
            return header_seq(header)
        return header_seq(self.marks[-1][1]) + 1 if self.marks else self.lost_from

    def flushed_seq(self, last: int) -> int:
        """The seq of the last frame wholly handed to the kernel (it reaches the app
        even if the agent dies now; `last` when nothing is held in user space). Frames
        still in the transport's buffer or our backlog are not: they die with the agent,
        so reporting them as delivered would let the sender forget frames the app never
        got."""
        marks = self.marks
        t = self.transport
        if t is None or self.closed:  # (the marks stay: `connection_lost` may need them)
            return last
        out = self.written - t.get_write_buffer_size()
        while marks and marks[0][0] <= out:
            marks.popleft()
        if marks:  # the oldest frame not yet in the kernel, less one
            return header_seq(marks[0][1]) - 1
        if self.backlog:
            return header_seq(self.backlog[0][0]) - 1
        return last

    # control -------------------------------------------------------------------

    def _clear_backlog(self) -> None:
        self.backlog.clear()
        self.budget.give(self.backlog_bytes)
        self.backlog_bytes = 0

    def fail(self, reason: str) -> None:
        log.warning("closing app connection on %s (%s): %s", self.owner.path, self.peer, reason)
        self._abort()

    def _abort(self) -> None:
        self.closed = True
        t = self.transport
        if t is not None:
            t.abort()

    def close(self) -> None:
        """Graceful: flush what the socket already has, then close."""
        if self.closed:
            return
        self.closed = True
        t = self.transport
        if t is not None:
            bl = self.backlog
            while bl:
                t.writelines(bl.popleft())
            self.budget.give(self.backlog_bytes)
            self.backlog_bytes = 0
            t.close()

    def pause_reading(self) -> None:
        t = self.transport
        if t is not None and not self.closed:
            t.pause_reading()

    def resume_reading(self) -> None:
        t = self.transport
        if t is not None and not self.closed:
            t.resume_reading()


class IpcEndpoint:
    """The listening endpoint of one session, plus the marker file apps resolve."""

    def __init__(
        self,
        owner: EndpointOwner,
        session_dir: Path,
        mode: int,
        *,
        is_sender: bool,
        runtime_dir: Path,
        max_payload: int,
        queue_limit: int,
        buffer_bytes: int,
        queue_bytes: int,
        tcp_addr: str = "",
        budget: ByteBudget | None = None,
    ) -> None:
        self.owner = owner
        self.session_dir = session_dir
        self.mode = mode
        self.is_sender = is_sender
        self.runtime_dir = runtime_dir
        self.tcp_addr = tcp_addr or "127.0.0.1:0"
        self.max_payload = max_payload
        self.queue_limit = queue_limit
        self.buffer_bytes = buffer_bytes
        self.queue_bytes = queue_bytes
        self.budget = budget
        #: TCP only: the secret apps present first (see the module docstring)
        self.cookie = b""
        self.server: asyncio.AbstractServer | None = None
        #: Windows named-pipe servers (ProactorEventLoop.start_serving_pipe)
        self._pipes: list[Any] = []
        self.endpoint = ""
        #: files this endpoint created (removed on close; recorded for stale cleanup)
        self.files: list[Path] = []

    def _factory(self) -> AppConnection:
        return AppConnection(
            self.owner,
            is_sender=self.is_sender,
            max_payload=self.max_payload,
            queue_limit=self.queue_limit,
            buffer_bytes=self.buffer_bytes,
            queue_bytes=self.queue_bytes,
            budget=self.budget,
            cookie=self.cookie,
        )

    async def start(self) -> str:
        loop = asyncio.get_running_loop()
        self.session_dir.mkdir(parents=True, exist_ok=True)
        if self.mode == MODE_UNIX:
            marker = self.session_dir / "stream.sock"
            sock_path, indirect = unix_socket_location(marker, self.runtime_dir)
            if indirect:
                ensure_private_dir(self.runtime_dir)
            sock = bind_unix_socket(sock_path)
            self.files.append(sock_path)
            try:
                self.server = await loop.create_unix_server(self._factory, sock=sock, backlog=128)
            except BaseException:
                sock.close()
                self._remove_files()
                raise
            if indirect:
                with contextlib.suppress(FileNotFoundError):
                    marker.unlink()
                write_file_atomic(marker, str(sock_path), 0o600)
                self.files.append(marker)
            self.endpoint = str(sock_path)
        elif self.mode == MODE_TCP:
            host, _, port = self.tcp_addr.rpartition(":")
            host = host.strip("[]")
            self.cookie = new_cookie()
            self.server = await loop.create_server(
                self._factory, host, int(port), reuse_address=True, backlog=128
            )
            addr = self.server.sockets[0].getsockname()
            self.endpoint = f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
            # The cookie before the marker: an app that finds the marker finds the cookie.
            cookie_file = self.session_dir / COOKIE_NAME
            write_file_atomic(cookie_file, cookie_text(self.cookie), 0o600)
            self.files.append(cookie_file)
            marker = self.session_dir / "stream.tcp"
            write_file_atomic(marker, self.endpoint, 0o600)
            self.files.append(marker)
        elif self.mode == MODE_PIPE:
            if not is_windows():
                raise ProtocolError("IPC mode PIPE is only available on Windows")
            # UNTESTED (no Windows CI): the Proactor loop, Windows' default, serves named
            # pipes with the same Protocol; stream.pipe holds the name, like stream.tcp.
            serve_pipe = getattr(loop, "start_serving_pipe", None)
            if serve_pipe is None:
                raise NotImplementedError("named pipes need the Proactor event loop")
            name = pipe_name(self.session_dir)
            self._pipes = await serve_pipe(self._factory, name)
            self.endpoint = name
            marker = self.session_dir / "stream.pipe"
            write_file_atomic(marker, name)
            self.files.append(marker)
        else:
            raise ProtocolError(f"unknown IPC mode {self.mode}")
        return self.endpoint

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for pipe in self._pipes:
            pipe.close()
        self._pipes = []
        self._remove_files()

    def _remove_files(self) -> None:
        for f in self.files:
            with contextlib.suppress(OSError):
                f.unlink()
        self.files = []


class EndpointRegistry:
    """Files of live endpoints, kept in `ROOT/.hotlink/endpoints.json` (a 0700 dir).

    Rewritten when a session opens or closes (never on the data path). On start,
    `clean_stale()` removes what a previous agent that died without cleanup left.
    Only socket files and marker files with endpoint names are ever removed.
    """

    NAMES = ("stream.sock", "stream.tcp", "stream.pipe", COOKIE_NAME)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: set[str] = set()
        self._executor: ThreadPoolExecutor | None = None

    def go_async(self) -> None:
        """From now on, save in one worker thread (in order), off the event loop."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="hotlink-registry")

    def go_sync(self) -> None:
        """Wait for pending saves and save synchronously again (shutdown)."""
        ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=True)
        self._save()

    def clean_stale(self) -> list[str]:
        removed: list[str] = []
        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError):
            old = []
        for name in old if isinstance(old, list) else []:
            p = Path(str(name))
            if p.name not in self.NAMES and not p.name.endswith(".sock"):
                continue
            with contextlib.suppress(OSError):
                st = os.lstat(p)
                if stat.S_ISSOCK(st.st_mode) or stat.S_ISREG(st.st_mode):
                    p.unlink()
                    removed.append(str(p))
        self._save()
        return removed

    async def add(self, files: list[Path]) -> None:
        """Saved before it returns: an agent killed right after OpenSession answered
        must still find these files to clean on its next start. The write is awaited,
        not waited for: the event loop keeps carrying the other sessions' frames."""
        self.files.update(str(f) for f in files)
        text = json.dumps(sorted(self.files))
        if self._executor is not None:  # keep the order with queued saves
            await asyncio.wrap_future(self._executor.submit(self._write, text))
        else:
            self._write(text)

    def remove(self, files: list[Path]) -> None:
        self.files.difference_update(str(f) for f in files)
        self._save()

    def _save(self) -> None:
        text = json.dumps(sorted(self.files))
        if self._executor is not None:
            self._executor.submit(self._write, text)
        else:
            self._write(text)

    def _write(self, text: str) -> None:
        try:
            write_file_atomic(self.path, text, 0o600)
        except OSError as exc:
            log.warning("cannot record endpoints in %s: %s", self.path, exc)
