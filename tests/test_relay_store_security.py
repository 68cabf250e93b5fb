"""Store attacks (docs/reliability.md, "Store: quotas, retention, catch-up"): the
FileSync leak, symlinks in DATA, quotas and write rate, FileDelete, retention of
fallback files. Sans-I/O on the Router with a real on-disk store, plus one e2e run
against the real relay process."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from fixtures_relay import RelayProcess, relay_client
from hotlink.relay import retention
from hotlink.relay.acl import AclIndex, parse_acl
from hotlink.relay.connection import Outgoing
from hotlink.relay.quota import REASON_QUOTA, REASON_RATE, QuotaLimits, StoreQuota
from hotlink.relay.router import Router
from hotlink.relay.store import Store, StoreError
from hotlink.relay.sync_cursor import SEALED_PREFIX, CursorSeal
from hotlink.relay.sync_index import SyncIndex
from hotlink.wire import fallbackfile as ff
from hotlink.wire.envelope import Envelope
from hotlink.wire.messages import (
    REASON_PERMISSION_DENIED,
    Ack,
    Error,
    FileDelete,
    FileSync,
    FileWrite,
    Message,
    Nack,
)

A = "alice@example.org"
B = "bob@example.org"
M = "mallory@example.org"
CA, CB, CM = 1, 2, 3
#: alice's datasite: `public/` readable by everyone, the rest owner-only
PUBLIC_ACL = 'rules: [{pattern: "public/**", access: {read: ["*"]}}]'


class Harness:
    def __init__(self, tmp: Path, acl_text: str = PUBLIC_ACL) -> None:
        self.store = Store(tmp)
        self.acl = AclIndex()
        self.acl.set_file(A, parse_acl(acl_text))
        self.t = 1000.0
        self.router = Router(self.acl, self.store, clock=lambda: self.t)
        self.n = 0
        for cid, user in ((CA, A), (CB, B), (CM, M)):
            self.router.connect(cid, user)

    def send(self, cid: int, msg: Message) -> list[Outgoing]:
        self.n += 1
        return self.router.handle(cid, Envelope(f"m{self.n}", msg, ""))

    def write(self, cid: int, path: str, content: bytes) -> Message:
        out = [o.msg for o in self.send(cid, FileWrite(path, "", len(content), content))]
        return out[0]

    def sync(self, cid: int, folder: str, since: int = 0, after: str = "", mx: int = 0):
        out = [o.msg for o in self.send(cid, FileSync(folder, since, after, mx))]
        files = [m for m in out if isinstance(m, FileWrite)]
        tail = out[-1]
        assert isinstance(tail, (FileSync, Error)), out
        return files, tail


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


# ------------------------------------------------------------------- the index


def test_index_orders_by_mtime_then_path_and_tracks_usage() -> None:
    ix = SyncIndex()
    ix.put("a@x.org/d/2", 20, 5)
    ix.put("a@x.org/d/1", 20, 7)
    ix.put("a@x.org/e/3", 10, 1)
    ix.put("a@x.org/d/1", 30, 9)  # rewritten: moves to the end
    assert [p for _, p, _ in ix.after("a@x.org", (0, ""))] == [
        "a@x.org/e/3",
        "a@x.org/d/2",
        "a@x.org/d/1",
    ]
    assert [p for _, p, _ in ix.after("a@x.org/d", (20, "a@x.org/d/2"))] == ["a@x.org/d/1"]
    assert ix.usage_of("a@x.org").bytes == 15 and ix.usage_of("a@x.org").files == 3
    assert ix.remove("a@x.org/d/2") and not ix.remove("a@x.org/d/2")
    assert [p for _, p, _ in ix.after("a@x.org/d", (0, ""))] == ["a@x.org/d/1"]
    assert ix.usage_of("a@x.org").bytes == 10
    ix.remove("a@x.org/d/1")
    assert list(ix.after("a@x.org/d", (0, ""))) == []


def test_index_is_rebuilt_from_disk_at_start(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.write(f"{A}/public/a", b"1")
    s.write(f"{A}/public/b", b"22")
    again = Store(tmp_path)
    assert [f.path for f in again.list_since(f"{A}/public")] == [f"{A}/public/a", f"{A}/public/b"]
    assert again.index.usage_of(A).bytes == 3


# ------------------------------------------------------------ the FileSync leak


def test_mallory_sync_of_alices_datasite_reveals_nothing(h: Harness) -> None:
    """mallory, with no access, syncs alice's datasite: no file, no name, no mtime."""
    secret = f"{A}/private/medical/scan-2026.pdf"
    assert h.write(CA, secret, b"%PDF secret") == Ack("m1")
    mtime = h.store.index.files[secret][0]
    files, tail = h.sync(CM, A)
    assert files == []
    assert isinstance(tail, FileSync)
    assert "medical" not in repr(tail) and str(mtime) not in repr(tail)
    assert tail.since == 0 and tail.after.startswith(SEALED_PREFIX) and not tail.more
    # the sealed cursor opens only for mallory and that folder, and leads past the file
    again, tail2 = h.sync(CM, A, tail.since, tail.after)
    assert again == [] and "medical" not in repr(tail2)
    # bob holding mallory's cursor gets no position out of it (restarts from since)
    seal = h.router.cursor_seal
    assert seal is not None
    assert seal.open(tail.since, tail.after, B, A) == (0, "")
    assert seal.open(tail.since, tail.after, M, f"{A}/private") == (0, "")
    assert seal.open(tail.since, tail.after, M, A) == (mtime, secret)


def test_interleaved_private_files_are_skipped_without_leaking(h: Harness) -> None:
    h.write(CA, f"{A}/public/1", b"one")
    h.write(CA, f"{A}/private/x", b"hidden")
    h.write(CA, f"{A}/public/2", b"two")
    h.write(CA, f"{A}/private/y", b"hidden")
    seen: list[str] = []
    since, after = 0, ""
    for _ in range(10):
        files, tail = h.sync(CM, A, since, after, mx=1)
        seen += [f.path for f in files]
        assert "private" not in tail.after
        for f in files:  # mtimes shown are only of readable files
            assert f.mtime == h.store.index.files[f.path][0]
        since, after = tail.since, tail.after
        if not tail.more:
            break
    assert seen == [f"{A}/public/1", f"{A}/public/2"]
    # the owner sees everything, with plain cursors
    files, tail = h.sync(CA, A)
    assert len(files) == 4 and tail.after == f"{A}/private/y"


def test_tampered_or_foreign_cursor_falls_back_to_since(h: Harness) -> None:
    other = CursorSeal.ephemeral().seal((1, f"{A}/zzz"), M, A)
    h.write(CA, f"{A}/public/1", b"one")
    files, _ = h.sync(CM, A, 0, other)
    assert [f.path for f in files] == [f"{A}/public/1"]
    files, _ = h.sync(CM, A, 0, SEALED_PREFIX + "!!not-base64")
    assert [f.path for f in files] == [f"{A}/public/1"]


def test_page_cost_does_not_depend_on_folder_size(tmp_path: Path) -> None:
    """Not a timing test: a page looks at most at the files it returns plus the next
    one (lazy index iteration), counted through the store's `after` generator."""
    h = Harness(tmp_path)
    for i in range(3000):
        h.store.write(f"{A}/public/f{i:05d}", b"x")
    keys = sorted((mt, p) for p, (mt, _) in h.store.index.files.items())
    taken = 0
    real_after = h.store.after

    def counting(folder: str, cursor: tuple[int, str]):
        nonlocal taken
        for item in real_after(folder, cursor):
            taken += 1
            yield item

    h.store.after = counting  # type: ignore[method-assign]
    files, tail = h.sync(CB, f"{A}/public", *keys[1500], mx=1)
    assert taken == 2  # the one sent + the probe that sets "more"
    assert [f.path for f in files] == [keys[1501][1]] and tail.more


# --------------------------------------------------------------- symlinks in DATA


def test_sync_and_writes_through_a_symlinked_folder_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "etc-passwd").write_bytes(b"root:x:0:0")
    data = tmp_path / "data"
    h0 = Store(data)
    h0.write(f"{B}/inbox/x", b"bob's")
    site = data / "datasites" / A
    site.mkdir(parents=True)
    os.symlink(outside, site / "public")  # planted in DATA by someone with a shell
    os.symlink(data / "datasites" / B / "inbox", site / "bobs")  # points inside the store
    h = Harness(data)
    # the start-up index never followed them
    assert all("etc-passwd" not in p and "/bobs/" not in p for p in h.store.index.files)
    files, tail = h.sync(CB, f"{A}/public")
    assert files == [] and isinstance(tail, Error) and "symlink" in tail.message
    files, tail = h.sync(CA, f"{A}/bobs")
    assert files == [] and isinstance(tail, Error)
    nack = h.write(CA, f"{A}/public/planted", b"x")
    assert isinstance(nack, Nack) and "symlink" in nack.error
    nack = h.write(CA, f"{A}/bobs/x", b"overwrite bob's file")
    assert isinstance(nack, Nack) and "symlink" in nack.error
    assert not (outside / "planted").exists()
    assert (data / "datasites" / B / "inbox" / "x").read_bytes() == b"bob's"
    with pytest.raises(StoreError):
        h.store.read(f"{A}/public/etc-passwd")


def test_symlinked_file_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_bytes(b"top secret")
    s = Store(tmp_path / "data")
    s.write(f"{A}/public/ok", b"ok")
    os.symlink(outside, tmp_path / "data" / "datasites" / A / "public" / "link")
    with pytest.raises(StoreError, match=r"cannot read|not a regular"):
        s.read(f"{A}/public/link")
    assert f"{A}/public/link" not in Store(tmp_path / "data").index.files


def test_what_stands_where_a_folder_should_be(tmp_path: Path) -> None:
    s = Store(tmp_path / "data")
    s.write(f"{A}/public/file", b"x")
    with pytest.raises(StoreError, match="not a folder on the way"):
        s.write(f"{A}/public/file/below", b"y")
    with pytest.raises(StoreError, match="a folder exists"):
        s.write(f"{A}/public", b"y")
    # a symlink planted after the folders were made is still refused
    os.rename(tmp_path / "data" / "datasites" / A / "public", tmp_path / "moved")
    os.symlink(tmp_path / "moved", tmp_path / "data" / "datasites" / A / "public")
    with pytest.raises(StoreError, match="symlink"):
        s.write(f"{A}/public/again", b"z")
    assert not (tmp_path / "moved" / "again").exists()
    with pytest.raises(StoreError, match="cannot read"):
        s.read(f"{B}/none/here")  # a missing folder is no error of the way


def test_a_data_dir_reached_through_a_symlink_works(tmp_path: Path) -> None:
    # Only the folders inside the store are checked: its own place may be a link
    # (e.g. /tmp on macOS, or a data disk mounted elsewhere).
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    s = Store(tmp_path / "link")
    s.write(f"{A}/public/one", b"1")
    assert s.read(f"{A}/public/one") == b"1"
    assert (tmp_path / "real" / "datasites" / A / "public" / "one").exists()
    assert sorted(Store(tmp_path / "link").index.files) == [f"{A}/public/one"]
    assert [f.path for f in s.list_since(A)] == [f"{A}/public/one"]


# ------------------------------------------------------------ quotas and delete


def test_storage_quota_and_file_count(h: Harness) -> None:
    h.router.quota = StoreQuota(QuotaLimits(max_bytes=10_000, max_files=3, write_rate=0))
    assert h.write(CA, f"{A}/a", b"x" * 6000) == Ack("m1")
    nack = h.write(CA, f"{A}/b", b"x" * 5000)
    assert isinstance(nack, Nack) and nack.error.startswith(REASON_QUOTA)
    assert isinstance(h.write(CA, f"{A}/a", b"x" * 9000), Ack)  # growth only
    assert isinstance(h.write(CA, f"{A}/b", b"y"), Ack)
    assert isinstance(h.write(CA, f"{A}/c", b"z"), Ack)
    nack = h.write(CA, f"{A}/d", b"w")
    assert isinstance(nack, Nack) and "files" in nack.error
    assert isinstance(h.send(CA, FileDelete(f"{A}/c"))[0].msg, Ack)
    assert isinstance(h.write(CA, f"{A}/d", b"w"), Ack)  # room again
    assert not (h.store.root / A / "b").read_bytes().startswith(b"x")


def test_write_rate_per_user(h: Harness) -> None:
    h.router.quota = StoreQuota(QuotaLimits(max_bytes=0, write_rate=1000, write_burst=2000))
    assert isinstance(h.write(CA, f"{A}/a", b"x" * 1500), Ack)
    nack = h.write(CA, f"{A}/b", b"x" * 1000)
    assert isinstance(nack, Nack) and nack.error.startswith(REASON_RATE)
    h.t += 0.6  # 600 bytes refilled: 1100 in the bucket
    assert isinstance(h.write(CA, f"{A}/b", b"x" * 1000), Ack)
    h.t += 100
    assert isinstance(h.write(CA, f"{A}/big", b"x" * 5000), Ack)  # one file always fits


def test_file_delete_only_by_writers(h: Harness) -> None:
    writers = f'rules: [{{pattern: "**", access: {{write: ["{B}"]}}}}]'
    h.acl.set_file(f"{A}/shared", parse_acl(writers))
    h.write(CA, f"{A}/shared/f", b"1")
    h.write(CA, f"{A}/private", b"2")
    for path in (f"{A}/private", f"{A}/missing", f"{A}/syft.pub.yaml"):
        out = h.send(CM, FileDelete(path))
        assert [o.msg for o in out] == [Nack(f"m{h.n}", REASON_PERMISSION_DENIED)]
    assert (h.store.root / A / "private").exists()
    assert isinstance(h.send(CB, FileDelete(f"{A}/shared/f"))[0].msg, Ack)  # a writer
    assert not (h.store.root / A / "shared" / "f").exists()
    assert f"{A}/shared/f" not in h.store.index.files
    assert isinstance(h.send(CA, FileDelete(f"{A}/private"))[0].msg, Ack)  # the owner
    assert isinstance(h.send(CA, FileDelete(f"{A}/private"))[0].msg, Ack)  # idempotent


def test_owner_deletes_acl_file_and_access_goes(h: Harness) -> None:
    h.write(CA, f"{A}/syft.pub.yaml", PUBLIC_ACL.encode())
    h.write(CA, f"{A}/public/x", b"1")
    assert len(h.sync(CM, f"{A}/public")[0]) == 1
    out = h.send(CB, FileDelete(f"{A}/syft.pub.yaml"))
    assert isinstance(out[0].msg, Nack)
    assert isinstance(h.send(CA, FileDelete(f"{A}/syft.pub.yaml"))[0].msg, Ack)
    files, _ = h.sync(CM, f"{A}/public")
    assert files == []


# ------------------------------------------------------------------ retention


def test_retention_deletes_old_fallback_files_of_ended_sessions(tmp_path: Path) -> None:
    store = Store(tmp_path)
    old_fb = f"{A}/_mpc/s1/00000001.request"
    live_fb = f"{A}/_mpc/live/00000001.request"
    plain = f"{A}/_mpc/s1/notes.txt"
    fresh = f"{A}/_mpc/s1/00000002.request"
    for p, content in (
        (old_fb, ff.encode("s1", 1, "00000001.request", "", b"x")),
        (live_fb, ff.encode("s2", 1, "00000001.request", "", b"x")),
        (plain, b"not a fallback file"),
        (fresh, ff.encode("s1", 2, "00000002.request", "", b"x")),
    ):
        store.write(p, content)
    past = time.time() - 7200
    for p in (old_fb, live_fb, plain):
        os.utime(store.root / p, (past, past))
        store.note(p)
    n = asyncio.run(retention.sweep(store, 3600, lambda: {f"{A}/_mpc/live"}))
    assert n == 1
    assert not (store.root / old_fb).exists() and old_fb not in store.index.files
    for p in (live_fb, plain, fresh):
        assert (store.root / p).exists() and p in store.index.files


# ---------------------------------------------------------------- e2e (real relay)


async def _quota_and_leak_e2e(relay: RelayProcess) -> None:
    async with relay_client(relay, A) as alice, relay_client(relay, M) as mallory:
        await alice.send(FileWrite(f"{A}/private/medical/x.pdf", "", 4, b"%PDF"), id="w1")
        assert await alice.recv_type(Ack) == Ack("w1")
        big = b"x" * 40_000
        await alice.send(FileWrite(f"{A}/big1", "", len(big), big), id="w2")
        assert await alice.recv_type(Ack) == Ack("w2")
        await alice.send(FileWrite(f"{A}/big2", "", len(big), big), id="w3")
        nack = await alice.recv_type(Nack)
        assert nack.original_id == "w3" and nack.error.startswith(REASON_QUOTA)
        await mallory.send(FileSync(A))
        tail = await mallory.recv_type(FileSync)
        assert "medical" not in tail.after and tail.since == 0
        await mallory.send(FileDelete(f"{A}/big1"), id="d1")
        assert await mallory.recv_type(Nack) == Nack("d1", REASON_PERMISSION_DENIED)
        await alice.send(FileDelete(f"{A}/big1"), id="d2")
        assert await alice.recv_type(Ack) == Ack("d2")
    assert not (relay.data_dir / "datasites" / A / "big1").exists()


def test_e2e_quota_delete_and_sealed_cursor(relay_factory) -> None:
    relay = relay_factory(extra_args=["--store-quota", "64KiB", "--write-rate", "0"])
    asyncio.run(_quota_and_leak_e2e(relay))
