"""Sans-I/O tunnel multiplexer: many TCP connections over one pair of sessions.

One `Mux` per (tunnel, peer). It takes events (a frame from the peer's session, bytes
or EOF or loss on a local TCP connection, bytes written out, a target connect result,
the clock) and returns effects (a frame to send on our session, bytes to write, pause
or resume reading, half-close, close, abort). No sockets, tasks or clocks inside: the
asyncio adapter (`tcp.py`, `peer.py`) moves bytes; this class decides.

Flow control is per connection and credit based (like HTTP/2 or SSH channels): a side
may have at most `window` bytes in flight that the other side has not yet written
to its TCP socket. So a slow reader on one end stops the writer on the other end
(its TCP reads are paused), memory per stream and direction is bounded by `window`
plus one TCP read, and one stalled connection never blocks the others in the session.

Connections that cannot be kept are aborted on both ends (RST): the target refused,
the peer reset it, the peer's mux restarted (a new HELLO epoch), the peer was silent
for `peer_timeout` while connections were open, or the open was not answered within
`connect_timeout`. A connection never waits forever with bytes missing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from hotlink.wire.errors import ProtocolError

from .frames import Kind, MuxFrame, decode, encode, encode_data_header

#: Largest DATA body: big enough for throughput, small enough to interleave connections.
MAX_CHUNK = 256 * 1024
DEFAULT_WINDOW = 1 << 20
#: the window range a tunnel accepts (it travels as a u32 in OPEN / OPEN_OK)
MIN_WINDOW = 1024
MAX_WINDOW = 1 << 30
DEFAULT_CONNECT_TIMEOUT = 15.0
DEFAULT_PEER_TIMEOUT = 60.0
PING_INTERVAL = 5.0


class Side(enum.IntEnum):
    #: the peer that listens locally and forwards connections (`tunnel forward`)
    FORWARD = 1
    #: the path owner that connects to the real server (`tunnel expose`)
    EXPOSE = 2


# --- effects -------------------------------------------------------------------------


@dataclass(slots=True)
class Send:
    """Write this payload as one frame on our session towards the peer."""

    payload: bytes


@dataclass(slots=True)
class Connect:
    """Expose side: open a TCP connection to the target for `conn`."""

    conn: int


@dataclass(slots=True)
class Write:
    conn: int
    data: bytes


@dataclass(slots=True)
class ShutdownWrite:
    """The peer half-closed: half-close our TCP end (write EOF)."""

    conn: int


@dataclass(slots=True)
class Close:
    """Both directions finished: close the TCP end after what is buffered."""

    conn: int


@dataclass(slots=True)
class Abort:
    """Reset the TCP end (RST): the stream cannot be kept."""

    conn: int
    reason: str


@dataclass(slots=True)
class PauseRead:
    conn: int


@dataclass(slots=True)
class ResumeRead:
    conn: int


@dataclass(slots=True)
class Opened:
    """The connection carries data both ways now (for spans and counters)."""

    conn: int


@dataclass(slots=True)
class Ended:
    """The connection is gone; `clean` when both directions finished with FIN."""

    conn: int
    reason: str
    clean: bool
    bytes_in: int
    bytes_out: int


Effect = Send | Connect | Write | ShutdownWrite | Close | Abort | PauseRead | ResumeRead
Effect = Effect | Opened | Ended


class ConnState(enum.Enum):
    OPENING = "opening"
    OPEN = "open"


@dataclass(slots=True)
class Conn:
    id: int
    state: ConnState
    deadline: float = 0.0
    #: bytes we may still send to the peer
    credit: int = 0
    #: bytes read from our TCP end that wait for credit
    outbuf: bytearray = field(default_factory=bytearray)
    local_eof: bool = False
    fin_sent: bool = False
    fin_recv: bool = False
    paused: bool = False
    #: bytes the peer sent that our TCP end has not taken yet
    in_flight: int = 0
    #: bytes written out since the last CREDIT
    consumed: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass(slots=True)
class MuxCounters:
    connections: int = 0  # opened (both ways) over the mux's life
    active: int = 0  # open or opening now
    bytes_in: int = 0  # peer -> local TCP
    bytes_out: int = 0  # local TCP -> peer
    resets: int = 0  # connections that ended with RST (either side)
    refused: int = 0  # opens the target (or the peer) refused / never answered
    last_refusal: str = ""  # why the last of those did not get through


class Mux:
    def __init__(
        self,
        side: Side,
        *,
        epoch: int,
        now: float,
        window: int = DEFAULT_WINDOW,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        peer_timeout: float = DEFAULT_PEER_TIMEOUT,
        counters: MuxCounters | None = None,
        first_id: int = 1,
    ) -> None:
        if window < MIN_WINDOW:
            raise ValueError(f"tunnel window must be at least {MIN_WINDOW} bytes")
        self.side = side
        self.epoch = epoch
        self.window = window
        self.chunk = min(MAX_CHUNK, window)
        self.connect_timeout = connect_timeout
        self.peer_timeout = peer_timeout
        self.conns: dict[int, Conn] = {}
        self.peer_epoch = 0
        #: The adapter starts each instance at a random id: the peer may still send
        #: frames about the previous instance's connections until it has seen our new
        #: HELLO, and those must not land on a new connection with the same id.
        self.next_id = min(max(1, first_id), 0xFFFFFFFF)
        self.last_rx = now
        self.last_ping = now
        #: may be shared with the mux instances before this one (totals per peer)
        self.counters = counters if counters is not None else MuxCounters()
        self.bad_frames = 0

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> list[Effect]:
        """First frame of this mux instance on the session: our epoch."""
        return [Send(encode(Kind.HELLO, 0, self.epoch))]

    def shutdown(self, reason: str) -> list[Effect]:
        """The tunnel goes away: every connection is reset on both ends."""
        out: list[Effect] = []
        for c in list(self.conns.values()):
            out.append(Send(encode(Kind.RST, c.id, data=reason.encode())))
            self._end(c, reason, False, out, abort=True)
        return out

    # --- local TCP events -----------------------------------------------------------

    def accept(self, now: float) -> tuple[int, list[Effect]]:
        """Forward side: a client connected to the listen port."""
        if self.side is not Side.FORWARD:
            raise ValueError("only the forward side accepts connections")
        if not self.conns:  # liveness is judged only while connections exist
            self.last_rx = self.last_ping = now
        cid = self.next_id
        self.next_id = 1 if cid >= 0xFFFFFFFF else cid + 1
        c = Conn(cid, ConnState.OPENING, deadline=now + self.connect_timeout, paused=True)
        self.conns[cid] = c
        self.counters.active += 1
        return cid, [PauseRead(cid), Send(encode(Kind.OPEN, cid, self.window))]

    def connected(self, cid: int) -> list[Effect]:
        """Expose side: the target accepted our connection."""
        c = self.conns.get(cid)
        if c is None or c.state is not ConnState.OPENING:
            return [Abort(cid, "connection no longer wanted")]
        c.state = ConnState.OPEN
        self.counters.connections += 1
        out: list[Effect] = [Send(encode(Kind.OPEN_OK, cid, self.window)), Opened(cid)]
        if c.fin_recv:  # the client half-closed before the target answered
            out.append(ShutdownWrite(cid))
        return out

    def connect_failed(self, cid: int, reason: str) -> list[Effect]:
        c = self.conns.get(cid)
        if c is None:
            return []
        self.counters.refused += 1
        self.counters.last_refusal = f"target: {reason}"
        out: list[Effect] = [Send(encode(Kind.RST, cid, data=f"target: {reason}".encode()))]
        self._end(c, f"target: {reason}", False, out, abort=False)
        return out

    def tcp_data(self, cid: int, data: bytes) -> list[Effect]:
        c = self.conns.get(cid)
        if c is None or c.fin_sent:
            return []
        c.bytes_out += len(data)
        self.counters.bytes_out += len(data)
        out: list[Effect] = []
        if c.outbuf or c.state is not ConnState.OPEN:
            c.outbuf += data
        else:
            self._send_data(c, memoryview(data), out)
        if c.outbuf and not c.paused:
            c.paused = True
            out.append(PauseRead(cid))
        return out

    def tcp_eof(self, cid: int) -> list[Effect]:
        c = self.conns.get(cid)
        if c is None or c.local_eof:
            return []
        c.local_eof = True
        out: list[Effect] = []
        self._maybe_fin(c, out)
        return out

    def tcp_written(self, cid: int, n: int) -> list[Effect]:
        """`n` bytes the peer sent have left our buffers for the TCP socket."""
        c = self.conns.get(cid)
        if c is None:
            return []
        c.in_flight = max(0, c.in_flight - n)
        c.consumed += n
        if c.consumed >= self.window // 4:
            n, c.consumed = c.consumed, 0
            return [Send(encode(Kind.CREDIT, cid, n))]
        return []

    def tcp_lost(self, cid: int, reason: str) -> list[Effect]:
        """Our TCP end is gone (closed by the app, reset, or failed)."""
        c = self.conns.get(cid)
        if c is None:
            return []
        out: list[Effect] = []
        if c.local_eof and c.fin_sent and c.fin_recv and not c.outbuf:
            self._end(c, "closed", True, out, abort=False)
            return out
        out.append(Send(encode(Kind.RST, cid, data=reason.encode())))
        self._end(c, reason, False, out, abort=False)
        return out

    # --- frames from the peer ---------------------------------------------------------

    def receive(self, payload: bytes | memoryview, now: float) -> list[Effect]:
        self.last_rx = now
        try:
            f = decode(payload)
        except ProtocolError:
            self.bad_frames += 1
            return []
        return self.handle(f, now)

    def handle(self, f: MuxFrame, now: float) -> list[Effect]:
        k = f.kind
        if k is Kind.PING:
            return []
        if k is Kind.HELLO:
            return self._hello(f.value)
        c = self.conns.get(f.conn)
        if k is Kind.OPEN:
            if self.side is not Side.EXPOSE:
                return [Send(encode(Kind.RST, f.conn, data=b"not an expose side"))]
            if c is not None:
                return self._violation(c, "OPEN for an existing connection")
            if not self.conns:
                self.last_ping = now
            c = Conn(f.conn, ConnState.OPENING, credit=f.value)
            self.conns[f.conn] = c
            self.counters.active += 1
            return [Connect(f.conn)]
        if c is None:
            if k is Kind.RST:
                return []
            # a frame for a connection we no longer know (e.g. from before our restart)
            return [Send(encode(Kind.RST, f.conn, data=b"unknown connection"))]
        if c.state is ConnState.OPENING and k not in (Kind.OPEN_OK, Kind.RST):
            return []  # stale: about an older connection that had this id
        if k is Kind.OPEN_OK:
            if self.side is not Side.FORWARD or c.state is not ConnState.OPENING:
                return self._violation(c, "unexpected OPEN_OK")
            c.state = ConnState.OPEN
            c.credit = f.value
            self.counters.connections += 1
            out: list[Effect] = [Opened(c.id)]
            self._flush(c, out)
            return out
        if k is Kind.DATA:
            n = len(f.data)
            if c.fin_recv or c.in_flight + n > self.window:
                return self._violation(c, "data past FIN or over the window")
            c.in_flight += n
            c.bytes_in += n
            self.counters.bytes_in += n
            return [Write(c.id, f.data)]
        if k is Kind.CREDIT:
            c.credit += f.value
            out = []
            self._flush(c, out)
            return out
        if k is Kind.FIN:
            if c.fin_recv:
                return []
            c.fin_recv = True
            out = []
            if c.state is ConnState.OPEN:
                out.append(ShutdownWrite(c.id))
            self._maybe_done(c, out)
            return out
        if k is Kind.RST:
            reason = f.data.decode("utf-8", "replace") or "reset by peer"
            out = []
            if c.state is ConnState.OPENING:
                self.counters.refused += 1
                self.counters.last_refusal = reason
            self._end(c, reason, False, out, abort=True)
            return out
        return []

    # --- timers -----------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        if not self.conns:
            return None
        t = min(self.last_ping + PING_INTERVAL, self.last_rx + self.peer_timeout)
        for c in self.conns.values():
            if c.state is ConnState.OPENING and c.deadline:
                t = min(t, c.deadline)
        return t

    def handle_timer(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        if not self.conns:
            return out
        if now - self.last_rx >= self.peer_timeout:
            reason = f"peer silent for {self.peer_timeout:g}s"
            for c in list(self.conns.values()):
                out.append(Send(encode(Kind.RST, c.id, data=reason.encode())))
                self._end(c, reason, False, out, abort=True)
            return out
        for c in list(self.conns.values()):
            if c.state is ConnState.OPENING and c.deadline and now >= c.deadline:
                self.counters.refused += 1
                reason = f"no answer from the tunnel's other end in {self.connect_timeout:g}s"
                self.counters.last_refusal = reason
                out.append(Send(encode(Kind.RST, c.id, data=reason.encode())))
                self._end(c, reason, False, out, abort=True)
        if now - self.last_ping >= PING_INTERVAL:
            self.last_ping = now
            out.append(Send(encode(Kind.PING)))
        return out

    # --- internals --------------------------------------------------------------------

    def _hello(self, epoch: int) -> list[Effect]:
        out: list[Effect] = []
        if self.peer_epoch and epoch != self.peer_epoch:
            # The peer's mux restarted: its ends of our connections are gone. Frames on a
            # session stay in order, so everything before this HELLO came from the old
            # instance and everything after from the new one. The expose side resets all
            # its connections (the forwarder's OPENs for the new instance follow). The
            # forward side keeps connections still waiting for OPEN_OK: their OPEN may
            # yet reach the new instance (if the old one took it, the connect timeout
            # resets them).
            for c in list(self.conns.values()):
                if self.side is Side.EXPOSE or c.state is ConnState.OPEN:
                    self._end(c, "the other agent restarted", False, out, abort=True)
        self.peer_epoch = epoch
        return out

    def _send_data(self, c: Conn, data: memoryview, out: list[Effect]) -> memoryview:
        """Send as much of `data` as the credit allows; returns the rest."""
        chunk = self.chunk
        while data and c.credit > 0:
            n = min(len(data), c.credit, chunk)
            out.append(Send(encode_data_header(c.id) + data[:n]))
            c.credit -= n
            data = data[n:]
        if data:
            c.outbuf += data
        return data

    def _flush(self, c: Conn, out: list[Effect]) -> None:
        if c.state is not ConnState.OPEN:
            return
        if c.outbuf and c.credit > 0:
            buf = c.outbuf
            c.outbuf = bytearray()
            self._send_data(c, memoryview(buf), out)
        if not c.outbuf:
            if c.paused and not c.local_eof:
                c.paused = False
                out.append(ResumeRead(c.id))
            self._maybe_fin(c, out)

    def _maybe_fin(self, c: Conn, out: list[Effect]) -> None:
        if c.local_eof and not c.fin_sent and not c.outbuf and c.state is ConnState.OPEN:
            c.fin_sent = True
            out.append(Send(encode(Kind.FIN, c.id)))
            self._maybe_done(c, out)

    def _maybe_done(self, c: Conn, out: list[Effect]) -> None:
        if c.fin_sent and c.fin_recv:
            out.append(Close(c.id))
            self._end(c, "closed", True, out, abort=False)

    def _violation(self, c: Conn, why: str) -> list[Effect]:
        out: list[Effect] = [Send(encode(Kind.RST, c.id, data=why.encode()))]
        self._end(c, f"protocol error: {why}", False, out, abort=True)
        return out

    def _end(self, c: Conn, reason: str, clean: bool, out: list[Effect], *, abort: bool) -> None:
        if self.conns.pop(c.id, None) is None:
            return
        self.counters.active -= 1
        if not clean:
            self.counters.resets += 1
        if abort:
            out.append(Abort(c.id, reason))
        out.append(Ended(c.id, reason, clean, c.bytes_in, c.bytes_out))

    def open_ids(self) -> Iterable[int]:
        return self.conns.keys()
