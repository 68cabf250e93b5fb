"""Sans-I/O tests of the relay's session guards (docs/reliability.md, issue 17 items on
forged fallback frames, session-id squatting and stalling/amplifying readers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hotlink.relay.acl import AclIndex, parse_acl
from hotlink.relay.reader_guard import ACCEPT_BURST, REASON_STALLED
from hotlink.relay.router import Limits, Outgoing, Router
from hotlink.relay.store import Store
from hotlink.relay.writers import WriterLedger
from hotlink.wire import fallbackfile as ff
from hotlink.wire.envelope import Envelope
from hotlink.wire.extensions import ALL, NONE, WRITER, for_peer
from hotlink.wire.messages import (
    REASON_SESSION_IN_USE,
    Ack,
    FileSync,
    FileWrite,
    HotlinkAccept,
    HotlinkClose,
    HotlinkData,
    HotlinkOpen,
    HotlinkProgress,
    HotlinkReject,
    Message,
    Nack,
)

A = "alice@example.org"  # sender
B = "bob@example.org"  # reader
C = "carol@example.org"  # may write into _mpc/shared, may read it
SHARED = f"{A}/_mpc/shared"
S1 = f"{SHARED}/s1"
ACL = f'rules: [{{pattern: "**", access: {{read: ["{B}"], write: ["{C}"]}}}}]'
CA, CB, CC, CC2 = 1, 2, 3, 4


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class H:
    def __init__(self, tmp: Path, limits: Limits | None = None) -> None:
        self.clock = Clock()
        self.acl = AclIndex()
        self.acl.set_file(SHARED, parse_acl(ACL))
        self.writers = WriterLedger(tmp)
        self.router = Router(
            self.acl, Store(tmp), limits=limits, clock=self.clock, writers=self.writers
        )
        self.n = 0
        for cid, user in ((CA, A), (CB, B), (CC, C), (CC2, C)):
            self.router.connect(cid, user)

    def send(self, cid: int, msg: Message) -> list[Outgoing]:
        self.n += 1
        return self.router.handle(cid, Envelope(f"m{self.n}", msg))

    def write(self, cid: int, path: str, content: bytes) -> list[Outgoing]:
        return self.send(cid, FileWrite(path, "", len(content), content))

    def tick(self, dt: float) -> list[Outgoing]:
        self.clock.t += dt
        return self.router.expire(self.clock.t)


def to(out: list[Outgoing], cid: int) -> list[Message]:
    return [o.msg for o in out if o.conn == cid]


@pytest.fixture
def h(tmp_path: Path) -> H:
    return H(tmp_path)


def frame(sid: str, seq: int, payload: bytes) -> bytes:
    return ff.encode(sid, seq, f"{seq:08d}.request", "", payload)


# --- forged fallback frames ------------------------------------------------------------


def test_co_writer_cannot_forge_a_live_sessions_fallback_file(h: H) -> None:
    h.send(CA, HotlinkOpen("sidA", S1, to=B))
    # carol (write access to _mpc/shared) forges seq 4 with alice's sid: refused
    out = h.write(CC, f"{S1}/00000004.request", frame("sidA", 4, b"FORGED-BY-CAROL"))
    (nack,) = to(out, CC)
    assert type(nack) is Nack and "does not send" in nack.error
    assert not to(out, CB)  # nothing reached bob
    # the same content under another name in the folder, or elsewhere: refused too
    out = h.write(CC, f"{SHARED}/elsewhere.bin", frame("sidA", 4, b"FORGED"))
    assert type(to(out, CC)[0]) is Nack
    # a plain .request file in the session's folder by a non-sender: refused
    out = h.write(CC, f"{S1}/00000005.request", b"not even a fallback file")
    assert type(to(out, CC)[0]) is Nack
    # carol may still write other files into the shared folder
    out = h.write(CC, f"{SHARED}/notes.txt", b"hello")
    assert type(to(out, CC)[0]) is Ack
    # alice's real fallback file is stored and passed on stamped with her as writer
    out = h.write(CA, f"{S1}/00000004.request", frame("sidA", 4, b"real"))
    assert type(to(out, CA)[0]) is Ack
    (fwd,) = to(out, CB)
    assert type(fwd) is FileWrite and fwd.writer == A


def test_forged_file_refused_after_the_session_ended_while_the_sid_is_reserved(h: H) -> None:
    h.send(CA, HotlinkOpen("sidA", S1, to=B))
    h.router.disconnect(CA)  # alice's agent went away: the session ends
    out = h.write(CC, f"{S1}/00000004.request", frame("sidA", 4, b"FORGED"))
    assert type(to(out, CC)[0]) is Nack


def test_writer_stamped_on_catch_up_and_survives_a_relay_restart(tmp_path: Path) -> None:
    h = H(tmp_path, Limits(sid_grace=0))
    # written while the relay knew nothing of the sid (e.g. before a restart): stored,
    # but stamped with carol as writer, so readers refuse to replay it
    h.write(CC, f"{S1}/00000001.request", frame("sidA", 1, b"FORGED"))
    h.write(CA, f"{S1}/00000002.request", frame("sidA", 2, b"real"))
    h.write(CA, f"{S1}/plain.txt", b"not a fallback file")
    h.writers.close()
    h2 = H(tmp_path, Limits(sid_grace=0))  # a new relay process on the same --data
    out = h2.send(CB, FileSync(SHARED, 0, "", sid="sidA"))
    got = {m.path: m.writer for m in to(out, CB) if type(m) is FileWrite}
    assert got == {
        f"{S1}/00000001.request": C,
        f"{S1}/00000002.request": A,
        f"{S1}/plain.txt": "",
    }
    # a later plain file over a fallback file's path clears its writer
    h2.write(CA, f"{S1}/00000002.request", b"plain now")
    assert h2.writers.writer(f"{S1}/00000002.request") == ""


def test_writer_stamp_only_for_peers_that_announced_it() -> None:
    m = FileWrite("a@b.org/x.request", "e", 1, b"x", writer=A)
    assert for_peer(m, ALL) is m
    assert for_peer(m, NONE).writer == ""  # type: ignore[union-attr]
    assert for_peer(m, frozenset({WRITER})).writer == A  # type: ignore[union-attr]
    assert "wrt" not in for_peer(m, NONE).to_dat()  # type: ignore[union-attr]


# --- session-id squatting ----------------------------------------------------------------


def test_reader_cannot_squat_the_sid_of_a_sender_that_went_away(h: H) -> None:
    h.send(CA, HotlinkOpen("sidA", S1, to=B))
    h.router.disconnect(CA)
    # carol (who may write there and saw the sid) opens her own session under it
    out = h.send(CC, HotlinkOpen("sidA", f"{SHARED}/s2"))
    assert to(out, CC) == [HotlinkReject("sidA", REASON_SESSION_IN_USE)]
    # alice comes back and gets her sid
    h.router.connect(CA, A)
    out = h.send(CA, HotlinkOpen("sidA", S1, to=B))
    assert type(to(out, CA)[0]) is Ack


def test_sid_reservation_expires(tmp_path: Path) -> None:
    h = H(tmp_path, Limits(sid_grace=60, idle_timeout=0))
    h.send(CA, HotlinkOpen("sidA", S1, to=B))
    h.router.disconnect(CA)
    h.tick(61)
    out = h.send(CC, HotlinkOpen("sidA", f"{SHARED}/s2"))
    assert type(to(out, CC)[0]) is Ack


# --- stalling and amplifying readers ----------------------------------------------------


def open_two_readers(h: H) -> None:
    h.send(CA, HotlinkOpen("sidA", S1))
    h.send(CB, HotlinkAccept("sidA", seq=0))
    h.send(CC, HotlinkAccept("sidA", seq=0))


def test_stalled_reader_dropped_honest_reader_keeps_receiving(tmp_path: Path) -> None:
    h = H(tmp_path, Limits(reader_stall_timeout=5, idle_timeout=0))
    open_two_readers(h)
    for seq in range(1, 101):
        out = h.send(CA, HotlinkData("sidA", seq, f"{S1}/{seq:08d}.request", b"x"))
        if seq % 10 == 0:
            h.send(CB, HotlinkProgress("sidA", seq))  # bob confirms, carol never does
            assert not h.tick(0.4)  # 4 s in all: not yet
    out = h.tick(1.5)
    assert to(out, CA) == [HotlinkClose("sidA", REASON_STALLED, C)]
    (close,) = to(out, CC)
    assert type(close) is HotlinkClose and close.reason.startswith(REASON_STALLED)
    assert not to(out, CB)
    out = h.send(CA, HotlinkData("sidA", 101, f"{S1}/00000101.request", b"x"))
    assert [o.conn for o in out] == [CB]  # bob still receives, carol no more
    # carol's re-accept of that session is refused (from any connection)
    out = h.send(CC2, HotlinkAccept("sidA", seq=0))
    assert to(out, CC2) == [HotlinkReject("sidA", REASON_STALLED)]
    assert not to(out, CA)


def test_reader_that_keeps_up_or_never_confirms_is_not_dropped(tmp_path: Path) -> None:
    h = H(tmp_path, Limits(reader_stall_timeout=5, idle_timeout=0))
    h.send(CA, HotlinkOpen("sidA", S1))
    h.send(CB, HotlinkAccept("sidA", seq=0))
    h.send(CC, HotlinkAccept("sidA"))  # a reference reader: confirms nothing, ever
    for seq in range(1, 50):
        h.send(CA, HotlinkData("sidA", seq, f"{S1}/{seq:08d}.request", b"x"))
        h.send(CB, HotlinkProgress("sidA", seq))
        assert not [o for o in h.tick(1) if type(o.msg) is HotlinkClose]
    # idle (nothing outstanding): a quiet reader is not stalled
    assert not h.tick(60)


def test_low_seq_resume_honoured_once_and_accepts_rate_limited(h: H) -> None:
    h.send(CA, HotlinkOpen("sidA", S1))
    h.send(CB, HotlinkAccept("sidA", seq=0))
    for seq in range(1, 1001):
        h.send(CA, HotlinkData("sidA", seq, f"{S1}/{seq:08d}.request", b"x"))
    h.send(CC, HotlinkAccept("sidA", seq=0))
    h.send(CC, HotlinkProgress("sidA", 1000))
    # carol alternates Accept(seq=0) between two connections
    resumes = []
    refused = 0
    for i in range(80):  # 20 per second for 4 s
        out = h.send(CC2 if i % 2 == 0 else CC, HotlinkAccept("sidA", seq=0))
        resumes += [m.seq for m in to(out, CA) if type(m) is HotlinkAccept]
        refused += sum(1 for m in to(out, CC2) + to(out, CC) if type(m) is HotlinkReject)
        h.clock.t += 0.05
    assert resumes.count(0) == 1  # one honoured resume from 0; the rest from 1000
    assert set(resumes) == {0, 1000}
    # past the burst 2 accepts/s are passed on (a refused one leaves the old leg reading)
    assert refused >= 15 and len(resumes) <= ACCEPT_BURST + 10
    # a minute later a low resume is honoured again (a restarted reader agent)
    h.clock.t += 61
    out = h.send(CC2, HotlinkAccept("sidA", seq=500))
    assert [m.seq for m in to(out, CA) if type(m) is HotlinkAccept] == [500]


# --- agent: a sender whose sid was taken goes on under a new one --------------------------


def test_sender_recovers_from_session_id_in_use() -> None:
    from hotlink.agent.core.effects import Send, SidChanged
    from hotlink.agent.core.limits import StreamLimits
    from hotlink.agent.core.paths import FallbackMode
    from hotlink.agent.core.sender import MAX_SID_CHANGES, SenderStream
    from hotlink.agent.core.state import SessionState
    from hotlink.wire.frames import Frame

    sids = iter(f"new{i}" for i in range(10))
    st = SenderStream(
        S1,
        sid="sidA",
        mode=FallbackMode.OFF,
        limits=StreamLimits(),
        link_up=True,
        new_sid=lambda: next(sids),
    )
    st.start()
    st.on_acked()
    st.on_accept(B, None)
    st.app_frames([Frame(b"x")] * 3)
    while st.pending:
        st.frame_sent()
    st.on_link_down()  # the three go back to the queue for the re-open
    st.app_frames([Frame(b"y")])
    st.on_link_up()
    out = st.on_reject("", REASON_SESSION_IN_USE, 0.0)
    assert SidChanged("sidA", "new0") in out
    opens = [e.msg for e in out if type(e) is Send and type(e.msg) is HotlinkOpen]
    assert opens == [HotlinkOpen("new0", S1, "", "")]
    assert st.state is SessionState.PENDING and st.sid == "new0"
    # the frames it still holds go out under the new sid, seqs unchanged
    assert [(d.sid, d.seq) for d in st.pending] == [
        ("new0", 1),
        ("new0", 2),
        ("new0", 3),
        ("new0", 4),
    ]
    st.on_acked()
    assert st.sid_changes == 0 and st.state is SessionState.OPEN
    # a relay that refuses every sid: REJECTED after MAX_SID_CHANGES tries in a row
    for _ in range(MAX_SID_CHANGES):
        st.on_reject("", REASON_SESSION_IN_USE, 0.0)
        assert st.state is SessionState.PENDING
    st.on_reject("", REASON_SESSION_IN_USE, 0.0)
    assert st.state is SessionState.REJECTED


def test_writer_ledger_shared_by_cluster_nodes(tmp_path: Path) -> None:
    """Relay nodes of a cluster share --data: each sees what the others recorded,
    also after one of them compacted the log."""
    n1, n2 = WriterLedger(tmp_path), WriterLedger(tmp_path)
    n1.record("a@x.org/s/1.request", A)
    assert n2.writer("a@x.org/s/1.request") == A
    n1._compact()  # a new file (inode) under the same name
    n2.record("a@x.org/s/2.request", C)
    n1.record("a@x.org/s/3.request", A)
    assert n1.writer("a@x.org/s/2.request") == C
    assert n2.writer("a@x.org/s/3.request") == A
    n1.close()
    n2.close()
    n3 = WriterLedger(tmp_path)
    assert [n3.writer(f"a@x.org/s/{i}.request") for i in (1, 2, 3)] == [A, C, A]
    n3.close()


def test_reader_record_keeps_the_sender() -> None:
    """A restarted reader's catch-up (before the Open comes again) checks fallback files
    against the sender it recorded, not a guess from the path's owner."""
    from dataclasses import asdict

    from hotlink.agent.state import SessionRecord

    rec = SessionRecord(S1, 2, sid="sidA", delivered=4, sender=C)
    assert SessionRecord.from_dict(asdict(rec)).sender == C
    old = {k: v for k, v in asdict(rec).items() if k != "sender"}  # an older state file
    assert SessionRecord.from_dict(old).sender == ""


def test_reservations_bounded_per_user() -> None:
    from hotlink.relay.sid_guard import MAX_RESERVED_PER_USER, SidRegistry

    reg = SidRegistry(grace=100)
    reg.opened("alice-1", S1, A)
    reg.ended("alice-1", S1, A, 0.0)
    for i in range(MAX_RESERVED_PER_USER + 10):  # carol churns sessions
        reg.opened(f"c{i}", f"{SHARED}/c", C)
        reg.ended(f"c{i}", f"{SHARED}/c", C, 1.0)
    assert len(reg.by_owner[C]) == MAX_RESERVED_PER_USER
    assert reg.reserved_for("c0", 2.0) == ""  # her oldest went, not alice's
    assert reg.reserved_for("alice-1", 2.0) == A
    reg.expire(100.5)
    assert reg.reserved_for("alice-1", 100.5) == "" and list(reg.by_owner) == [C]
    reg.expire(101.5)
    assert not reg.reserved and not reg.by_owner


def test_sender_resumes_its_apps_when_the_stalling_reader_is_dropped() -> None:
    from hotlink.agent.core.effects import PauseApps, ResumeApps
    from hotlink.agent.core.limits import StreamLimits
    from hotlink.agent.core.paths import FallbackMode
    from hotlink.agent.core.sender import SenderStream
    from hotlink.wire.frames import Frame

    st = SenderStream(
        S1, sid="s", mode=FallbackMode.OFF, limits=StreamLimits(resend_frames=10), link_up=True
    )
    st.start()
    st.on_acked()
    st.on_accept(B, 0)
    st.on_accept(C, 0)
    out = st.app_frames([Frame(b"x")] * 30)
    while st.pending:
        st.frame_sent()
    out = st.transmit_done(False, True)
    assert any(type(e) is PauseApps for e in out) and st.reading_paused
    assert not any(type(e) is ResumeApps for e in st.on_progress(B, 30))  # carol holds it
    out = st.on_close(C, REASON_STALLED)
    assert any(type(e) is ResumeApps for e in out) and not st.reading_paused
    assert C not in st.readers and not st.recent  # bob confirmed everything
