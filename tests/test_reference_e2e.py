"""End-to-end without Go: a client that speaks only what the reference's Go client
speaks (raw WS, no `X-Hotlink-Extensions`, Opens on a file path) against the real
relay and a real agent. tests/test_interop_go.py runs the reference's own code.
"""

from __future__ import annotations

import asyncio

import msgpack
import pytest
from fixtures_agent import AppClient, acl_yaml
from fixtures_relay import relay_client
from hotlink.v1 import agent_pb2 as pb
from hotlink.wire.envelope import decode
from hotlink.wire.extensions import HDR_EXTENSIONS
from hotlink.wire.messages import (
    Ack,
    FileWrite,
    HotlinkAccept,
    HotlinkClose,
    HotlinkData,
    HotlinkOpen,
    HotlinkProgress,
)
from websockets.asyncio.client import connect

pytestmark = pytest.mark.e2e

A = "alice@example.org"
B = "bob@example.org"
REF_PATH = f"{A}/_mpc/0_to_1"  # the reference sender's session
EXT_PATH = f"{A}/_mpc/0_to_2"  # a sender that announced the extensions (control)
N = 20


def _dat(raw: bytes | str) -> dict:
    """The payload map exactly as it came on the wire (msgpack keys unchanged)."""
    assert isinstance(raw, bytes)
    return msgpack.unpackb(msgpack.unpackb(raw[4:])["dat"])


class Recorder:
    """A raw client's receive side: every frame it got, decoded and raw."""

    def __init__(self, client) -> None:
        self.client = client
        self.got: list[tuple[object, bytes | str]] = []

    async def next(self, cls: type, pred=lambda m: True, timeout: float = 15.0):
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.client.ws.recv()
                msg = decode(raw).msg
                self.got.append((msg, raw))
                if isinstance(msg, cls) and pred(msg):
                    return msg, raw

    async def file_write(self, path: str, content: bytes, mid: str) -> None:
        """Upload as the reference does; its Ack must name our id in the Go field."""
        await self.client.send(FileWrite(path, "", len(content), content), id=mid)
        _, raw = await self.next(Ack, lambda m: m.original_id == mid)
        assert _dat(raw) == {"OriginalId": mid}


def test_reference_sender_to_our_reader(relay, agent_factory):
    bob = agent_factory(B)
    bob.open(REF_PATH)
    bob.open(EXT_PATH)
    app_ref = AppClient(bob.session_dir(REF_PATH))
    app_ext = AppClient(bob.session_dir(EXT_PATH))

    async def scenario() -> Recorder:
        async with (
            relay_client(relay, A, extensions=None) as ref,
            relay_client(relay, A) as ext,
        ):
            assert HDR_EXTENSIONS not in ref.ws.response.headers  # nothing was announced
            announced = ext.ws.response.headers[HDR_EXTENSIONS]
            assert announced == "acks,direct,file-sync,reader-legs,resume,stream-start,writer"
            rec = Recorder(ref)
            await rec.file_write(f"{A}/syft.pub.yaml", acl_yaml(["*"]).encode(), "acl")
            # the reference sender opens on its first file's path
            await ref.send(HotlinkOpen("ref-sid", f"{REF_PATH}/00000001.request"))
            acc, raw = await rec.next(HotlinkAccept)
            assert acc.sid == "ref-sid" and _dat(raw) == {"sid": "ref-sid"}  # no frm, no seq
            for seq in range(1, N + 1):
                name = f"{REF_PATH}/{seq:08d}.request"
                await ref.send(HotlinkData("ref-sid", seq, name, b"r%d" % seq))
            got = await asyncio.to_thread(app_ref.recv_n, N)
            assert [f.seq for f in got] == list(range(1, N + 1))
            # the app sees the full datasite path, as from the reference's reader
            assert [f.path for f in got] == [f"{REF_PATH}/{s:08d}.request" for s in range(1, N + 1)]
            # control: the announcing sender does get bob's progress. bob reports the
            # first session before this one, on the same connection, so once this
            # arrives, anything for the reference sender has been sent to it too.
            await ext.send(HotlinkOpen("ext-sid", EXT_PATH))
            await ext.recv_type(HotlinkAccept)
            await ext.send(HotlinkData("ext-sid", 1, f"{EXT_PATH}/1.request", b"x"))
            assert (await asyncio.to_thread(app_ext.recv)).path == f"{EXT_PATH}/1.request"
            async with asyncio.timeout(15):
                while True:
                    p = await ext.recv_type(HotlinkProgress)
                    if p.sid == "ext-sid" and p.seq == 1:
                        break
            # a round trip behind whatever the relay sent the reference sender
            await rec.file_write(f"{A}/barrier.txt", b"b", "bar")
            sess = await asyncio.to_thread(bob.session, REF_PATH)
            assert sess.counters.frames_received == N and sess.session_id == "ref-sid"
            await ref.send(HotlinkClose("ref-sid", "done"))
            return rec

    rec = asyncio.run(scenario())
    types = [type(m).__name__ for m, _ in rec.got]
    # only reference messages, and only these: no Ack of the open, no progress (16),
    # no FileSync (15), no Error about the data frames
    assert types == ["Ack", "HotlinkAccept", "Ack"], types


def test_our_sender_to_reference_reader(relay, agent_factory):
    alice = agent_factory(A)
    s = alice.open("_mpc/0_to_1", fallback_mode=pb.FALLBACK_MODE_OFF)
    assert s.state == pb.SESSION_STATE_OPEN
    writer = AppClient(alice.session_dir(REF_PATH))

    async def scenario() -> list[tuple[object, bytes | str]]:
        async with relay_client(relay, B, extensions=None) as bob:
            rec = Recorder(bob)
            offer, raw = await rec.next(HotlinkOpen, lambda m: m.path == REF_PATH)
            assert _dat(raw) == {"sid": offer.sid, "pth": REF_PATH, "frm": A}
            await bob.send(HotlinkAccept(offer.sid), id="acc")
            await asyncio.to_thread(alice.wait_session, REF_PATH, lambda x: B in x.readers)
            # a reference app names its frames with the full datasite path
            writer.send(b"one", path=f"{REF_PATH}/00000001.request")
            writer.send(b"two", path="x.request")
            writer.send(b"three")
            datas = [(await rec.next(HotlinkData))[0] for _ in range(3)]
            assert [(d.seq, d.path, d.payload) for d in datas] == [
                (1, f"{REF_PATH}/00000001.request", b"one"),
                (2, f"{REF_PATH}/x.request", b"two"),
                (3, f"{REF_PATH}/00000003.request", b"three"),
            ]
            await rec.file_write(f"{B}/barrier.txt", b"b", "bar")
            return rec.got

    got = asyncio.run(scenario())
    # no Ack for the reader's Accept (it did not announce `acks`)
    assert not [m for m, _ in got if isinstance(m, Ack) and m.original_id == "acc"]
    # a frame naming another session's file closes that app connection, with a reason
    bad = AppClient(alice.session_dir(REF_PATH))
    bad.send(b"x", path=f"{A}/_mpc/other/1.request")
    assert bad.is_closed()
    assert "outside this session" in alice.log_text()


def test_relay_answers_the_extension_header(relay):
    async def scenario() -> tuple[str | None, str | None]:
        hdr = {"Authorization": f"Bearer {relay.token(A)}", HDR_EXTENSIONS: "resume, nope"}
        async with connect(relay.events_url, additional_headers=hdr) as ws:
            some = ws.response.headers.get(HDR_EXTENSIONS)
        hdr = {"Authorization": f"Bearer {relay.token(A)}"}
        async with connect(relay.events_url, additional_headers=hdr) as ws:
            none = ws.response.headers.get(HDR_EXTENSIONS)
        return some, none

    assert asyncio.run(scenario()) == ("resume", None)
