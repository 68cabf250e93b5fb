"""The agent's direct path, asyncio glue: one listener, a negotiator per session, the
links handed to the sessions' cores.

Decisions live elsewhere: who offers, answers, connects and retries in
`negotiator.Negotiator` (sans-I/O); which frames take which link in
`core.sender_direct.DirectSenderStream`; the crypto in `handshake` / `records`. This
module only moves events between them:

- relay events of a session (ACCEPTED / CLOSED / REJECTED of a reader, the session's
  end) arrive through the manager's event stream (`on_event`); our signals and the
  relay's refusals of them through `on_message` (a `SessionManager.message_hooks`
  entry), so the manager needs no direct-path code;
- a link carries the relay's own wire encoding (`wire.envelope`): data frames from
  the sender (the reader feeds them to the same `ReaderSession.on_data` as relay
  frames: one reader code path, merged by seq) and `HotlinkProgress` from the reader
  (fed to the sender core like the relay's, with `frm` = the link's proven peer).
  Anything else on a link, or a frame of another session, closes it;
- a reader confirms its progress over its link every `PROGRESS_INTERVAL` while the
  link is up, so the sender's re-send window keeps moving with the relay down.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hotlink.common.sizes import parse_size
from hotlink.wire import messages as m
from hotlink.wire.envelope import Envelope, decode, encode
from hotlink.wire.errors import ProtocolError

from ..core.effects import EventType
from .addresses import parse_address
from .identity import IDENTITY_FILE, Identity, fingerprint, statement, verify
from .keys import DirectBinding, LocalKey
from .negotiator import (
    Claim,
    CloseLink,
    Connect,
    Effect,
    Expect,
    Forget,
    KeyOps,
    Negotiator,
    PathNews,
    PinPeer,
    Role,
    SendSignal,
    Token,
)
from .pins import PINS_FILE, PinStore
from .records import MAX_KEY_BYTES
from .transport import DirectConnectFailed, DirectLink, DirectListener, connect, default_listen

if TYPE_CHECKING:
    from ..session import Session
    from ..sessions import SessionManager

log = logging.getLogger("hotlink.agent.direct")

TICK = 0.1
PROGRESS_INTERVAL = 0.02
_DIRECT_OFF = 1


def _parse_public(text: str) -> bytes:
    return LocalKey.parse_public(text)


#: environment variable lowering records.MAX_KEY_BYTES (a size: `1GiB`, `512k`)
KEY_BYTES_ENV = "HOTLINK_DIRECT_KEY_BYTES"


def key_budget_from_env(env: Mapping[str, str] | None = None) -> int:
    """The per-key byte budget of direct links: MAX_KEY_BYTES unless HOTLINK_DIRECT_KEY_BYTES
    sets a lower one (more frequent re-keying: a fresh handshake each time). Raises
    ValueError naming the variable for a bad value."""
    raw = (os.environ if env is None else env).get(KEY_BYTES_ENV, "").strip()
    if not raw:
        return MAX_KEY_BYTES
    try:
        n = parse_size(raw, minimum=64 * 1024)
    except ValueError as exc:
        raise ValueError(f"{KEY_BYTES_ENV}: {exc}") from None
    return min(n, MAX_KEY_BYTES)


def key_ops(identity: Identity, pins: PinStore) -> KeyOps:
    """The negotiator's keys: fresh X25519 per leg, signed by `identity`, and a peer's
    signature checked against `pins` (identity.py, pins.py)."""

    def prove(c: Claim) -> tuple[str, str]:
        return identity.public_b64, identity.sign(statement(c))

    def vouch(peer: str, c: Claim, tok: Token) -> str:
        fp = fingerprint(verify(tok.identity, tok.signature, statement(c)))
        why = pins.refusal(peer, fp)
        if why:
            raise ValueError(why)
        return fp

    return KeyOps(LocalKey.generate, lambda k: k.public_b64(), _parse_public, prove, vouch)


class DirectService:
    """One per agent (only with direct not off for some session)."""

    def __init__(self, mgr: SessionManager) -> None:
        self.mgr = mgr
        self.cfg = mgr.cfg
        #: bytes a link's key seals per direction before the link is replaced
        self.key_bytes = key_budget_from_env()
        self.listener: DirectListener | None = None
        #: per session (by object id): its negotiator
        self.negs: dict[int, Negotiator] = {}
        self.sessions: dict[int, Session] = {}
        #: (session id, peer) -> open link (also in the sender session's `direct_links`)
        self.links: dict[tuple[int, str], DirectLink] = {}
        self.progress_sent: dict[int, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._draining: set[DirectLink] = set()
        self._tick: asyncio.TimerHandle | None = None
        self._emit: Callable[..., Any] = mgr.emit
        hl_dir = self.cfg.root / ".hotlink"
        self.identity = Identity.load_or_create(hl_dir / IDENTITY_FILE)
        self.pins = PinStore(hl_dir / PINS_FILE)
        self.keys = key_ops(self.identity, self.pins)

    async def start(self) -> None:
        listen = [parse_address(a) for a in self.cfg.direct_listen] or default_listen()
        self.listener = await DirectListener.start(listen, strict=bool(self.cfg.direct_listen))
        log.info(
            "direct path listening on %s%s; identity %s",
            ", ".join(self.listener.addresses),
            f" (advertised: {', '.join(self.cfg.direct_advertise)})"
            if self.cfg.direct_advertise
            else "",
            self.identity.fingerprint,
        )
        self.mgr.emit = self._on_emit
        self.mgr.message_hooks.append(self.on_message)
        self.mgr.direct = self  # type: ignore[attr-defined]

    async def close(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
        for t in list(self._tasks):
            t.cancel()
        for link in list(self.links.values()):
            link.close("agent stopping")
        self.links.clear()
        if self.listener is not None:
            await self.listener.close()

    def candidates(self) -> list[str]:
        own = list(self.listener.addresses) if self.listener else []
        return own + [a for a in self.cfg.direct_advertise if a not in own]

    # --- session events -------------------------------------------------------------

    def _on_emit(self, etype: EventType, s: Session | None, peer: str, reason: str) -> None:
        self._emit(etype, s, peer, reason)
        if s is None:
            return
        try:
            self.on_event(etype, s, peer)
        except Exception:
            log.exception("direct path: event %s of %s", etype.name, s.path)

    def on_event(self, etype: EventType, s: Session, peer: str) -> None:
        now = self.mgr.loop.time()
        if s.closed:
            self._drop(s, "session ended")
            return
        if not s.is_sender:
            return
        if etype is EventType.ACCEPTED and peer:
            neg = self._negotiator(s)
            if neg is not None:
                self._apply(s, neg, neg.reader_accepted(peer, now))
        elif etype in (EventType.CLOSED, EventType.REJECTED) and peer:
            neg = self.negs.get(id(s))
            if neg is not None:
                self._apply(s, neg, neg.reader_left(peer))

    def _negotiator(self, s: Session) -> Negotiator | None:
        neg = self.negs.get(id(s))
        if neg is not None and neg.sid != s.sid:
            # the session went on under a new id (its old one was refused): the legs
            # and keys were bound to the old id, so negotiate afresh
            self._drop(s, "session id changed")
            neg = None
        if neg is None:
            if not s.sid or (s.direct_mode == _DIRECT_OFF and s.is_sender):
                return None
            neg = Negotiator(
                Role.SENDER if s.is_sender else Role.READER,
                sid=s.sid,
                me=self.mgr.email,
                sender=s.sender,
                enabled=s.direct_mode != _DIRECT_OFF,
                candidates=self.candidates,
                keys=self.keys,
                window=0 if s.is_sender else s.rx.lim.reorder_window,  # type: ignore[attr-defined]
            )
            self.negs[id(s)] = neg
            self.sessions[id(s)] = s
            s.negotiator = neg
            self._arm()
        return neg

    def _drop(self, s: Session, reason: str) -> None:
        neg = self.negs.pop(id(s), None)
        self.sessions.pop(id(s), None)
        self.progress_sent.pop(id(s), None)
        if neg is not None:
            self._apply(s, neg, neg.close(reason))
        for key in [k for k in self.links if k[0] == id(s)]:
            self.links.pop(key).close(reason)

    # --- relay messages ----------------------------------------------------------------

    def on_message(self, env: Envelope) -> bool:
        """Our signals, and the relay's refusal of one (Error "signal: ..."); True when
        the message was for the direct path."""
        msg = env.msg
        if type(msg) is m.HotlinkSignal:
            s = self.mgr.by_sid.get(msg.sid)
            if s is None or s.closed:
                return True
            neg = self._negotiator(s)
            if neg is not None:
                self._apply(s, neg, neg.on_signal(msg, self.mgr.loop.time()))
            return True
        if type(msg) is m.Error and msg.message.startswith("signal: "):
            s = self.mgr.by_path.get(msg.path)
            neg = self.negs.get(id(s)) if s is not None else None
            if s is not None and neg is not None:
                for peer in list(neg.legs):
                    if peer in msg.message or not s.is_sender:
                        self._apply(s, neg, neg.relay_error(peer, msg.message))
            log.info("relay refused a direct-path signal: %s %s", msg.code, msg.message)
            return True
        return False

    # --- carrying out the negotiator's effects ------------------------------------------

    def _apply(self, s: Session, neg: Negotiator, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, SendSignal):
                try:
                    self.mgr.link.send(e.msg)
                except ConnectionError:
                    log.info("session %s: direct signal not sent (relay link down)", s.path)
            elif isinstance(e, Connect):
                self._spawn(self._connect(s, neg, e))
            elif isinstance(e, Expect):
                assert self.listener is not None
                binding = DirectBinding(e.sid, e.sender, e.reader, e.leg)
                on_link = functools.partial(self._link_up, s, s.sender, e.leg)
                self.listener.expect(e.key, e.peer_public, binding, on_link)
            elif isinstance(e, Forget):
                if self.listener is not None:
                    self.listener.forget(e.key)
            elif isinstance(e, CloseLink):
                link = self.links.get((id(s), e.reader if s.is_sender else s.sender))
                if link is not None and link.binding.leg == e.leg:
                    link.close(e.reason)
            elif isinstance(e, PathNews):
                self._path_news(s, e)
            elif isinstance(e, PinPeer):
                try:
                    self.pins.pin_first_use(e.peer, e.fingerprint)
                except OSError as exc:
                    log.warning("cannot pin the identity of %s: %s", e.peer, exc)

    def _path_news(self, s: Session, e: PathNews) -> None:
        log.info(
            "session %s: direct path to %s %s (%s)",
            s.path,
            e.peer,
            "up" if e.up else "not used",
            e.reason,
        )
        if s.is_sender:
            tx = s.tx  # type: ignore[attr-defined]
            if e.up:
                s.apply(tx.direct_link_up(e.peer, e.window))
            else:
                s.direct_links.pop(e.peer, None)  # type: ignore[attr-defined]
                s.apply(tx.direct_link_down(e.peer, e.reason))
        else:
            self._emit(EventType.PATH_SWITCHED, s, e.peer, e.reason)

    async def _connect(self, s: Session, neg: Negotiator, e: Connect) -> None:
        binding = DirectBinding(e.sid, e.sender, e.reader, e.leg)
        try:
            link = await connect(
                list(e.candidates), e.key, e.peer_public, binding, timeout=e.timeout
            )
        except DirectConnectFailed as exc:
            self._apply(s, neg, neg.connect_failed(e.reader, e.leg, str(exc), self.now()))
            return
        except OSError as exc:
            self._apply(s, neg, neg.connect_failed(e.reader, e.leg, str(exc), self.now()))
            return
        self._link_up(s, e.reader, e.leg, link)

    def _link_up(self, s: Session, peer: str, leg: str, link: DirectLink) -> None:
        neg = self.negs.get(id(s))
        if neg is None or s.closed:
            link.close("session ended")
            return
        if not neg.is_current(peer, leg):
            # an older negotiation finished late: the current leg's link (up or still
            # being made) is the one to keep
            link.close("stale leg")
            return
        old = self.links.pop((id(s), peer), None)
        if old is not None:
            old.close("replaced")
        self.links[(id(s), peer)] = link
        link.set_key_budget(self.key_bytes)
        link.on_message = lambda payload: self._on_link_message(s, peer, link, payload)
        link.closed.add_done_callback(lambda f: self._link_closed(s, peer, link, f))
        if s.is_sender:
            s.direct_links[peer] = link  # type: ignore[attr-defined]
        self._apply(s, neg, neg.connected(peer, leg))

    def _link_closed(self, s: Session, peer: str, link: DirectLink, f: asyncio.Future[str]) -> None:
        if self.links.get((id(s), peer)) is link:
            del self.links[(id(s), peer)]
        if s.is_sender and s.direct_links.get(peer) is link:  # type: ignore[attr-defined]
            del s.direct_links[peer]  # type: ignore[attr-defined]
        why = f.result() if not f.cancelled() and f.exception() is None else "closed"
        neg = self.negs.get(id(s))
        if neg is not None:
            down = neg.link_down(peer, link.binding.leg, why, self.now(), renew=link.renew)
            self._apply(s, neg, down)

    def _on_link_message(self, s: Session, peer: str, link: DirectLink, payload: bytes) -> None:
        t0 = time.time_ns()
        try:
            env = decode(payload)
            msg = env.msg
        except ProtocolError as exc:
            log.warning("session %s: bad message on the direct link of %s: %s", s.path, peer, exc)
            link.close("bad message")
            return
        t = type(msg)
        if t is m.HotlinkData and not s.is_sender and msg.sid == s.sid:  # type: ignore[union-attr]
            if not msg.path.startswith(s.prefix) and msg.path != s.path:  # type: ignore[union-attr]
                link.close("data path outside the session")
                return
            s.direct_frames += 1  # type: ignore[attr-defined]
            s.direct_bytes += len(msg.payload)  # type: ignore[attr-defined,union-attr]
            tr = self.mgr.tracer
            if tr is None:
                s.on_data(msg)  # type: ignore[attr-defined,arg-type]
            else:
                tr.on_direct(env, t0, functools.partial(s.on_data, msg))  # type: ignore[attr-defined]
        elif t is m.HotlinkProgress and s.is_sender and msg.sid == s.sid:  # type: ignore[union-attr]
            s.apply(s.tx.on_progress(peer, msg.seq))  # type: ignore[attr-defined,union-attr]
        else:
            log.warning(
                "session %s: %s on the direct link of %s is not allowed; closing it",
                s.path,
                t.__name__,
                peer,
            )
            link.close("unexpected message")

    # --- timers ---------------------------------------------------------------------

    def now(self) -> float:
        return self.mgr.loop.time()

    def _arm(self) -> None:
        """Tick while some session has a negotiator: an agent without sessions does
        not wake up for the direct path."""
        if self._tick is None and self.negs:
            self._tick = self.mgr.loop.call_later(PROGRESS_INTERVAL, self._on_tick)

    def _on_tick(self) -> None:
        self._tick = None
        now = self.now()
        try:
            for key, neg in list(self.negs.items()):
                s = self.sessions[key]
                due = neg.next_deadline()
                if due is not None and now >= due:
                    self._apply(s, neg, neg.handle_timer(now))
                if not s.is_sender:
                    self._send_progress(s)
        except Exception:
            log.exception("direct path timer")
        self._arm()

    def _send_progress(self, s: Session) -> None:
        link = self.links.get((id(s), s.sender))
        if link is None:
            return
        seq = s.rx.delivered()  # type: ignore[attr-defined]
        if seq <= self.progress_sent.get(id(s), 0) or not s.sid:
            return
        try:
            link.send(encode(m.HotlinkProgress(s.sid, seq)))
        except Exception:
            return
        self.progress_sent[id(s)] = seq

    def when_writable(self, s: Session, link: DirectLink) -> None:
        """A sender stopped at a full link: flush it again once the link drains (one
        waiter per link)."""
        if link in self._draining:
            return
        self._draining.add(link)

        async def wait() -> None:
            try:
                await link.drain()
            except Exception:  # closed meanwhile: its `closed` callback re-routes
                return
            finally:
                self._draining.discard(link)
            if not s.closed:
                s.flush()  # type: ignore[attr-defined]

        self._spawn(wait())

    def _spawn(self, coro: Any) -> None:
        t = self.mgr.loop.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
