"""Sans-I/O tests of the relay's Router: sessions, ACL checks, file writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hotlink.relay.acl import AclIndex, parse_acl
from hotlink.relay.router import Outgoing, Router
from hotlink.relay.store import Store
from hotlink.wire.envelope import Envelope
from hotlink.wire.errors import FrameTooLarge, ProtocolError
from hotlink.wire.messages import (
    REASON_PERMISSION_DENIED,
    REASON_READER_GONE,
    REASON_SENDER_GONE,
    REASON_SESSION_IN_USE,
    REASON_UNKNOWN_SESSION,
    Ack,
    Error,
    FileWrite,
    HotlinkAccept,
    HotlinkClose,
    HotlinkData,
    HotlinkOpen,
    HotlinkReject,
    Message,
    Nack,
    System,
    Unsupported,
)

A = "alice@example.org"  # owner / sender
B = "bob@example.org"  # reader
C = "carol@example.org"  # reader
S = "stranger@example.org"
PATH = f"{A}/_mpc/0_to_1"
READERS_ACL = f'rules: [{{pattern: "**", access: {{read: ["{B}", "{C}"]}}}}]'

# connection ids
CA, CB, CC, CS = 1, 2, 3, 4


class Harness:
    def __init__(self, tmp: Path, acl_text: str | None = READERS_ACL) -> None:
        self.store = Store(tmp)
        self.acl = AclIndex()
        if acl_text is not None:
            self.acl.set_file(A, parse_acl(acl_text))
        self.router = Router(self.acl, self.store)
        self.n = 0

    def connect(self, cid: int, user: str) -> list[Outgoing]:
        return self.router.connect(cid, user)

    def send(self, cid: int, msg: Message, tp: str = "") -> list[Outgoing]:
        self.n += 1
        return self.router.handle(cid, Envelope(f"m{self.n}", msg, tp))

    def open_session(self, sid: str = "s1", path: str = PATH, to: str = "") -> list[Outgoing]:
        return self.send(CA, HotlinkOpen(sid, path, to=to))


def to(out: list[Outgoing], cid: int) -> list[Message]:
    return [o.msg for o in out if o.conn == cid]


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    h = Harness(tmp_path)
    for cid, user in ((CA, A), (CB, B), (CC, C), (CS, S)):
        out = h.connect(cid, user)
        assert out == [Outgoing(cid, System(h.router.version, "ok"))]
    return h


def test_open_forwarded_to_readers_only(h: Harness) -> None:
    out = h.open_session()
    assert to(out, CA) == [Ack("m1")]
    assert to(out, CB) == [HotlinkOpen("s1", PATH, frm=A, answers=True)]
    assert to(out, CC) == [HotlinkOpen("s1", PATH, frm=A, answers=True)]
    assert to(out, CS) == []


def test_forged_frm_is_overwritten(h: Harness) -> None:
    out = h.send(CA, HotlinkOpen("s1", PATH, frm=S))
    assert to(out, CB) == [HotlinkOpen("s1", PATH, frm=A, answers=True)]


def test_open_with_to(h: Harness) -> None:
    out = h.open_session(to=B)
    assert to(out, CB) == [HotlinkOpen("s1", PATH, frm=A, to=B, answers=True)]
    assert to(out, CC) == []
    # carol may read, but is not `to`
    assert to(h.send(CC, HotlinkAccept("s1")), CC) == [
        HotlinkReject("s1", REASON_PERMISSION_DENIED)
    ]


def test_open_to_without_read_rejected(h: Harness) -> None:
    out = h.open_session(to=S)
    assert out == [Outgoing(CA, HotlinkReject("s1", REASON_PERMISSION_DENIED))]


def test_open_without_write_rejected(h: Harness) -> None:
    out = h.send(CB, HotlinkOpen("s1", PATH))
    assert out == [Outgoing(CB, HotlinkReject("s1", REASON_PERMISSION_DENIED))]
    assert "s1" not in h.router.sessions


@pytest.mark.parametrize(
    "path",
    [f"/{A}/x", f"{A}/../{B}/x", f"{A}//x", f"{A}/x\x00", f"{A}\\x", "", "noemail/x"],
)
def test_open_bad_path_rejected(h: Harness, path: str) -> None:
    (o,) = h.send(CA, HotlinkOpen("s1", path))
    assert o.conn == CA and isinstance(o.msg, HotlinkReject) and "bad request" in o.msg.reason


@pytest.mark.parametrize(
    ("path", "why"),
    [
        (A, "needs a folder inside the datasite"),
        (f"{A}/00000001.request", "needs a folder inside the datasite"),  # reference form
        (f"{A}/{'x' * 256}", "over 255 bytes"),
        (f"{A}/{'é' * 128}", "over 255 bytes"),  # 256 bytes in UTF-8
    ],
)
def test_open_refused_where_no_agent_could_have_the_session(
    h: Harness, path: str, why: str
) -> None:
    """The datasite root, and a name no file system takes, are refused as the agent
    refuses them when a session is opened there."""
    (o,) = h.send(CA, HotlinkOpen("s1", path))
    assert isinstance(o.msg, HotlinkReject) and why in o.msg.reason, o
    assert "s1" not in h.router.sessions
    assert to(h.send(CA, HotlinkOpen("s2", f"{A}/{'x' * 255}")), CA) == [Ack(f"m{h.n}")]


def test_owner_prefix_is_not_ownership(h: Harness) -> None:
    out = h.send(CA, HotlinkOpen("s1", f"{A}.evil/x"))
    assert to(out, CA) == [HotlinkReject("s1", REASON_PERMISSION_DENIED)]


def test_hijack_rejected(h: Harness) -> None:
    h.acl.set_file(
        A, parse_acl(f'rules: [{{pattern: "**", access: {{write: ["{S}"], read: ["{B}"]}}}}]')
    )
    h.open_session()
    out = h.send(CS, HotlinkOpen("s1", PATH))
    assert out == [Outgoing(CS, HotlinkReject("s1", REASON_SESSION_IN_USE))]
    assert h.router.sessions["s1"].sender == A


def test_accept_data_close_flow(h: Harness) -> None:
    h.open_session()
    out = h.send(CB, HotlinkAccept("s1"))
    assert to(out, CB) == [Ack("m2")]
    assert to(out, CA) == [HotlinkAccept("s1", frm=B)]
    # idempotent
    assert h.send(CB, HotlinkAccept("s1")) == [Outgoing(CB, Ack("m3"))]
    h.send(CC, HotlinkAccept("s1"))
    d = HotlinkData("s1", 1, f"{PATH}/00000001.request", b"x")
    out = h.send(CA, d, tp="00-abc-def-01")
    assert out == [Outgoing(CB, d, "00-abc-def-01"), Outgoing(CC, d, "00-abc-def-01")]
    assert out[0].msg is d  # forwarded without copying
    out = h.send(CA, HotlinkClose("s1", "done"))
    assert to(out, CB) == [HotlinkClose("s1", "done")]
    assert to(out, CC) == [HotlinkClose("s1", "done")]
    assert "s1" not in h.router.sessions
    assert h.send(CA, HotlinkData("s1", 2)) == [
        Outgoing(CA, HotlinkReject("s1", REASON_UNKNOWN_SESSION))
    ]


def test_accept_again_with_a_seq_asks_the_sender_for_a_re_send(h: Harness) -> None:
    """A reader whose app could not take frames asks for them again on its open leg:
    the Accept with a seq goes to the sender (the leg is unchanged); without a seq it
    stays idempotent; over the accept rate it is only acked (the reader asks later)."""
    h.open_session()
    h.send(CB, HotlinkAccept("s1"))
    out = h.send(CB, HotlinkAccept("s1", seq=7))
    assert to(out, CA) == [HotlinkAccept("s1", frm=B, seq=7)] and to(out, CB) == [Ack("m3")]
    assert h.router.sessions["s1"].readers == {CB: B}
    for _ in range(40):
        out = h.send(CB, HotlinkAccept("s1", seq=7))
    assert out == [Outgoing(CB, Ack(f"m{h.n}"))]


def test_data_only_from_sender(h: Harness) -> None:
    h.open_session()
    h.send(CB, HotlinkAccept("s1"))
    (o,) = h.send(CB, HotlinkData("s1", 1, "", b"x"))
    assert o.conn == CB and isinstance(o.msg, Error) and o.msg.code == 403


@pytest.mark.parametrize(
    "pth", [f"{A}/_mpc/other/1.request", f"{A}/_mpc/0_to_10/x", f"{PATH}/../x", f"{PATH}//x"]
)
def test_data_path_outside_session(h: Harness, pth: str) -> None:
    h.open_session()
    h.send(CB, HotlinkAccept("s1"))
    (o,) = h.send(CA, HotlinkData("s1", 1, pth, b"x"))
    assert o.conn == CA and isinstance(o.msg, Error) and o.msg.code == 400


def test_forward_names_the_readers_only_when_that_is_all_handle_does(h: Harness) -> None:
    """`forward` is the adapter's shortcut for `handle`: the readers to send the frame
    to when `handle` would only forward it, else None (and `handle` says the rest)."""
    h.open_session()
    h.send(CB, HotlinkAccept("s1"))
    h.send(CC, HotlinkAccept("s1"))
    r = h.router
    ok = HotlinkData("s1", 5, f"{PATH}/00000005.request", b"x")
    assert r.forward(CA, ok) == (CB, CC)
    assert r.sessions["s1"].last_seq == 5
    assert h.send(CA, ok) == [Outgoing(CB, ok), Outgoing(CC, ok)]
    for cid, msg in (
        (CA, HotlinkData("nope", 6)),  # unknown session
        (CB, HotlinkData("s1", 6)),  # not its sender
        (CA, HotlinkData("s1", 6, f"{PATH}/../x")),  # outside the session
    ):
        assert r.forward(cid, msg) is None
        assert not any(o.msg is msg for o in h.send(cid, msg))  # refused by handle too
    assert r.sessions["s1"].last_seq == 5  # refused frames do not count
    h.acl.set_file(A, parse_acl(f'rules: [{{pattern: "**", access: {{read: ["{C}"]}}}}]'))
    d = HotlinkData("s1", 7)
    assert r.forward(CA, d) is None  # an ACL change to apply first: handle's job
    out = h.send(CA, d)
    assert to(out, CB) == [HotlinkClose("s1", REASON_PERMISSION_DENIED)]
    assert to(out, CC) == [d]
    assert r.forward(CA, HotlinkData("s1", 8)) == (CC,)


def test_accept_unknown_and_without_read(h: Harness) -> None:
    assert h.send(CB, HotlinkAccept("nope")) == [
        Outgoing(CB, HotlinkReject("nope", REASON_UNKNOWN_SESSION))
    ]
    h.open_session()
    assert h.send(CS, HotlinkAccept("s1")) == [
        Outgoing(CS, HotlinkReject("s1", REASON_PERMISSION_DENIED))
    ]
    assert h.send(CA, HotlinkAccept("s1")) == []  # sender's own accept ignored


def test_reader_reject_passed_to_sender(h: Harness) -> None:
    h.open_session()
    out = h.send(CB, HotlinkReject("s1", "busy"))
    assert out == [Outgoing(CA, HotlinkReject("s1", "busy", frm=B))]
    assert h.send(CS, HotlinkReject("s1", "x")) == []  # no read access: ignored


def test_late_joiner_gets_open(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.connect(CA, A)
    h.open_session()
    h.open_session(sid="s2", to=C)
    out = h.connect(CB, B)
    assert to(out, CB)[1:] == [HotlinkOpen("s1", PATH, frm=A, answers=True)]
    out = h.connect(CC, C)
    assert to(out, CC)[1:] == [
        HotlinkOpen("s1", PATH, frm=A, answers=True),
        HotlinkOpen("s2", PATH, A, C, answers=True),
    ]
    assert to(h.connect(CS, S), CS) == [System(h.router.version, "ok")]


def test_reader_drop(h: Harness) -> None:
    h.open_session()
    h.send(CB, HotlinkAccept("s1"))
    h.send(CC, HotlinkAccept("s1"))
    out = h.router.disconnect(CB)
    assert out == [Outgoing(CA, HotlinkClose("s1", REASON_READER_GONE, frm=B))]
    d = HotlinkData("s1", 1)
    assert h.send(CA, d) == [Outgoing(CC, d)]


def test_sender_drop_and_reopen(h: Harness) -> None:
    h.open_session()
    h.send(CB, HotlinkAccept("s1"))
    out = h.router.disconnect(CA)
    assert to(out, CB) == [HotlinkClose("s1", REASON_SENDER_GONE)]
    assert to(out, CC) == [HotlinkClose("s1", REASON_SENDER_GONE)]  # was offered
    assert h.router.sessions == {}
    assert h.router.conns[CB].reading == set() and h.router.conns[CB].offered == set()
    # the sender comes back and re-opens the same sid; readers get the open again
    h.connect(9, A)
    out = h.send(9, HotlinkOpen("s1", PATH))
    assert to(out, 9) == [Ack(f"m{h.n}")]
    assert to(out, CB) == [HotlinkOpen("s1", PATH, frm=A, answers=True)]


def test_reopen_same_user_rebinds(h: Harness) -> None:
    h.open_session()
    h.send(CB, HotlinkAccept("s1"))
    h.connect(9, A)
    out = h.send(9, HotlinkOpen("s1", PATH))
    assert to(out, 9)[0] == Ack(f"m{h.n}")
    d = HotlinkData("s1", 5)
    assert h.send(9, d) == [Outgoing(CB, d)]
    assert isinstance(h.send(CA, d)[0].msg, Error)  # old connection no longer sends
    assert h.router.disconnect(CA) == []  # old connection's drop does not end it
    assert "s1" in h.router.sessions


def test_acl_change_mid_session(h: Harness) -> None:
    h.open_session()
    h.send(CB, HotlinkAccept("s1"))
    h.send(CC, HotlinkAccept("s1"))
    # alice uploads a new ACL: bob loses read access
    new = f'rules: [{{pattern: "**", access: {{read: ["{C}", "{S}"]}}}}]'
    out = h.send(CA, FileWrite(f"{A}/syft.pub.yaml", content=new.encode()))
    assert to(out, CA)[0] == Ack(f"m{h.n}")
    assert HotlinkClose("s1", REASON_PERMISSION_DENIED, frm=B) in to(out, CA)
    assert HotlinkClose("s1", REASON_PERMISSION_DENIED) in to(out, CB)
    assert HotlinkOpen("s1", PATH, frm=A, answers=True) in to(out, CS)  # stranger gained access
    d = HotlinkData("s1", 1)
    assert h.send(CA, d) == [Outgoing(CC, d)]


def test_acl_change_seen_on_data_path(h: Harness) -> None:
    """An ACL change that did not come through the router is still noticed."""
    h.open_session()
    h.send(CB, HotlinkAccept("s1"))
    h.acl.set_file(A, parse_acl(""))  # nobody but alice
    out = h.send(CA, HotlinkData("s1", 1))
    assert to(out, CB) == [HotlinkClose("s1", REASON_PERMISSION_DENIED)]
    assert not any(isinstance(m, HotlinkData) for m in to(out, CB))


def test_sender_loses_write_session_closed(h: Harness) -> None:
    h.acl.set_file(
        f"{A}/_mpc", parse_acl(f'rules: [{{pattern: "**", access: {{write: ["{S}"]}}}}]')
    )
    h.acl.set_file(
        A, parse_acl(f'rules: [{{pattern: "**", access: {{read: ["{B}"], write: ["{S}"]}}}}]')
    )
    out = h.send(CS, HotlinkOpen("s9", PATH))
    assert to(out, CS) == [Ack(f"m{h.n}")]
    h.acl.set_file(f"{A}/_mpc", parse_acl('rules: [{pattern: "**", access: {read: ["*"]}}]'))
    out = h.send(CS, HotlinkData("s9", 1))
    assert HotlinkClose("s9", REASON_PERMISSION_DENIED) in to(out, CS)
    assert "s9" not in h.router.sessions


def test_file_write(h: Harness, tmp_path: Path) -> None:
    out = h.send(CA, FileWrite(f"{A}/pub/x.txt", "e1", 2, b"hi"))
    assert to(out, CA) == [Ack(f"m{h.n}")]
    assert (tmp_path / "datasites" / A / "pub" / "x.txt").read_bytes() == b"hi"
    (fb,) = to(out, CB)
    assert isinstance(fb, FileWrite) and fb.content == b"hi" and fb.path == f"{A}/pub/x.txt"
    assert to(out, CS) == []
    # stranger may not write; bob (reader) may not either
    assert to(h.send(CS, FileWrite(f"{A}/pub/y", content=b"z")), CS) == [
        Nack(f"m{h.n}", REASON_PERMISSION_DENIED)
    ]
    assert isinstance(h.send(CB, FileWrite(f"{A}/../x", content=b"z"))[0].msg, Nack)
    listed = h.store.list_since(f"{A}/pub", 0)
    assert [f.path for f in listed] == [f"{A}/pub/x.txt"]
    assert h.store.list_since(f"{A}/pub", listed[0].mtime_ns) == []


def test_acl_upload_only_by_owner_and_validated(h: Harness, tmp_path: Path) -> None:
    h.acl.set_file(A, parse_acl(f'rules: [{{pattern: "**", access: {{admin: ["{B}"]}}}}]'))
    gen = h.acl.generation
    out = h.send(CB, FileWrite(f"{A}/syft.pub.yaml", content=b"rules: []"))
    assert out == [Outgoing(CB, Nack(f"m{h.n}", REASON_PERMISSION_DENIED))]
    out = h.send(CA, FileWrite(f"{A}/syft.pub.yaml", content=b"rules: ["))
    (o,) = out
    assert isinstance(o.msg, Nack) and "invalid YAML" in o.msg.error
    assert h.acl.generation == gen
    assert not (tmp_path / "datasites" / A / "syft.pub.yaml").exists()


def test_bad_input_answers(h: Harness) -> None:
    (o,) = h.router.bad_frame(CB, ProtocolError("garbage"))
    assert isinstance(o.msg, Error) and o.msg.code == 400
    (o,) = h.router.bad_frame(CB, FrameTooLarge("big"))
    assert isinstance(o.msg, Error) and o.msg.code == 413
    (o,) = h.send(CB, Unsupported(6, {}))
    assert isinstance(o.msg, Error) and "unsupported" in o.msg.message
    assert h.send(CB, Ack("x")) == []
    (o,) = h.send(CA, HotlinkOpen("", PATH))
    assert isinstance(o.msg, Error)


def test_close_by_non_member(h: Harness) -> None:
    h.open_session()
    (o,) = h.send(CS, HotlinkClose("s1"))
    assert isinstance(o.msg, Error) and o.msg.code == 403
    assert "s1" in h.router.sessions


def test_reader_close_ends_only_its_leg(h: Harness) -> None:
    h.open_session()
    h.send(CB, HotlinkAccept("s1"))
    out = h.send(CB, HotlinkClose("s1", "bye"))
    assert out == [Outgoing(CA, HotlinkClose("s1", "bye", frm=B))]
    assert h.router.sessions["s1"].deliver == ()
