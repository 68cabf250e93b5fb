"""The sender's core with direct peer links: which readers a frame reaches how.

`DirectSenderStream` is a `SenderStream` that also knows which accepted readers have a
direct link up (`direct_up`, fed by the negotiation glue). It changes no frame
bookkeeping: seqs, the pending queue, the re-send window and the readers' progress
work exactly as on the relay, so whatever path carried a frame, every reader gets it
once and in order (readers merge by seq and drop copies).

Carriers of the frames in `pending` (`carriers()`), asked by the adapter per batch:

- every reader has a direct link: the frames go over those links only
  (`ActivePath.DIRECT`); the relay is skipped, so it need not even be reachable;
- some do, some not: the frames go to the relay (whose fan-out reaches every reader)
  *and* over the direct links (the direct readers get them first and drop the relay
  copy by seq); the relay cannot leave one reader out of its fan-out;
- none: the relay only, as without direct links.

Switching without loss:

- a reader that joined without a seq (a new reader) takes the first seq it sees as
  the start of its stream. Frames the relay carried to it (as data or as fallback
  files) may still be in flight when its direct link comes up, and a direct frame that
  overtook them would make the reader drop them as old. So once the stream has begun
  (a seq was given), such a reader's direct link carries frames only after the reader
  confirmed a seq (its first `HotlinkProgress`, a few ms after its first frame): its
  place is known then, and its reorder buffer waits for what the relay still brings;
- a reader that asked for a re-send (an Accept with its seq: a refetch, a restart, a
  relay reconnect) may drop, until the re-send's first frame came, every frame ahead
  of it as a copy the re-send brings again (reader: `Refetch.in_flight_copy`). If its
  link came up while the re-send (and what followed it) was on its way by the relay,
  new frames sent direct only would overtake it and be dropped for good. So such a
  reader's link carries frames only once it confirmed a seq past every seq sent at
  that Accept (it has the re-send's first frame then), or everything sent (nothing
  is on its way); until then its frames go by the relay, in order behind the
  re-send. Only a link-up in that window waits (until the reader's next
  `HotlinkProgress` after the re-send arrived); a steady link is never touched;

- a reader switched to its link while the relay still carries frames to it waits for
  them in its reorder buffer, which holds a reorder window of frames: a direct frame a
  window or more past what the reader confirmed would make it skip the relay's frames
  as lost (seen: a relay busy with TEE copies lagged 554 frames behind a link that
  then sent the stream's last 4 096). Until the reader confirms the last seq sent
  before its switch (`relay_tail`), a frame that far ahead goes by the relay to it
  (`carriers()`), in order behind the ones on their way, and the mark moves to that
  frame; no frame is held back, nothing stalls. The bound is the reader's reorder
  window as its direct answer announced it (`win`), else this agent's
  `reorder_window` (the readers' default too). Ahead of the first such frame, the
  relay carries copies of what the reader's link alone carried since its tail
  (`_relay_copies`): the link could die with them on it, and their re-send would come
  behind the frames a window ahead. A linked reader a window behind the last seq sent
  when a re-send begins (its own or another reader's) gets it by the relay too, behind
  the frames the relay may still carry it, and its link waits as after a link-up
  during a re-send (`_resume_reader`);

- a direct link drops while the relay works: the reader's unconfirmed frames (after
  its last `HotlinkProgress`) go back in front of the queue and leave by the relay,
  exactly like a reader's resume after a re-accept; a re-sent frame goes over the
  links only of readers that have not confirmed it;
- a direct link drops while the relay is down as well: that reader is unreachable,
  so it leaves `readers` like every reader does on a relay drop, and the relay's
  `HotlinkAccept(seq)` after the reconnect re-sends from its confirmed seq;
- the relay drops while every reader has a direct link: the session keeps sending
  over the links (nothing re-queued, no reader forgotten); the Open is re-sent when
  the relay returns (control traffic catches up), and the readers' re-accepts do not
  re-send what they already confirmed over the link.

`carriers()` runs once per frame sent while a link is up, and the linked readers
(`readers & direct_up`, sorted) change only on accepts, leaves and link news. So it
keeps that tuple with the two sets it was computed from, and both sets are frozensets,
rebound on every change and never changed in place (also in `SenderStream` and
`SidRecovery`): the tuple is current exactly while both attributes are still those
objects, an identity test per frame. No mutation site has to remember to reset it,
and holding the two sets keeps their ids from being reused.
"""

from __future__ import annotations

from hotlink.wire import messages as m
from hotlink.wire.extensions import STREAM_START

from ..acks import plan_resend
from .effects import Effect, Emit, EventType, Send, Transmit
from .paths import ActivePath, Switch
from .resend_window import seq_of
from .sender import SenderStream
from .state import SessionState, Trigger

_LIVE = (SessionState.OPEN, SessionState.PENDING)


class DirectSenderStream(SenderStream):
    """A `SenderStream` that also sends over direct peer links (see the module doc)."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        #: accepted readers whose direct link is up (and carries their frames);
        #: rebound, never changed in place, like `readers` (see the module doc)
        self.direct_up: frozenset[str] = frozenset()
        #: `carriers()`'s cache: `readers & direct_up`, sorted (`_linked`), and the two
        #: sets it was computed from (see the module doc)
        self._linked_readers: frozenset[str]
        self._linked_up: frozenset[str]
        self._linked: tuple[str, ...]
        #: while every reader has a link, the last seq sent before (frames after it
        #: skipped the relay); None while the relay carries every frame
        self._link_only_after: int | None = None
        self._link_readers()
        #: readers that accepted without a seq and have not confirmed one yet (their
        #: stream's start is not known)
        self.unanchored: set[str] = set()
        #: readers whose direct link is up but waits for them to confirm a seq
        self.direct_held: set[str] = set()
        #: readers that asked for a re-send (an Accept with their seq) -> the last seq
        #: sent at that Accept; until they confirm a newer one their re-send may still
        #: be on its way by the relay, and a link coming up waits (see the module doc)
        self.resend_asked: dict[str, int] = {}
        #: readers switched to their link while the relay may still carry frames to
        #: them -> the last seq sent before the switch (see `carriers`)
        self.relay_tail: dict[str, int] = {}
        #: readers' reorder windows, as their direct answers announced them
        self.reader_window: dict[str, int] = {}
        #: the online path last reported (relay or direct) for PATH_SWITCHED events
        self.reported = ActivePath.HOTLINK
        self.direct_switches = 0

    # --- queries --------------------------------------------------------------------

    def direct_only(self) -> bool:
        """Every reader is reached by a direct link (the relay is not needed)."""
        return bool(self.readers) and self.readers <= self.direct_up

    def direct_ready(self) -> bool:
        return self.direct_only() and self.machine.state in _LIVE and not self.closed

    def hotlink_ready(self) -> bool:
        return super().hotlink_ready() or self.direct_ready()

    @property
    def can_transmit(self) -> bool:
        if self.machine.state is SessionState.OPEN and self.readers:
            return True
        return self.direct_ready()

    @property
    def active_path(self) -> ActivePath:
        if self.policy.active is ActivePath.FILES:
            return ActivePath.FILES
        return ActivePath.DIRECT if self.direct_only() else ActivePath.HOTLINK

    def carriers(self) -> tuple[bool, tuple[str, ...]]:
        """(send to the relay, readers to send to over their direct link) for the
        frame `pending[0]`, which the adapter sends next."""
        readers = self.readers
        if readers is not self._linked_readers or self.direct_up is not self._linked_up:
            self._link_readers()  # either set was rebound: it changed (module doc)
        direct = self._linked
        pend = self.pending
        if not self.relay_tail and (not pend or pend[0].seq > self.replay_until):
            # the steady state: a fresh frame, no relay tail
            if direct and len(direct) == len(readers):
                return False, direct
            return self.link_up, direct
        return self._carriers_special(direct, len(direct) == len(readers))

    def _carriers_special(
        self, direct: tuple[str, ...], all_linked: bool
    ) -> tuple[bool, tuple[str, ...]]:
        """`carriers()` off the steady state: a relay tail or a re-send at the queue's
        front. Apart, so that the steady path does not set up this one's closures."""
        relay = self.link_up and not (direct and all_linked)
        pend = self.pending
        if not pend or not direct:
            return relay, direct
        seq = pend[0].seq
        if self.relay_tail and self.link_up:
            ahead = self._too_far_ahead(seq)
            if ahead:  # the relay takes it to them, behind what it still carries
                if self._relay_copies(ahead, seq):
                    return self._carriers_special(direct, all_linked)  # a new front
                relay = True
                direct = tuple(r for r in direct if r not in ahead)
        if seq <= self.replay_until:
            # A re-send (another reader's resume, or `_relay_copies`). A link whose
            # reader confirmed the frame, or to whose reader the relay carries it
            # (`relay_tail`), would carry a copy to be dropped, or one a window ahead
            # of the relay; so the relay carries it to that reader.
            acks, tail = self.reader_acks, self.relay_tail
            owed = [r for r in direct if acks.get(r, 0) < seq]
            direct = tuple(r for r in owed if tail.get(r, 0) < seq)
            relay = relay or (self.link_up and len(direct) < len(owed))
        return relay, direct

    def _relay_copies(self, ahead: list[str], seq: int) -> bool:
        """Frame `seq` goes by the relay to the readers `ahead` for being a window past
        what they confirmed. The frames their links alone carried since the relay last
        did may still be on those links: should a link die with them, their re-send by
        the relay would come behind `seq`, and the reader's window would skip them. So
        the relay carries them first (the readers drop the copies by seq). True if the
        queue's front changed. The readers' `relay_tail` moves to `seq`: each such run
        is re-sent once."""
        acks, tail = self.reader_acks, self.relay_tail
        after = min(max(acks.get(r, 0), tail[r]) for r in ahead)
        for r in ahead:
            tail[r] = max(tail[r], seq)
        if self._link_only_after is None or seq <= self.replay_until:
            return False  # the relay carried them too (or this is such a re-send)
        after = max(after, self._link_only_after)
        frames = plan_resend(self.recent, after, seq - 1, seq_of).frames
        if frames:
            self._requeue(frames)
        return bool(frames)

    def _link_readers(self) -> None:
        """Compute `carriers()`'s linked readers anew, keyed on the sets of now: only
        after an accept, a leave or link news rebound one of them (the module doc)."""
        readers = self._linked_readers = self.readers
        up = self._linked_up = self.direct_up
        # a set changed in place would keep its identity and the cache with it
        assert isinstance(readers, frozenset) and isinstance(up, frozenset)
        self._linked = tuple(sorted(readers & up))
        if not readers or not readers <= up:
            self._link_only_after = None  # the relay carries every frame
        elif self._link_only_after is None:
            self._link_only_after = self.last_seq

    def _too_far_ahead(self, seq: int) -> list[str]:
        """Readers for whom frame `seq` over the link would be a reorder window or
        more past what they confirmed, while the relay may still carry them older
        frames (see the module doc). A reader's window is the one it announced, else
        ours (the default of both)."""
        own = self.lim.reorder_window
        windows = self.reader_window
        acks = self.reader_acks
        return [r for r in self.relay_tail if seq - acks.get(r, 0) >= windows.get(r, own)]

    # --- direct link news ------------------------------------------------------------

    def direct_link_up(self, reader: str, window: int = 0) -> list[Effect]:
        """`reader`'s direct link is up; `window`: the reorder window it announced (0:
        not said)."""
        if window > 0:  # (a held link's later use says nothing new: 0)
            self.reader_window[reader] = window
        if reader in self.direct_up or self.closed:
            return []
        if self._unanchored(reader) or self._resend_on_its_way(reader):
            self.direct_held.add(reader)  # used once it confirms (`_anchored`)
            return []
        self.direct_held.discard(reader)
        self.direct_up |= {reader}
        if self.reader_acks.get(reader, 0) < self.last_seq:
            self.relay_tail[reader] = self.last_seq  # on their way by the relay
        out: list[Effect] = []
        if reader in self.readers:
            out.append(Transmit(ActivePath.DIRECT))
        out += self.reevaluate(f"direct link to {reader} up")
        self._report(out, reader, f"direct link to {reader} up")
        return out

    def direct_link_down(self, reader: str, why: str) -> list[Effect]:
        """`reader`'s direct link is gone: what it did not confirm goes by the relay
        (or, with the relay down too, the reader is unreachable until it re-accepts)."""
        self.direct_held.discard(reader)
        if reader not in self.direct_up:
            return []
        self.direct_up -= {reader}
        self.relay_tail.pop(reader, None)
        out: list[Effect] = []
        if reader in self.readers:
            if self.link_up and self.machine.state is SessionState.OPEN:
                self._resume_reader(reader, self.reader_acks.get(reader, self.confirmed))
                out.append(Transmit(ActivePath.HOTLINK))
            else:
                self.readers -= {reader}
                self.reader_acks.pop(reader, None)
                if not self.readers:
                    self.requeue_recent()
        out += self.reevaluate(f"direct link to {reader} down: {why}")
        self._report(out, reader, f"direct link to {reader} down: {why}")
        return out

    def _unanchored(self, reader: str) -> bool:
        """A direct frame to `reader` could overtake frames the relay carries to it
        (see the module doc); nothing can while the stream has not begun."""
        return reader in self.unanchored and self.seq > 0

    def _resend_on_its_way(self, reader: str) -> bool:
        """A re-send `reader` asked for may still be on its way by the relay: it has
        not confirmed a seq past what was sent at its Accept, nor everything sent
        since. A direct frame now could overtake it and be dropped as a copy (see the
        module doc); once nothing sent is unconfirmed, nothing can be overtaken."""
        asked = self.resend_asked.get(reader)
        if asked is None:
            return False
        ack = self.reader_acks.get(reader, 0)
        return ack <= asked and ack < self.last_seq

    def _report(self, out: list[Effect], peer: str, why: str) -> None:
        """A PATH_SWITCHED event when the online path changed (relay <-> direct)."""
        now = self.active_path
        if now is ActivePath.FILES or now is self.reported:
            return
        self.reported = now
        self.direct_switches += 1
        out.append(Emit(EventType.PATH_SWITCHED, peer, why))

    # --- relay events that change meaning with direct links ----------------------------

    def _switched(self, sw: Switch, out: list[Effect]) -> None:
        super()._switched(sw, out)
        if sw.to is not ActivePath.FILES:
            self.reported = self.active_path

    def on_link_down(self) -> None:
        """The relay link dropped: readers with a direct link stay reachable."""
        keep = self.readers & self.direct_up
        if not keep:
            super().on_link_down()
            return
        acks = {r: a for r, a in self.reader_acks.items() if r in keep}
        whole = keep == self.readers
        self.link_up = False
        if self.machine.state is SessionState.OPEN:
            self.machine.fire(Trigger.LINK_DOWN, "link down")
        if not whole:
            # frames the relay-only readers may have missed: re-sent after the re-open
            # (the direct readers drop the copies by seq)
            self.requeue_recent()
        self.readers = keep
        self.reader_acks.clear()
        self.reader_acks.update(acks)

    def on_progress(self, reader: str, seq: int) -> list[Effect]:
        out = super().on_progress(reader, seq)
        if seq:
            asked = self.resend_asked.get(reader)
            if asked is not None and seq > asked:
                del self.resend_asked[reader]  # its re-send has come
            tail = self.relay_tail.get(reader)
            if tail is not None and seq >= tail:
                del self.relay_tail[reader]  # the relay brought it all
            self._anchored(reader, out)
        return out

    def _anchored(self, reader: str, out: list[Effect]) -> None:
        """`reader`'s place in the stream is known now: a held link carries frames
        (unless a re-send it asked for may still be on its way: `direct_link_up`)."""
        self.unanchored.discard(reader)
        if reader in self.direct_held and reader in self.readers:
            out += self.direct_link_up(reader)

    def on_accept(self, peer: str, seq: int | None) -> list[Effect]:
        if seq is not None and peer in self.direct_up:
            # the relay's idea of this reader's progress may be older than what the
            # reader confirmed over its link
            seq = max(seq, self.reader_acks.get(peer, 0))
            if peer in self.relay_tail and self.link_up:
                # The relay still carries frames to it: the re-send goes by the relay
                # too, whole and behind them; split across the two paths, the link's
                # part would overtake the relay's, and the reader drops one part or
                # skips the other. Its link waits, as a link-up after a re-send does.
                self.direct_up -= {peer}
                self.relay_tail.pop(peer)
                self.direct_held.add(peer)
        new = peer not in self.readers
        if not seq and peer not in self.direct_up and (seq == 0 or new):
            # a new reader, or one that delivered nothing yet (seq 0: restarted
            # before its first frame, it too takes the first seq it sees as its
            # start); a link already up carries its first frame
            self.unanchored.add(peer)
        told = seq
        if told is not None:
            # a re-send after `told` follows; the reader's first frame it lacks is at
            # most one past what was sent so far
            self.resend_asked[peer] = self.last_seq
        borrowed = seq is None and new and bool(self.direct_up)
        if borrowed:
            # Frames sent while every reader we knew had a link skipped the relay,
            # also those after the relay had added this reader: re-send what we hold
            # unconfirmed by the relay (the reader drops what precedes its start).
            seq = self.confirmed
        out = super().on_accept(peer, seq)
        if borrowed:  # the others' confirmation, not this reader's: it confirmed nothing
            del self.reader_acks[peer]
        if told is None and new:
            # ahead of the frames it gets from now on: where they begin (join.py)
            out.insert(
                0,
                Send(
                    m.HotlinkSignal(self.sid, STREAM_START, to=peer, seq=self.next_for_new_reader())
                ),
            )
        if told:  # it delivered up to `told`: its stream's start is known
            self._anchored(peer, out)
        self._report(out, peer, f"{peer} accepted")
        return out

    def next_for_new_reader(self) -> int:
        """The first seq a reader that just accepted as new gets from us: every seq
        from it on reaches it, by the hotlink (what is queued, re-sends first, and what
        comes after) or as fallback files (those after the last hotlink frame that are
        not in the store yet are broadcast to it when they are)."""
        nxt = self.last_seq + 1
        pend = self.pending
        return min(pend[0].seq, nxt) if pend else nxt

    def _resume_reader(self, reader: str, ack: int) -> None:
        """A re-send after `ack` for `reader`. A linked reader owed part of it (that
        reader or another), a reorder window or more behind the last seq sent, may
        still get newer frames by the relay: over its link the re-send would come
        first and end its wait for a re-send (or move its next seq back), and a relay
        frame a window past that would make it skip the rest. Its link waits until it
        confirmed past what was sent, as after a link-up during a re-send
        (`resend_asked`), and the relay carries the re-send to it, in order."""
        super()._resume_reader(reader, ack)
        if not self.link_up or not self.pending or self.pending[0].seq > self.replay_until:
            return
        own, last = self.lim.reorder_window, self.last_seq
        for r in self.readers & self.direct_up:
            behind = max(ack, self.reader_acks.get(r, 0))
            far = last - behind >= self.reader_window.get(r, own)
            if far and self._relay_may_carry(r):
                self.direct_up -= {r}
                self.relay_tail.pop(r, None)
                self.direct_held.add(r)
                self.resend_asked[r] = last

    def _relay_may_carry(self, r: str) -> bool:
        """Frames after `r`'s ack may have gone to it by the relay: the relay carried
        every frame lately, or those up to when every reader had a link, or it still
        brings the frames before its switch (`relay_tail`)."""
        lo = self._link_only_after
        return lo is None or lo > self.reader_acks.get(r, 0) or r in self.relay_tail

    def _reader_left(self, peer: str, ev: EventType, reason: str, why: str) -> list[Effect]:
        self.direct_up -= {peer}
        self.direct_held.discard(peer)
        self.unanchored.discard(peer)
        self.resend_asked.pop(peer, None)
        self.relay_tail.pop(peer, None)
        self.reader_window.pop(peer, None)
        out = super()._reader_left(peer, ev, reason, why)
        self._report(out, peer, why)
        return out
