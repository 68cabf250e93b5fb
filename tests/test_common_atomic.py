"""`hotlink.common.atomic`: the one atomic-write helper and temp prefix."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hotlink.agent.runtime_dir import write_file_atomic
from hotlink.agent.watcher import request_filter
from hotlink.common.atomic import TMP_PREFIX, is_temp_name, write_atomic
from hotlink.relay.store import Store, StoreError
from watchfiles import Change


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if is_temp_name(p.name)]


def test_bytes_text_and_chunks(tmp_path: Path) -> None:
    t = tmp_path / "f"
    write_atomic(t, b"one")
    assert t.read_bytes() == b"one"
    write_atomic(t, "twö")
    assert t.read_text() == "twö"
    write_atomic(t, [b"a", b"b", b"c"], fsync=True)
    assert t.read_bytes() == b"abc"
    assert _leftovers(tmp_path) == []


def test_default_mode_is_owner_only_and_umask_applies(tmp_path: Path) -> None:
    write_atomic(tmp_path / "private", b"x")
    assert stat.S_IMODE(os.stat(tmp_path / "private").st_mode) == 0o600
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "shared", b"x", mode=0o666)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "shared").st_mode) == 0o644


def test_mkdir_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "no" / "f", b"x")
    write_atomic(tmp_path / "no" / "f", b"x", mkdir=True)
    assert (tmp_path / "no" / "f").read_bytes() == b"x"


def test_failure_leaves_target_and_no_temp(tmp_path: Path) -> None:
    t = tmp_path / "f"
    t.write_bytes(b"old")

    def chunks():
        yield b"half"
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError):
        write_atomic(t, chunks())
    assert t.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError):
        write_atomic(tmp_path / "d", b"x")  # cannot replace a folder
    assert _leftovers(tmp_path) == []


def test_every_writer_uses_the_one_prefix(tmp_path: Path) -> None:
    # The relay store refuses the prefix as a name and skips it when listing.
    store = Store(tmp_path / "data")
    with pytest.raises(StoreError):
        store.write(f"a@x.org/{TMP_PREFIX}x", b"x")
    store.write("a@x.org/f", b"x")
    folder = tmp_path / "data" / "datasites" / "a@x.org"
    (folder / f"{TMP_PREFIX}crash").write_bytes(b"left by a crash")
    assert [f.path for f in store.list_since("a@x.org")] == ["a@x.org/f"]
    # The agent's marker/state writer keeps its mode and goes through the helper.
    old = os.umask(0o022)
    try:
        write_file_atomic(tmp_path / "m", "text")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "m").st_mode) == 0o644
    assert _leftovers(tmp_path) == []
    # The watcher never reports the temp files as app requests.
    assert not request_filter(Change.added, f"/r/a/{TMP_PREFIX}x.request")
    assert request_filter(Change.added, "/r/a/x.request")


def test_returns_the_written_files_stat(tmp_path: Path) -> None:
    # The store indexes a file from this result, without a second stat.
    t = tmp_path / "f"
    st = write_atomic(t, [b"ab", b"cde"])
    on_disk = os.stat(t)
    assert (st.st_size, st.st_mtime_ns, st.st_ino) == (5, on_disk.st_mtime_ns, on_disk.st_ino)
    big = bytes(range(256)) * 4096  # over one write(2) call's usual chunk
    assert write_atomic(t, memoryview(big)).st_size == len(big)
    assert t.read_bytes() == big
