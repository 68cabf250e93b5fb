"""The datasite watcher with real inotify: files written into folders created a moment
before are still reported (the folder's own watch may not exist yet when they land)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from hotlink.agent.watcher import RequestWatcher, is_new_folder, list_new_folders
from watchfiles import Change


def test_new_folder_filter_and_listing(tmp_path: Path) -> None:
    (tmp_path / "s1" / "deep").mkdir(parents=True)
    (tmp_path / "s1" / "deep" / "00000001.request").write_bytes(b"x")
    (tmp_path / "s1" / ".hidden").mkdir()
    (tmp_path / "s1" / ".hidden" / "00000002.request").write_bytes(b"x")
    (tmp_path / "s1" / "syft.pub.yaml").write_text("rules: []\n")
    assert is_new_folder(Change.added, str(tmp_path / "s1"))
    assert not is_new_folder(Change.modified, str(tmp_path / "s1"))
    assert not is_new_folder(Change.added, str(tmp_path / "s1" / "syft.pub.yaml"))
    requests, acl = list_new_folders([str(tmp_path / "s1")])
    assert list(requests) == [tmp_path / "s1" / "deep" / "00000001.request"]
    assert acl


@pytest.mark.parametrize("backend", ["inotify", "watchfiles"])
def test_files_in_just_created_folders_are_reported(tmp_path: Path, backend: str) -> None:
    if backend == "inotify" and not sys.platform.startswith("linux"):
        pytest.skip("inotify is Linux's")
    rounds = 25

    async def main() -> tuple[set[Path], int]:
        seen: set[Path] = set()
        reported: list[Path] = []
        acl_calls = 0

        def on_acl() -> None:
            nonlocal acl_calls
            acl_calls += 1

        def on_paths(paths: list[Path]) -> None:
            seen.update(paths)
            reported.extend(paths)

        w = RequestWatcher(tmp_path, on_paths, on_acl, backend=backend)
        w.start()
        await asyncio.wait_for(w.ready.wait(), 10)
        want: set[Path] = set()
        for i in range(rounds):
            folder = tmp_path / f"app{i}" / "_mpc" / f"s{i}"
            folder.mkdir(parents=True)
            (folder / "syft.pub.yaml").write_text("rules: []\n")
            f = folder / "00000001.request"
            f.write_bytes(b"frame")
            want.add(f)
        for _ in range(200):
            if want <= seen and acl_calls:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # late events of the same files would come now
        await w.stop()
        # each file once: a folder listing and the file's own event do not both report it
        assert sorted(reported) == sorted(set(reported))
        return seen, acl_calls

    seen, acl_calls = asyncio.run(main())
    missing = {p for p in (tmp_path.glob("app*/_mpc/s*/00000001.request"))} - seen
    assert not missing, f"{len(missing)} of {rounds} files never reported: {sorted(missing)[:3]}"
    assert acl_calls >= 1


def test_a_listed_file_is_not_reported_again_by_its_own_event_unless_changed(
    tmp_path: Path,
) -> None:
    f = tmp_path / "s1" / "00000001.request"
    f.parent.mkdir()
    f.write_bytes(b"frame")
    w = RequestWatcher(tmp_path, lambda paths: None)
    found, _ = list_new_folders([str(f.parent)])
    w._remember(found)
    assert w._not_listed({f}) == set()  # the same file, unchanged: reported already
    assert w._not_listed({f}) == {f}  # remembered once only
    w._remember(found)
    f.write_bytes(b"frame, rewritten")
    assert w._not_listed({f}) == {f}  # changed since the listing: reported
