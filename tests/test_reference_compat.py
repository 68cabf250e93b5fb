"""Compatibility with reference (SyftBox Go) clients, without Go: sans-I/O checks of
the rules the interop run (`../shared/interop/run.sh`, tests/test_interop_go.py)
exercises against the reference's own code.

- An Open on a file path (`.../0_to_1/00000001.request`, what the reference sender
  sends) is the session on its folder, in the relay and in the agent.
- Extensions (types 15/16, extension fields, open/accept Acks) only reach peers that
  announced them.
- Frame names between apps and the agent (full datasite paths, as the reference).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from hotlink.agent.appnames import session_relative
from hotlink.relay.acl import AclIndex, parse_acl
from hotlink.relay.router import Outgoing, Router
from hotlink.relay.store import Store
from hotlink.wire import extensions as x
from hotlink.wire.envelope import Envelope
from hotlink.wire.errors import ProtocolError
from hotlink.wire.frames import Frame
from hotlink.wire.messages import (
    Ack,
    Error,
    FileSync,
    FileWrite,
    HotlinkAccept,
    HotlinkClose,
    HotlinkData,
    HotlinkOpen,
    HotlinkProgress,
    HotlinkReject,
    Message,
    System,
)
from hotlink.wire.paths import session_path

A = "alice@example.org"
B = "bob@example.org"
PATH = f"{A}/_mpc/0_to_1"
CA, CB = 1, 2


# ------------------------------------------------------------------ open on a file


@pytest.mark.parametrize(
    "pth,folder",
    [
        (f"{PATH}/00000001.request", PATH),
        (f"{PATH}/x.response", PATH),
        (PATH, PATH),  # a folder stays itself
        (f"{PATH}/sub.request.d", f"{PATH}/sub.request.d"),  # only a suffix counts
        (f"{A}/x.request", A),  # as the reference: the parent, even the datasite root
    ],
)
def test_session_path(pth: str, folder: str) -> None:
    assert session_path(pth) == folder


@pytest.mark.parametrize("path", ["_mpc/x.request", f"{A}/_mpc/x.response"])
def test_agent_refuses_a_session_folder_named_like_a_file(path: str) -> None:
    """Its Open would name the parent folder (as above), so nobody could read it."""
    from hotlink.agent.sessions import resolve_path

    with pytest.raises(ProtocolError, match=r"named like a \.request file"):
        resolve_path(B, path)


class Relay:
    """The Router with alice (sender) and bob (reader) connected."""

    def __init__(self, tmp: Path, ext_a: frozenset[str], ext_b: frozenset[str]) -> None:
        acl = AclIndex()
        acl.set_file(A, parse_acl(f'rules: [{{pattern: "**", access: {{read: ["{B}"]}}}}]'))
        self.router = Router(acl, Store(tmp))
        hello = [Outgoing(CA, System(self.router.version, "ok"))]
        assert self.router.connect(CA, A, ext_a) == hello
        self.router.connect(CB, B, ext_b)
        self.n = 0

    def send(self, cid: int, msg: Message) -> list[Outgoing]:
        self.n += 1
        return self.router.handle(cid, Envelope(f"m{self.n}", msg))


def to(out: list[Outgoing], cid: int) -> list[Message]:
    return [o.msg for o in out if o.conn == cid]


def test_relay_open_on_a_file_is_its_folder(tmp_path: Path) -> None:
    r = Relay(tmp_path, x.NONE, x.NONE)  # two reference clients
    out = r.send(CA, HotlinkOpen("s1", f"{PATH}/00000001.request"))
    assert to(out, CB) == [HotlinkOpen("s1", PATH, A)]  # readers are offered the folder
    assert to(out, CA) == []  # no Ack: alice did not announce `acks`
    assert r.router.sessions["s1"].path == PATH
    assert to(r.send(CB, HotlinkAccept("s1")), CA) == [HotlinkAccept("s1", B)]
    for seq in (1, 2, 3):  # every later file of the session is inside it
        d = HotlinkData("s1", seq, f"{PATH}/{seq:08d}.request", b"x")
        assert r.send(CA, d) == [Outgoing(CB, d)]
    d = HotlinkData("s1", 4, f"{A}/_mpc/0_to_2/00000004.request", b"x")
    (o,) = r.send(CA, d)  # another folder is still outside
    assert o.conn == CA and isinstance(o.msg, Error)


def test_relay_sends_control_acks_only_to_peers_that_announced_them(tmp_path: Path) -> None:
    r = Relay(tmp_path, x.ALL, x.NONE)
    assert to(r.send(CA, HotlinkOpen("s1", PATH)), CA) == [Ack("m1")]
    out = r.send(CB, HotlinkAccept("s1"))
    assert to(out, CB) == []  # bob is a reference client: nothing but the pass-on
    assert to(out, CA) == [HotlinkAccept("s1", B)]
    assert r.send(CB, HotlinkAccept("s1")) == []  # idempotent, still no Ack
    # a FileWrite is acknowledged to everyone (the reference does that)
    out = r.send(CB, FileWrite(f"{B}/f.txt", "", 1, b"x"))
    assert to(out, CB) == [Ack("m4")]


def test_relay_refuses_file_sync_to_a_peer_that_cannot_read_the_answer(tmp_path: Path) -> None:
    r = Relay(tmp_path, x.ALL, x.ALL - {x.FILE_SYNC})
    (o,) = r.send(CB, FileSync(PATH))
    assert o.conn == CB and isinstance(o.msg, Error) and x.FILE_SYNC in o.msg.message
    out = Relay(tmp_path / "2", x.ALL, x.ALL).send(CB, FileSync(PATH))
    assert isinstance(out[-1].msg, FileSync)


# ------------------------------------------------------------- extension filtering

REF = x.NONE


@pytest.mark.parametrize(
    "msg,ext,expected",
    [
        (HotlinkProgress("s", 5, B), REF, None),
        (HotlinkProgress("s", 5, B), frozenset({x.RESUME}), HotlinkProgress("s", 5, B)),
        (FileSync(PATH, 1), REF, None),
        (FileSync(PATH, 1), frozenset({x.FILE_SYNC}), FileSync(PATH, 1)),
        # a reader-leg close would end a reference sender's session: not sent at all
        (HotlinkClose("s", "reader disconnected", B), REF, None),
        (HotlinkClose("s", "reader disconnected", B), frozenset({x.READER_LEGS}),
         HotlinkClose("s", "reader disconnected", B)),
        (HotlinkClose("s", "done"), REF, HotlinkClose("s", "done")),
        (HotlinkAccept("s", B, 7), REF, HotlinkAccept("s")),
        (HotlinkAccept("s", B, 7), frozenset({x.READER_LEGS}), HotlinkAccept("s", B)),
        (HotlinkAccept("s", B, 7), frozenset({x.RESUME}), HotlinkAccept("s", "", 7)),
        (HotlinkReject("s", "no", B), REF, HotlinkReject("s", "no")),
        (FileWrite(f"{A}/f", "e", 1, b"x", 99), REF, FileWrite(f"{A}/f", "e", 1, b"x")),
        (FileWrite(f"{A}/f", "e", 1, b"x", 99), frozenset({x.FILE_SYNC}),
         FileWrite(f"{A}/f", "e", 1, b"x", 99)),
        (HotlinkOpen("s", PATH, A, B), REF, HotlinkOpen("s", PATH, A, B)),
        (Ack("m1"), REF, Ack("m1")),
    ],
)  # fmt: skip
def test_for_peer(msg: Message, ext: frozenset[str], expected: Message | None) -> None:
    assert x.for_peer(msg, ext) == expected
    assert x.for_peer(msg, x.ALL) is msg  # our own agents get everything, uncopied


def test_negotiation_header() -> None:
    assert x.parse([]) == x.NONE
    assert x.parse([x.header_value(x.ALL)]) is x.ALL
    assert x.parse(["ACKS, future-thing", "resume"]) == {x.ACKS, x.RESUME}
    assert x.header_value(frozenset({x.RESUME, x.ACKS})) == "acks,resume"


# ----------------------------------------------------------------- app frame names


def test_sender_app_may_write_full_datasite_paths() -> None:
    prefix = PATH + "/"
    frames = [
        Frame(b"a"),
        Frame(b"b", 0, "x/y.request"),
        Frame(b"c", 0, f"{PATH}/1.request"),
        Frame(b"d", 0, "me@home.request"),  # a name with an `@`, not a datasite path
    ]
    got = list(session_relative(prefix, frames))
    assert [f.path for f in got] == ["", "x/y.request", "1.request", "me@home.request"]
    assert got[0] is frames[0]  # unchanged frames are not copied
    plain = frames[:2]
    assert session_relative(prefix, plain) is plain  # no full path: the list itself


def test_sender_app_path_of_another_session_is_refused_after_the_frames_before_it() -> None:
    frames = [Frame(b"a", 0, f"{PATH}/1.request"), Frame(b"b", 0, f"{A}/_mpc/0_to_2/2.request")]
    it = iter(session_relative(PATH + "/", frames))
    assert next(it).path == "1.request"
    with pytest.raises(ProtocolError, match="outside this session"):
        next(it)


# --------------------------------------------- the agent reads a file-path Open too


class _Link:
    """A transport that is up and records what the agent sends (sans-I/O test)."""

    from hotlink.agent.transport import LinkState

    state = LinkState.UP
    last_error = ""
    reconnects = 0
    since_ns = 0

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def set_listener(self, listener: object) -> None:
        pass

    @property
    def up(self) -> bool:
        return True

    @property
    def writable(self) -> bool:
        return True

    def send(self, msg: Message, id: str | None = None) -> str:
        self.sent.append(msg)
        return id or f"id{len(self.sent)}"


def test_agent_matches_a_file_path_open_to_its_session(tmp_path: Path) -> None:
    """A reference server forwards the sender's Open as it came (`pth` = a file)."""
    from hotlink.agent.config import AgentConfig
    from hotlink.agent.ipc import EndpointRegistry
    from hotlink.agent.runtime_dir import ensure_private_dir
    from hotlink.agent.sessions import SessionManager, SessionState

    async def main(rundir: str) -> None:
        cfg = AgentConfig(
            server="ws://127.0.0.1:1",
            email=B,
            token_file=tmp_path / "tok",
            root=tmp_path / "root",
            control=tmp_path / "ctl.sock",
        )
        link = _Link()
        mgr = SessionManager(
            cfg,
            link,  # type: ignore[arg-type]
            runtime_dir=ensure_private_dir(Path(rundir) / "run"),  # socket paths are long
            registry=EndpointRegistry(tmp_path / "ep"),
        )
        try:
            s = await mgr.open_session(PATH)
            assert s.state is SessionState.PENDING and not s.sid
            mgr.on_message(Envelope("o1", HotlinkOpen("sid1", f"{PATH}/00000001.request", A)))
            assert s.sid == "sid1" and mgr.by_sid["sid1"] is s
            assert PATH in mgr.offers and mgr.offers[PATH].path == PATH
            # it goes on to accept (after its catch-up of stored files, if any)
            assert any(getattr(m, "sid", "") == "sid1" for m in link.sent), link.sent
        finally:
            mgr.close_all()
            await mgr.files.close()

    with tempfile.TemporaryDirectory(prefix="hl-", dir="/tmp") as rundir:
        asyncio.run(main(rundir))
