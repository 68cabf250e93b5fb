"""File fallback, sans-I/O: the fallback policy, the stream merge, the state file, the
fallback file format, the relay's catch-up and progress routing, and the file path's
path checks."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from hotlink.agent.config import load_config
from hotlink.agent.core.paths import ActivePath, FallbackMode, FallbackPolicy, normalize_mode
from hotlink.agent.filepath import write_atomic
from hotlink.agent.reorder import StreamMerge
from hotlink.agent.safe_files import FileRefused, read_regular, resolve_inside
from hotlink.agent.state import AgentState, SessionRecord, StateKeeper, load_state
from hotlink.agent.watcher import request_filter
from hotlink.wire import fallbackfile as ff
from hotlink.wire.envelope import decode, encode, encode_json
from hotlink.wire.errors import ProtocolError
from hotlink.wire.messages import FileSync, FileWrite, HotlinkOpen, HotlinkProgress
from hypothesis import given, settings
from hypothesis import strategies as st
from test_relay_router import CA, CB, CS, PATH, A, B, Harness, to
from watchfiles import Change

# --------------------------------------------------------------------------- policy


def test_on_failure_switches_both_ways_after_backlog() -> None:
    p = FallbackPolicy(FallbackMode.ON_FAILURE)
    assert p.update(True, 0) is None and p.active is ActivePath.HOTLINK
    sw = p.update(False, 0, "link down")
    assert sw is not None and sw.to is ActivePath.FILES and sw.reason == "link down"
    assert p.update(False, 5) is None
    # hotlink back, but files not all acknowledged: stay (they must arrive first)
    assert p.update(True, 5) is None and p.active is ActivePath.FILES
    sw = p.update(True, 0)
    assert sw is not None and sw.to is ActivePath.HOTLINK
    assert p.switches == 2


def test_off_never_uses_files() -> None:
    p = FallbackPolicy(FallbackMode.OFF)
    assert p.update(False, 0) is None and p.active is ActivePath.HOTLINK
    assert p.send_failed("boom") is None
    assert not p.files_allowed


def test_send_failure_and_tee() -> None:
    p = FallbackPolicy(FallbackMode.TEE)
    assert p.tee and p.files_allowed
    sw = p.send_failed("link closing")
    assert sw is not None and sw.to is ActivePath.FILES
    assert p.send_failed("again") is None  # already on files


def test_mode_change_to_off_returns_to_hotlink() -> None:
    p = FallbackPolicy(FallbackMode.ON_FAILURE)
    p.update(False, 0)
    sw = p.set_mode(FallbackMode.OFF, False, 3)
    assert sw is not None and sw.to is ActivePath.HOTLINK
    assert normalize_mode(0) is FallbackMode.ON_FAILURE
    with pytest.raises(ValueError):
        normalize_mode(9)


# --------------------------------------------------------------------------- merge


def test_merge_drops_second_copy_whatever_the_path() -> None:
    m: StreamMerge[str] = StreamMerge(window=16, gap_timeout=1.0)
    assert m.push(1, "h1", 0) == [(1, "h1")]
    assert m.push_file(1, "f1", 0) == []  # TEE copy of a frame already delivered
    assert m.file_duplicates == 1 and m.duplicates == 1
    assert m.push_file(3, "f3", 0) == []  # buffered behind the gap
    assert not m.is_new(3) and m.is_new(2)
    assert m.push(2, "h2", 0) == [(2, "h2"), (3, "f3")]
    assert m.push(3, "h3", 0) == []  # hotlink copy after the file copy
    assert m.duplicates == 2 and m.file_duplicates == 1
    assert m.delivered == 3


def test_merge_restored_start() -> None:
    m: StreamMerge[str] = StreamMerge(start=101)
    assert m.push_file(100, "old", 0) == []
    assert m.push_file(101, "x", 0) == [(101, "x")]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=60).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.permutations(
                [(s, "h") for s in range(1, n + 1)] + [(s, "f") for s in range(1, n + 1)]
            ),
        )
    )
)
def test_merge_property_each_seq_once_in_order(case: tuple[int, list[tuple[int, str]]]) -> None:
    """Two copies of every seq, in any interleaving: each seq out once, in order."""
    n, arrivals = case
    m: StreamMerge[str] = StreamMerge(window=4096, gap_timeout=1e9, start=1)
    out: list[int] = []
    for seq, src in arrivals:
        rel = m.push_file(seq, src, 0) if src == "f" else m.push(seq, src, 0)
        out += [s for s, _ in rel]
    assert out == list(range(1, n + 1))
    assert m.duplicates == n and m.lost == 0


# --------------------------------------------------------------------------- state


def test_state_round_trip(tmp_path: Path) -> None:
    rec = SessionRecord(f"{A}/_mpc/x", 1, sid="abc", seq=10, delivered=7)
    st_ = AgentState(clean=True, sessions=[rec])
    back = AgentState.from_json(st_.to_json())
    assert back == st_
    with pytest.raises(ValueError):
        SessionRecord.from_dict({"path": "x", "role": 1, "seq": -1})


def test_state_corrupt_or_missing_is_not_fatal(tmp_path: Path) -> None:
    assert load_state(tmp_path / "none.json") is None
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert load_state(bad) is None
    bad.write_text('{"version": 1, "sessions": [{"path": "", "role": 7}]}')
    st_ = load_state(bad)
    assert st_ is not None and st_.sessions == []


def test_state_bad_record_drops_only_itself(tmp_path: Path, caplog) -> None:
    """One bad record (wrong type, bad field, not an object) used to drop every
    session of the file; now it costs only itself, with a log line."""
    good = [SessionRecord(f"{A}/_mpc/a", 1, sid="s1", seq=3), SessionRecord(f"{A}/_mpc/b", 2)]
    raw = json.loads(AgentState(clean=True, sessions=good).to_json())
    raw["sessions"][1:1] = [{"path": f"{A}/_mpc/x", "role": 1, "seq": "many"}, 42, None]
    path = tmp_path / "state.json"
    path.write_text(json.dumps(raw))
    with caplog.at_level("WARNING"):
        st_ = load_state(path)
    assert st_ is not None and st_.clean and st_.sessions == good
    assert sum("skipping session record" in r.message for r in caplog.records) == 3


def test_state_keeper_debounces_and_marks_clean(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    calls = [0]

    def snap() -> AgentState:
        calls[0] += 1
        return AgentState(sessions=[SessionRecord(f"{A}/_mpc/x", 2, delivered=5)])

    async def main() -> int:
        k = StateKeeper(path, snap, interval=0.01)
        k.start()
        # until the first write is done and a few unchanged snapshots came after it (a
        # fixed 0.2 s wait assumed the write's worker thread started at once)
        for _ in range(1000):
            if k.writes and calls[0] > 3:
                break
            await asyncio.sleep(0.01)
        writes = k.writes
        await k.close()
        return writes

    writes = asyncio.run(main())
    assert calls[0] > 3 and writes == 1  # unchanged snapshots are not rewritten
    saved = load_state(path)
    assert saved is not None and saved.clean and saved.sessions[0].delivered == 5
    assert oct(path.stat().st_mode & 0o777) == "0o600"


# --------------------------------------------------------------------------- format


def test_fallback_file_round_trip() -> None:
    data = ff.encode("sid1", 42, "x/y.request", "e1", b"payload")
    assert ff.peek_sid(data) == "sid1" and ff.is_fallback(data)
    fr = ff.decode(data)
    assert (fr.sid, fr.seq, fr.name, fr.etag, fr.payload) == (
        "sid1",
        42,
        "x/y.request",
        "e1",
        b"payload",
    )
    assert ff.peek_sid(b"plain content") is None
    with pytest.raises(ProtocolError):
        ff.decode(data + b"extra")
    with pytest.raises(ProtocolError):
        ff.decode(data[:-1])
    with pytest.raises(ProtocolError):
        ff.decode(b"plain")
    with pytest.raises(ProtocolError):
        ff.encode("", 1, "a.request", "", b"")


def test_new_messages_round_trip() -> None:
    for msg in (
        FileSync(PATH, 123, "a/b", 10, "sid", True),
        FileSync(PATH),
        HotlinkProgress("sid", 7, B),
        FileWrite(PATH + "/x.request", "e", 3, b"abc", 99),
    ):
        assert decode(encode(msg)).msg == msg
        assert decode(encode_json(msg)).msg == msg
    # a reference peer's FileWrite (no mtm) still decodes, mtime 0
    assert decode(encode(FileWrite(PATH + "/x", "e", 1, b"a"))).msg.mtime == 0


# --------------------------------------------------------------------------- relay


def _relay(tmp_path: Path) -> Harness:
    h = Harness(tmp_path)
    h.connect(CA, A)
    h.connect(CB, B)
    h.connect(CS, "stranger@example.org")
    return h


def test_relay_file_sync_pages_and_filters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hotlink.relay.file_routes as file_routes

    monkeypatch.setattr(file_routes, "SYNC_PAGE_FILES", 3)
    h = _relay(tmp_path)
    for i in range(1, 6):
        out = h.send(
            CA,
            FileWrite(
                f"{PATH}/{i:08d}.request", "", 0, ff.encode("s1", i, f"{i:08d}.request", "", b"x")
            ),
        )
        assert to(out, CB)  # broadcast to the reader
    h.send(CA, FileWrite(f"{PATH}/other.request", "", 0, ff.encode("s0", 1, "o.request", "", b"y")))
    seen: list[str] = []
    req = FileSync(PATH, sid="s1")
    for _ in range(5):
        out = to(h.send(CB, req), CB)
        files, end = out[:-1], out[-1]
        assert isinstance(end, FileSync) and end.sid == "s1"
        assert all(isinstance(f, FileWrite) and f.mtime > 0 for f in files)
        seen += [f.path.rsplit("/", 1)[1] for f in files]
        if not end.more:
            break
        req = FileSync(PATH, end.since, end.after, sid="s1")
    assert seen == [f"{i:08d}.request" for i in range(1, 6)]  # other session's file skipped
    # nothing new after the cursor
    out = to(h.send(CB, FileSync(PATH, end.since, end.after, sid="s1")), CB)
    assert len(out) == 1 and not out[0].more
    # a user without read access gets no files
    out = to(h.send(CS, FileSync(PATH)), CS)
    assert len(out) == 1 and isinstance(out[0], FileSync)


def test_relay_progress_only_from_readers(tmp_path: Path) -> None:
    h = _relay(tmp_path)
    h.send(CA, HotlinkOpen("s1", PATH))
    assert h.send(CB, HotlinkProgress("s1", 5)) == []  # not accepted yet
    from hotlink.wire.messages import HotlinkAccept

    h.send(CB, HotlinkAccept("s1"))
    out = h.send(CB, HotlinkProgress("s1", 5))
    assert to(out, CA) == [HotlinkProgress("s1", 5, B)]
    assert h.send(CS, HotlinkProgress("s1", 9)) == []


# --------------------------------------------------------------------------- file path


def test_resolve_inside_refuses_escapes(tmp_path: Path) -> None:
    base = tmp_path / "datasites"
    (base / "a@x.org").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, base / "a@x.org" / "link")
    real = base.resolve()
    assert resolve_inside(base, real, ["a@x.org", "f.request"]) == base / "a@x.org" / "f.request"
    with pytest.raises(FileRefused):
        resolve_inside(base, real, ["a@x.org", "link", "f.request"])
    with pytest.raises(FileRefused):
        resolve_inside(base, real, ["a@x.org", "stream.sock"])
    target = base / "a@x.org" / "g.request"
    write_atomic(target, [b"ab", b"cd"])
    assert target.read_bytes() == b"abcd"
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".hotlink-tmp-")]


@pytest.mark.parametrize(
    ("size", "ok"), [(0, True), (9, True), (10, True), (11, False), (50, False)]
)
def test_read_regular_reads_a_file_that_grew_after_its_lstat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, ok: bool
) -> None:
    """The read is sized by the lstat; a file that grew since is read on, up to the
    limit (and refused past it), as if read whole."""
    from hotlink.agent import safe_files

    d = tmp_path / "s"
    d.mkdir()
    f = d / "grew.request"
    f.write_bytes(bytes(range(size)))
    real_lstat = os.lstat

    def stale(path: object) -> os.stat_result:  # the size before the app's last write
        st = real_lstat(path)  # type: ignore[arg-type]
        fields = list(st)
        fields[6] = 0  # st_size
        return os.stat_result(fields)

    monkeypatch.setattr(safe_files.os, "lstat", stale)
    if ok:
        assert read_regular(f, d.resolve(), 10) == bytes(range(size))
    else:
        with pytest.raises(FileRefused, match="grew over the 10-byte limit"):
            read_regular(f, d.resolve(), 10)


def test_read_regular_refuses_bad_files(tmp_path: Path) -> None:
    d = tmp_path / "s"
    d.mkdir()
    real = d.resolve()
    (d / "ok.request").write_bytes(b"hi")
    assert read_regular(d / "ok.request", real, 10) == b"hi"
    (d / "big.request").write_bytes(b"x" * 11)
    with pytest.raises(FileRefused, match="limit"):
        read_regular(d / "big.request", real, 10)
    os.symlink("/etc/passwd", d / "ln.request")
    with pytest.raises(FileRefused, match="symlink"):
        read_regular(d / "ln.request", real, 10_000)
    (d / "sub.request").mkdir()
    with pytest.raises(FileRefused, match="regular"):
        read_regular(d / "sub.request", real, 10)
    with pytest.raises(FileRefused, match="vanished"):
        read_regular(d / "gone.request", real, 10)
    if os.getuid() != 0:
        (d / "secret.request").write_bytes(b"s")
        (d / "secret.request").chmod(0)
        with pytest.raises(FileRefused, match="cannot read"):
            read_regular(d / "secret.request", real, 10)


def test_watch_filter() -> None:
    assert request_filter(Change.added, "/r/a/00000001.request")
    assert request_filter(Change.modified, "/r/a/x.request")
    assert not request_filter(Change.deleted, "/r/a/x.request")
    assert not request_filter(Change.added, "/r/a/x.request.tmp")
    assert not request_filter(Change.added, "/r/a/.hidden.request")


def test_keep_files_switch(tmp_path: Path) -> None:
    base = ["--server", "ws://h:1", "--email", A, "--token-file", "t", "--root", str(tmp_path)]
    assert load_config(base, env={}).keep_files is False
    assert load_config([*base, "--keep-files"], env={}).keep_files is True
    assert load_config([*base, "--keep-files=false"], env={}).keep_files is False
    assert load_config(base, env={"HOTLINK_KEEP_FILES": "1"}).keep_files is True
