"""The relay's undecoded data path (`relay/lanes.py`): a frame matched on its session's
lane gets exactly the readers `Router.forward` would give it, and anything the lane
cannot vouch for is left to the decoding path."""

from __future__ import annotations

import random

import pytest
from hotlink.relay.acl import parse_acl
from hotlink.relay.lanes import MAX_LANES
from hotlink.relay.router import _below
from hotlink.wire.envelope import decode, encode
from hotlink.wire.errors import ProtocolError
from hotlink.wire.messages import HotlinkAccept, HotlinkClose, HotlinkData, HotlinkOpen
from test_relay_router import CA, CB, CC, PATH, A, B, C, Harness, h  # noqa: F401

SID = "s1"


def frame(seq: int, path: str = f"{PATH}/00000001.request", sid: str = SID, **kw: str) -> bytes:
    return encode(HotlinkData(sid, seq, path, b"x" * 64, kw.get("etag", "")), kw.get("id"))


def decoded_forward(hs: Harness, cid: int, data: bytes) -> tuple[int, ...] | None:
    return hs.router.forward(cid, decode(data).msg)  # type: ignore[arg-type]


@pytest.fixture
def live(h: Harness) -> Harness:  # noqa: F811
    """Session s1 sent by A, read by B and C; one frame forwarded the decoding way."""
    h.open_session(SID)
    h.send(CB, HotlinkAccept(SID))
    h.send(CC, HotlinkAccept(SID))
    assert h.router.forward_frame(CA, frame(1)) is None  # no lane before a decoded frame
    assert decoded_forward(h, CA, frame(1)) == (CB, CC)
    return h


def test_next_frames_match_without_decoding(live: Harness) -> None:
    r = live.router
    s = r.sessions[SID]
    r.now = 123.0
    assert r.forward_frame(CA, frame(2)) == (CB, CC)
    assert (s.last_seq, s.last_activity) == (2, 123.0)
    assert r.forward_frame(CA, frame(7, f"{PATH}/00000007.request", etag="abc")) == (CB, CC)
    assert r.forward_frame(CA, frame(8, PATH)) == (CB, CC)  # the session's own path
    assert r.forward_frame(CA, frame(9, "")) == (CB, CC)  # no path
    assert r.forward_frame(CA, frame(3)) == (CB, CC)  # an older seq is forwarded too
    assert s.last_seq == 9


def test_readers_follow_the_session(live: Harness) -> None:
    live.send(CC, HotlinkClose(SID, "done"))
    assert live.router.forward_frame(CA, frame(2)) == (CB,)


@pytest.mark.parametrize(
    "path",
    [
        f"{PATH}/sub/00000002.request",  # deeper: valid, left to `_below`
        f"{PATH}/.",
        f"{PATH}/..",
        f"{PATH}/",
        f"{PATH}/a\\b",
        f"{PATH}/a\x01b",
        f"{PATH}/caf\u00e9.request",  # valid, but not ASCII
        f"{PATH}x/00000002.request",  # a sibling sharing the name's start
        f"{A}/_mpc/0_to_2/00000002.request",
        f"{B}/_mpc/0_to_1/00000002.request",
    ],
)
def test_paths_the_lane_leaves_to_the_decoding_path(live: Harness, path: str) -> None:
    assert live.router.forward_frame(CA, frame(2, path)) is None


@pytest.mark.parametrize("kw", [{"id": "m\u00e9"}, {"etag": "\u00e9t\u00e9"}])
def test_non_ascii_strings_are_decoded(live: Harness, kw: dict[str, str]) -> None:
    assert live.router.forward_frame(CA, frame(2, **kw)) is None


def test_a_session_whose_path_is_not_ascii_is_always_decoded(h: Harness) -> None:  # noqa: F811
    path = f"{A}/_mpc/caf\u00e9"
    h.open_session("s9", path)
    h.send(CB, HotlinkAccept("s9"))
    data = frame(1, f"{path}/00000001.request", "s9")
    assert decoded_forward(h, CA, data) == (CB,)
    assert h.router.forward_frame(CA, frame(2, f"{path}/00000002.request", "s9")) is None
    assert h.router.forward_frame(CA, frame(3, path, "s9")) is None


def test_other_connections_and_sessions_get_no_lane(live: Harness) -> None:
    r = live.router
    assert r.forward_frame(CB, frame(2)) is None  # not its sender
    assert r.forward_frame(CA, frame(2, sid="s2")) is None  # not a session it sent on
    assert r.forward_frame(CA, b"SB\x01\x01" + b"\x00" * 40) is None  # not a data frame


def test_acl_change_sends_frames_through_the_recheck(live: Harness) -> None:
    r = live.router
    live.acl.set_file(A, parse_acl(f'rules: [{{pattern: "**", access: {{read: ["{B}"]}}}}]'))
    assert r.forward_frame(CA, frame(2)) is None
    out = r.handle(CA, decode(frame(2)))  # the recheck drops C, then forwards
    assert [o.conn for o in out if type(o.msg) is HotlinkData] == [CB]
    assert r.forward_frame(CA, frame(3)) == (CB,)


def test_ended_session_and_gone_connection_close_the_lane(live: Harness) -> None:
    r = live.router
    live.send(CA, HotlinkClose(SID, "done"))
    assert r.forward_frame(CA, frame(2)) is None
    assert r.lanes.by_conn[CA] == []
    live.send(CA, HotlinkOpen(SID, PATH))  # a new session with the same id
    live.send(CB, HotlinkAccept(SID))
    assert r.forward_frame(CA, frame(1)) is None
    assert decoded_forward(live, CA, frame(1)) == (CB,)
    assert r.forward_frame(CA, frame(2)) == (CB,)
    r.disconnect(CA)
    assert CA not in r.lanes.by_conn


def test_a_connection_keeps_its_last_sessions(live: Harness) -> None:
    r = live.router
    sids = [f"t{i}" for i in range(MAX_LANES + 1)]
    for sid in sids:
        path = f"{A}/_mpc/{sid}"
        live.send(CA, HotlinkOpen(sid, path))
        live.send(CB, HotlinkAccept(sid))
        assert decoded_forward(live, CA, frame(1, f"{path}/00000001.request", sid)) == (CB,)
    lane = r.lanes.by_conn[CA]
    assert [s.sid for s in lane] == sids[1:]  # s1 and t0, the oldest, made room
    assert r.forward_frame(CA, frame(2)) is None
    assert r.forward_frame(CA, frame(2, f"{A}/_mpc/t3/00000002.request", "t3")) == (CB,)


def test_lane_never_accepts_what_the_decoding_path_would_not(live: Harness) -> None:
    """Random byte changes to valid frames: whatever the lane matches decodes, passes
    `Router.forward` with the same readers, and has a path `_below` accepts."""
    rng = random.Random(38)
    r = live.router
    s = r.sessions[SID]
    bases = [
        frame(5),
        frame(70000, f"{PATH}/00070000.request", etag="e1", id="abcdefgh"),
        frame(6, PATH),
        frame(7, ""),
    ]
    matched = 0
    for _ in range(6000):
        data = bytearray(rng.choice(bases))
        for _k in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.choice((rng.randrange(256), 0x2E, 0x2F, 0x80))
        got = r.forward_frame(CA, bytes(data))
        if got is None:
            continue
        matched += 1
        try:
            msg = decode(bytes(data)).msg
        except ProtocolError as exc:
            raise AssertionError(f"lane matched an undecodable frame {bytes(data)!r}") from exc
        assert type(msg) is HotlinkData and msg.sid == SID
        assert msg.path in ("", PATH) or _below(s, msg.path), msg.path
        assert r.forward(CA, msg) == got
    assert matched > 500  # most single-byte changes hit the payload
