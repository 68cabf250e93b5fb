"""Direct-link negotiation for one session, sans-I/O: signals and link news in, effects out.

The two agents of a session agree on a direct TCP link through the relay, whose
authenticated channel binds the key material to the session and to both identities
(docs/design.md "Direct path"). Messages are `HotlinkSignal`s of our own kinds; the
relay stamps `frm` (who sent it) and `obs` (the IP it saw) and routes them only
between the session's sender and its accepted readers.

Who does what, per reader leg (`leg` = a random id of one negotiation):

1. After the reader accepted, the **sender** generates a key pair for the leg and
   sends `hotlink.direct.offer` (`tok` = `2.<leg>.<its public key>.<identity
   key>.<signature>`, `adr` = its own candidates, for information).
2. The **reader** checks the offer's identity signature and pin (`KeyOps.vouch`),
   registers the expected handshake with its listener (`Expect`: sender's public key
   + binding) *before* it answers, then sends `hotlink.direct.answer` (`tok` likewise,
   `adr` = its candidates). With direct off, or an identity it does not accept, it
   answers `hotlink.direct.error` instead.
3. The **sender** connects (`Connect`) to the reader's candidates plus the relay's
   observed IP of the reader combined with each candidate port, in parallel, bounded
   by `connect_timeout`. The answerer listens and the offerer connects so that the
   listener always knows the leg before the first handshake byte arrives.
4. On success both sides send `hotlink.direct.up` (informational), the leg is UP and
   the peer's identity is pinned if it was not yet (`PinPeer`);
   on failure the sender says why (`PathNews`), the session stays on the relay, and
   it tries again after a backoff (1 s doubling to 60 s; 0.2 s doubling after a
   link that worked dropped) while the reader is accepted. A refusal that will not
   change (the reader or relay does not speak `direct`, the reader has direct off)
   stops the retries for that reader.

The glue (`agent/direct/glue.py`) carries out the effects with the real listener
and `connect()`, and feeds results back (`connected`, `connect_failed`,
`link_down`). Time enters only as `now` arguments.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hotlink.wire.extensions import DIRECT_KIND_PREFIX
from hotlink.wire.messages import HotlinkSignal

log = logging.getLogger("hotlink.agent.direct")

OFFER = DIRECT_KIND_PREFIX + "offer"
ANSWER = DIRECT_KIND_PREFIX + "answer"
UP = DIRECT_KIND_PREFIX + "up"
DOWN = DIRECT_KIND_PREFIX + "down"
ERROR = DIRECT_KIND_PREFIX + "error"

TOKEN_VERSION = "2"
CONNECT_TIMEOUT = 3.0
#: how long a reader keeps a leg's expectation without a connection (the sender's
#: attempt is bounded by CONNECT_TIMEOUT; the slack covers the relay hop)
EXPECT_TIMEOUT = CONNECT_TIMEOUT + 5.0
#: how long the sender waits for the answer to its offer
ANSWER_TIMEOUT = 5.0
RETRY_INITIAL = 1.0
RETRY_MAX = 60.0
#: first retry after a link that worked dropped (it will most likely work again)
RETRY_AFTER_DROP = 0.2

#: a reader's answer meaning "never for this session" (no retries)
REFUSED_OFF = "direct path off"


class Role(enum.Enum):
    SENDER = "sender"
    READER = "reader"


class LegState(enum.Enum):
    OFFERED = "offered"  # sender: offer sent, waiting for the answer
    EXPECTING = "expecting"  # reader: answered, waiting for the sender's connection
    CONNECTING = "connecting"  # sender: connect() running
    UP = "up"
    BACKOFF = "backoff"  # failed; retry at `retry_at`
    GAVE_UP = "gave up"  # a refusal that will not change


# ---------------------------------------------------------------- effects


@dataclass(slots=True, frozen=True)
class SendSignal:
    """Send a signal to the relay."""

    msg: HotlinkSignal


@dataclass(slots=True, frozen=True)
class Connect:
    """Sender: connect to `candidates` (in parallel, first handshake wins), proving
    `key` and expecting `peer_public`, for the leg named by the binding fields."""

    sid: str
    sender: str
    reader: str
    leg: str
    candidates: tuple[str, ...]
    key: Any
    peer_public: bytes
    timeout: float


@dataclass(slots=True, frozen=True)
class Expect:
    """Reader: tell the listener to accept this leg's handshake (and no other)."""

    sid: str
    sender: str
    reader: str
    leg: str
    key: Any
    peer_public: bytes


@dataclass(slots=True, frozen=True)
class Forget:
    """Reader: the listener must no longer accept this leg's handshake."""

    key: Any


@dataclass(slots=True, frozen=True)
class CloseLink:
    """Close the leg's link (a newer leg replaces it, or the session ends)."""

    reader: str
    leg: str
    reason: str


@dataclass(slots=True, frozen=True)
class PathNews:
    """The direct path of `peer` came up (`up`) or is not (any more) used, and why:
    for the event stream (PATH_SWITCHED), the log and `get`."""

    peer: str
    up: bool
    reason: str
    #: a link up to a reader: the reorder window its answer announced (0: not said)
    window: int = 0


@dataclass(slots=True, frozen=True)
class PinPeer:
    """A direct link with `peer` completed: pin its identity if it has no pin yet."""

    peer: str
    fingerprint: str


Effect = SendSignal | Connect | Expect | Forget | CloseLink | PathNews | PinPeer


# ------------------------------------------------------------------ state


@dataclass(slots=True)
class Leg:
    peer: str
    leg: str = ""
    state: LegState = LegState.BACKOFF
    key: Any = None
    peer_public: bytes = b""
    deadline: float | None = None
    retry_at: float | None = None
    retry_delay: float = RETRY_INITIAL
    attempts: int = 0
    #: why the leg is not up ("" while up or before the first try)
    why: str = ""
    #: candidates tried on the last attempt
    tried: tuple[str, ...] = field(default_factory=tuple)
    #: the fingerprint of the identity that signed the peer's key for this leg
    peer_fp: str = ""
    #: sender: the reorder window the reader's answer announced (0: not said)
    peer_window: int = 0


@dataclass(slots=True, frozen=True)
class Token:
    """What an offer or answer carries in `tok`."""

    leg: str
    ephemeral: str  # base64 X25519 public key of this leg
    identity: str  # base64 Ed25519 public key of the signer
    signature: str  # base64, over `Claim` (identity.statement)

    def encode(self) -> str:
        return f"{TOKEN_VERSION}.{self.leg}.{self.ephemeral}.{self.identity}.{self.signature}"

    @classmethod
    def decode(cls, tok: str) -> Token:
        """ValueError when `tok` is not a v2 token (a v1 token says so: that agent
        signs nothing, and a peer link must prove both identities)."""
        parts = tok.split(".") if isinstance(tok, str) else []
        if parts[:1] == ["1"]:
            raise ValueError("the peer's agent does not sign its direct keys (token v1)")
        if len(parts) != 5 or parts[0] != TOKEN_VERSION or not all(parts[1:]):
            raise ValueError("bad direct token")
        return cls(parts[1], parts[2], parts[3], parts[4])


@dataclass(slots=True, frozen=True)
class Claim:
    """What an identity key vouches for: `ephemeral` is its holder's key for this leg."""

    kind: str
    sid: str
    sender: str
    reader: str
    leg: str
    ephemeral: str


def combine_observed(observed_ip: str, candidates: list[str]) -> list[str]:
    """`observed_ip` with each port of `candidates` ("host:port", IPv6 in brackets)."""
    if not observed_ip:
        return []
    host = f"[{observed_ip}]" if ":" in observed_ip else observed_ip
    out: list[str] = []
    for c in candidates:
        port = c.rsplit(":", 1)[-1]
        if port.isdigit():
            a = f"{host}:{port}"
            if a not in out:
                out.append(a)
    return out


@dataclass(slots=True)
class KeyOps:
    """How keys are made, read and vouched for (the real ones: `service.key_ops`, on
    `keys`, `identity` and `pins`; tests pass fakes so the negotiator needs no crypto)."""

    generate: Callable[[], Any]
    public_b64: Callable[[Any], str]
    parse_public: Callable[[str], bytes]
    #: sign a claim with our identity: (identity public base64, signature base64)
    prove: Callable[[Claim], tuple[str, str]]
    #: `peer`'s token for a claim -> the signer's fingerprint; ValueError (the reason)
    #: when the signature does not verify or `peer` is pinned to another key
    vouch: Callable[[str, Claim, Token], str]


class Negotiator:
    """One session's direct-link negotiation on one agent. Every event method returns
    effects; `next_deadline()` / `handle_timer(now)` drive the timeouts."""

    def __init__(
        self,
        role: Role,
        *,
        sid: str,
        me: str,
        sender: str,
        enabled: bool,
        candidates: Callable[[], list[str]],
        keys: KeyOps,
        new_leg: Callable[[], str] = lambda: secrets.token_hex(8),
        connect_timeout: float = CONNECT_TIMEOUT,
        window: int = 0,
    ) -> None:
        self.role = role
        self.sid = sid
        self.me = me
        self.sender = sender
        self.enabled = enabled
        self.candidates = candidates
        self.keys = keys
        self.new_leg = new_leg
        self.connect_timeout = connect_timeout
        #: reader: our reorder window, announced in the answer (`win`) so the sender
        #: never lets the link run that far ahead of the relay's frames
        self.window = window
        #: per peer (readers for a sender, the sender for a reader)
        self.legs: dict[str, Leg] = {}
        self.closed = False

    # --- queries ------------------------------------------------------------------

    def is_up(self, peer: str) -> bool:
        leg = self.legs.get(peer)
        return leg is not None and leg.state is LegState.UP

    def is_current(self, peer: str, leg_id: str) -> bool:
        """Whether `leg_id` is the negotiation in progress (or up) with `peer`: a link
        that completes its handshake for an older leg must not replace the link of the
        current one."""
        leg = self.legs.get(peer)
        return leg is not None and leg.leg == leg_id and not self.closed

    def status(self, peer: str) -> str:
        """'up', or what the leg is doing / why it is not up (for `get` and logs)."""
        leg = self.legs.get(peer)
        if leg is None:
            return "off" if not self.enabled else "not negotiated"
        if leg.state is LegState.UP:
            return "up"
        return f"{leg.state.value}: {leg.why}" if leg.why else leg.state.value

    def next_deadline(self) -> float | None:
        times = [t for leg in self.legs.values() for t in (leg.deadline, leg.retry_at) if t]
        return min(times) if times else None

    # --- sender side ------------------------------------------------------------------

    def reader_accepted(self, reader: str, now: float) -> list[Effect]:
        """Sender: `reader` accepted (or re-accepted) the session: offer a link."""
        if self.role is not Role.SENDER or not self.enabled or self.closed:
            return []
        leg = self.legs.get(reader)
        out: list[Effect] = []
        if leg is not None and leg.state is LegState.UP:
            return []  # a re-accept over a reconnected relay: the link still works
        if leg is not None and leg.state is LegState.GAVE_UP:
            return []
        return out + self._offer(reader, now)

    def _offer(self, reader: str, now: float) -> list[Effect]:
        old = self.legs.get(reader)
        leg = Leg(reader, self.new_leg(), LegState.OFFERED, self.keys.generate())
        if old is not None:  # a retry: the last reason stays visible meanwhile
            leg.retry_delay, leg.attempts, leg.why = old.retry_delay, old.attempts, old.why
        leg.attempts += 1
        leg.deadline = now + ANSWER_TIMEOUT
        self.legs[reader] = leg
        tok = self._token(Claim(OFFER, self.sid, self.me, reader, leg.leg, ""), leg.key)
        sig = HotlinkSignal(self.sid, OFFER, self.candidates() or None, tok, to=reader)
        return [SendSignal(sig)]

    def _token(self, claim: Claim, key: Any) -> str:
        eph = self.keys.public_b64(key)
        ident, signature = self.keys.prove(
            Claim(claim.kind, claim.sid, claim.sender, claim.reader, claim.leg, eph)
        )
        return Token(claim.leg, eph, ident, signature).encode()

    def _vouched(self, peer: str, kind: str, reader: str, tok: Token) -> tuple[bytes, str]:
        """(peer's ephemeral key, its identity fingerprint); ValueError says why not."""
        public = self.keys.parse_public(tok.ephemeral)
        claim = Claim(kind, self.sid, self.sender, reader, tok.leg, tok.ephemeral)
        return public, self.keys.vouch(peer, claim, tok)

    def reader_left(self, reader: str) -> list[Effect]:
        """Sender: the reader's leg ended (closed, rejected, lost read access)."""
        leg = self.legs.pop(reader, None)
        if leg is None:
            return []
        if leg.state is LegState.UP:
            return [
                CloseLink(reader, leg.leg, "reader left"),
                PathNews(reader, False, "reader left"),
            ]
        return []

    def connected(self, peer: str, leg_id: str) -> list[Effect]:
        """The handshake of `leg_id` completed (sender: connect() returned; reader:
        the listener's on_link fired)."""
        if not self.is_current(peer, leg_id):
            return [CloseLink(peer, leg_id, "stale leg")]
        leg = self.legs[peer]
        leg.state = LegState.UP
        leg.deadline = leg.retry_at = None
        leg.retry_delay = RETRY_INITIAL
        leg.why = ""
        out: list[Effect] = [PinPeer(peer, leg.peer_fp)] if leg.peer_fp else []
        if self.role is Role.READER:
            out.append(Forget(leg.key))
        to = peer if self.role is Role.SENDER else ""
        out.append(SendSignal(HotlinkSignal(self.sid, UP, None, leg_id, to=to)))
        out.append(PathNews(peer, True, "direct link up", leg.peer_window))
        return out

    def connect_failed(self, peer: str, leg_id: str, why: str, now: float) -> list[Effect]:
        """Sender: connect() gave up (no candidate completed the handshake in time)."""
        leg = self.legs.get(peer)
        if leg is None or leg.leg != leg_id or leg.state is not LegState.CONNECTING:
            return []
        return self._backoff(leg, f"direct connect failed: {why}", now)

    def link_down(
        self, peer: str, leg_id: str, why: str, now: float, renew: bool = False
    ) -> list[Effect]:
        """The leg's link closed (either side): back to the relay; the sender retries
        (at once with `renew`: our own link closed to be replaced with fresh keys)."""
        leg = self.legs.get(peer)
        if leg is None or leg.leg != leg_id or leg.state is not LegState.UP:
            return []
        out: list[Effect] = [PathNews(peer, False, f"direct link down: {why}")]
        if self.role is Role.SENDER:
            leg.retry_delay = 0.0 if renew else RETRY_AFTER_DROP  # it worked: try again soon
            out += self._backoff(leg, f"direct link down: {why}", now, news=False)
            leg.retry_delay = max(leg.retry_delay, RETRY_AFTER_DROP)
            to = peer
        else:
            del self.legs[peer]  # the sender makes a new offer
            to = ""
        out.append(SendSignal(HotlinkSignal(self.sid, DOWN, None, leg_id, why[:200], to=to)))
        return out

    def _backoff(self, leg: Leg, why: str, now: float, news: bool = True) -> list[Effect]:
        leg.state = LegState.BACKOFF
        leg.why = why
        leg.deadline = None
        leg.retry_at = now + leg.retry_delay
        leg.retry_delay = min(RETRY_MAX, leg.retry_delay * 2)
        log.info(
            "session %s: direct path to %s not used (%s); staying on the relay, retry in %.0f s",
            self.sid,
            leg.peer,
            why,
            leg.retry_at - now,
        )
        return [PathNews(leg.peer, False, why)] if news else []

    def _give_up(self, leg: Leg, why: str) -> list[Effect]:
        leg.state = LegState.GAVE_UP
        leg.why = why
        leg.deadline = leg.retry_at = None
        log.info("session %s: no direct path to %s: %s", self.sid, leg.peer, why)
        return [PathNews(leg.peer, False, why)]

    # --- both sides --------------------------------------------------------------

    def on_signal(self, sig: HotlinkSignal, now: float) -> list[Effect]:
        """A signal of our kinds from the relay (`frm`/`obs` are relay-set)."""
        if self.closed or sig.sid != self.sid or not sig.frm:
            return []
        if self.role is Role.READER:
            if sig.frm != self.sender:
                return []
            if sig.kind == OFFER:
                return self._on_offer(sig, now)
            if sig.kind == DOWN:
                leg = self.legs.get(sig.frm)
                if leg is not None and leg.leg == sig.token and leg.state is LegState.UP:
                    why = sig.error or "closed by the sender"
                    return self.link_down(sig.frm, leg.leg, why, now)
            return []
        leg = self.legs.get(sig.frm)
        if leg is None:
            return []
        if sig.kind == ANSWER and leg.state is LegState.OFFERED:
            return self._on_answer(leg, sig, now)
        if sig.kind == ERROR and leg.state is LegState.OFFERED:
            if sig.error == REFUSED_OFF:
                return self._give_up(leg, f"{sig.frm} has the direct path off")
            return self._backoff(leg, f"{sig.frm}: {sig.error or 'refused'}", now)
        return []

    def relay_error(self, peer: str, message: str) -> list[Effect]:
        """The relay refused our signal to `peer` (Error 404/403): it or the peer does
        not speak `direct`, or the peer is no longer an accepted reader."""
        leg = self.legs.get(peer)
        if leg is None or leg.state is LegState.UP:
            return []
        return self._give_up(leg, f"relay refused the signal: {message}")

    def _on_offer(self, sig: HotlinkSignal, now: float) -> list[Effect]:
        out: list[Effect] = []
        old = self.legs.pop(sig.frm, None)
        if old is not None:
            if old.state is LegState.UP:  # the sender starts over: its link is gone
                out.append(CloseLink(sig.frm, old.leg, "replaced by a new offer"))
                out.append(PathNews(sig.frm, False, "sender offered a new link"))
            elif old.state is LegState.EXPECTING:
                out.append(Forget(old.key))
        if not self.enabled:
            err = HotlinkSignal(self.sid, ERROR, None, "", REFUSED_OFF)
            return [*out, SendSignal(err)]
        try:
            tok = Token.decode(sig.token)
            peer_public, fp = self._vouched(sig.frm, OFFER, self.me, tok)
        except ValueError as exc:
            why = f"direct offer of {sig.frm} refused: {exc}"
            log.warning("session %s: %s", self.sid, why)
            self.legs[sig.frm] = Leg(sig.frm, "", LegState.GAVE_UP, why=why)
            err = HotlinkSignal(self.sid, ERROR, None, "", f"offer refused: {exc}"[:300])
            return [*out, PathNews(sig.frm, False, why), SendSignal(err)]
        leg = Leg(sig.frm, tok.leg, LegState.EXPECTING, self.keys.generate(), peer_public)
        leg.peer_fp = fp
        leg.deadline = now + EXPECT_TIMEOUT
        self.legs[sig.frm] = leg
        out.append(Expect(self.sid, self.sender, self.me, tok.leg, leg.key, peer_public))
        answer = self._token(Claim(ANSWER, self.sid, self.sender, self.me, tok.leg, ""), leg.key)
        reply = HotlinkSignal(self.sid, ANSWER, self.candidates() or None, answer, win=self.window)
        out.append(SendSignal(reply))
        return out

    def _on_answer(self, leg: Leg, sig: HotlinkSignal, now: float) -> list[Effect]:
        try:
            tok = Token.decode(sig.token)
            if tok.leg != leg.leg:
                return []  # an answer to an older offer
            leg.peer_public, leg.peer_fp = self._vouched(leg.peer, ANSWER, leg.peer, tok)
        except ValueError as exc:
            log.warning("session %s: direct answer of %s refused: %s", self.sid, leg.peer, exc)
            return self._backoff(leg, f"answer of {leg.peer} refused: {exc}", now)
        leg.peer_window = sig.win
        adr = list(sig.addrs or ())
        cands = adr + [a for a in combine_observed(sig.obs, adr) if a not in adr]
        log.info(
            "session %s: dialling %s at %s (observed address %s)",
            self.sid,
            leg.peer,
            ", ".join(cands) or "-",
            sig.obs or "unknown",
        )
        if not cands:
            return self._backoff(leg, f"{leg.peer} offered no address", now)
        leg.state = LegState.CONNECTING
        leg.deadline = None  # the glue bounds connect() and reports the outcome
        leg.tried = tuple(cands)
        return [
            Connect(
                self.sid, self.me, leg.peer, leg.leg, leg.tried, leg.key, leg.peer_public,
                self.connect_timeout,
            )
        ]  # fmt: skip

    def handle_timer(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        for leg in list(self.legs.values()):
            if leg.deadline is not None and now >= leg.deadline:
                if leg.state is LegState.OFFERED:
                    out += self._backoff(leg, "no answer to the direct offer", now)
                elif leg.state is LegState.EXPECTING:
                    del self.legs[leg.peer]
                    out.append(Forget(leg.key))
                    log.info("session %s: %s did not connect directly", self.sid, leg.peer)
            elif leg.retry_at is not None and now >= leg.retry_at and leg.state is LegState.BACKOFF:
                leg.retry_at = None
                out += self._offer(leg.peer, now)
        return out

    def close(self, reason: str) -> list[Effect]:
        """The session ends: every leg goes."""
        self.closed = True
        out: list[Effect] = []
        for leg in self.legs.values():
            if leg.state is LegState.UP:
                out.append(CloseLink(leg.peer, leg.leg, reason))
            elif leg.state is LegState.EXPECTING:
                out.append(Forget(leg.key))
        self.legs.clear()
        return out
