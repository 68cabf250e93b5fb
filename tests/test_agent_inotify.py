"""The datasite watcher's inotify backend: the event decoding and tree bookkeeping
without a kernel, then the real descriptor on a temp folder."""

from __future__ import annotations

import asyncio
import os
import struct
import sys
import threading
from pathlib import Path

import pytest
from fixtures_agent import AgentProcess
from hotlink.agent import inotify as ino
from hotlink.agent.inotify import Event, InotifyTree, InotifyUnavailable, TreeWatch, parse_events
from hotlink.agent.watcher import RequestWatcher, default_backend, watch_filter
from watchfiles import Change

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


def _record(wd: int, mask: int, name: str = "") -> bytes:
    raw = name.encode()
    if raw:
        raw += b"\0" * (16 - len(raw) % 16)  # the kernel pads names with NULs
    return struct.pack("=iIII", wd, mask, 0, len(raw)) + raw


def test_parse_events_reads_every_record_of_a_read() -> None:
    buf = _record(1, ino.IN_CLOSE_WRITE, "00000001.request") + _record(2, ino.IN_IGNORED)
    assert parse_events(buf) == [
        Event(1, ino.IN_CLOSE_WRITE, "00000001.request"),
        Event(2, ino.IN_IGNORED, ""),
    ]


def _tree() -> TreeWatch:
    t = TreeWatch("/d")
    t.added(1, "/d")
    t.added(2, "/d/app")
    return t


def test_files_are_reported_complete_never_on_creation() -> None:
    t = _tree()
    out = t.on_events(
        [
            Event(2, ino.IN_CREATE, "a.request"),  # still being written: nothing yet
            Event(2, ino.IN_CLOSE_WRITE, "a.request"),
            Event(2, ino.IN_MOVED_TO, "b.request"),  # an atomic write's rename
            Event(2, ino.IN_DELETE, "c.request"),
        ]
    )
    assert out.created == ["/d/app/a.request"]  # the adapter looks at what it is
    assert out.changes == {
        (Change.modified, "/d/app/a.request"),
        (Change.added, "/d/app/b.request"),
        (Change.deleted, "/d/app/c.request"),
    }
    assert not out.new_dirs and not out.overflow and not out.root_gone


def test_folders_appearing_and_leaving() -> None:
    t = _tree()
    out = t.on_events(
        [
            Event(2, ino.IN_CREATE | ino.IN_ISDIR, "_mpc"),
            Event(1, ino.IN_MOVED_TO | ino.IN_ISDIR, "moved_in"),
            Event(1, ino.IN_CREATE | ino.IN_ISDIR, ".hidden"),  # not watched, not reported
            Event(1, ino.IN_MOVED_FROM | ino.IN_ISDIR, "app"),
        ]
    )
    assert out.new_dirs == ["/d/app/_mpc", "/d/moved_in"]
    assert out.gone_dirs == ["/d/app"]
    assert (Change.added, "/d/app/_mpc") in out.changes
    assert (Change.deleted, "/d/app") in out.changes
    assert not any(".hidden" in p for _, p in out.changes)


def test_watch_bookkeeping_and_trouble() -> None:
    t = _tree()
    t.added(3, "/d/app/s1")
    assert sorted(t.under("/d/app")) == [2, 3]
    assert t.under("/d/ap") == []  # a prefix of a name is not a parent
    out = t.on_events([Event(3, ino.IN_IGNORED, ""), Event(9, ino.IN_CLOSE_WRITE, "x")])
    assert 3 not in t.dirs and "/d/app/s1" not in t.wds
    assert not out.changes  # an unknown watch (removed meanwhile) says nothing
    assert t.on_events([Event(-1, ino.IN_Q_OVERFLOW, "")]).overflow
    assert t.on_events([Event(1, ino.IN_DELETE_SELF, "")]).root_gone
    assert not t.on_events([Event(2, ino.IN_DELETE_SELF, "")]).root_gone
    t.added(2, "/d/renamed")  # a folder's watch seen again under its new name
    assert t.wds.get("/d/app") is None and t.dirs[2] == "/d/renamed"


async def _next(it, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    return await asyncio.wait_for(it.__anext__(), timeout)


@linux
def test_real_inotify_reports_complete_files_new_folders_and_moves(tmp_path: Path) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        tree = InotifyTree(str(tmp_path), watch_filter)
        it = tree.batches(stop).__aiter__()
        try:
            assert await _next(it) == set()  # watching from here on
            f = tmp_path / "00000001.request"
            with open(f, "wb") as fh:
                fh.write(b"half")
                fh.flush()
                await asyncio.sleep(0.3)
                assert tree._batches.empty()  # open for writing: not reported yet
                fh.write(b" and the rest")
            assert await _next(it) == {(Change.modified, str(f))}
            # symlinks and hard links are complete as they appear: reported at once
            os.symlink("/etc/hostname", tmp_path / "link.request")
            os.link(f, tmp_path / "hard.request")
            got = set()
            while len(got) < 2:
                got |= await _next(it)
            assert got == {
                (Change.added, str(tmp_path / "link.request")),
                (Change.added, str(tmp_path / "hard.request")),
            }
            # a new folder is watched at once: a file written into it later has its event
            sub = tmp_path / "app" / "_mpc"
            sub.mkdir(parents=True)
            got: set[tuple[Change, str]] = set()
            while (Change.added, str(tmp_path / "app")) not in got:
                got |= await _next(it)
            await asyncio.sleep(0.1)
            (sub / "s1").mkdir()
            await asyncio.sleep(0.1)
            g = sub / "s1" / "00000002.request"
            tmp = sub / "s1" / ".00000002.request.tmp"
            tmp.write_bytes(b"x")
            os.replace(tmp, g)  # a rename into place: the temp file is filtered out
            got = set()
            while (Change.added, str(g)) not in got:
                got |= await _next(it)
            assert not any(".tmp" in p for _, p in got)
            # a folder renamed: its files are reported under the new name
            (tmp_path / "app").rename(tmp_path / "app2")
            await asyncio.sleep(0.2)
            h = tmp_path / "app2" / "_mpc" / "s1" / "00000003.request"
            h.write_bytes(b"y")
            got = set()
            while (Change.modified, str(h)) not in got:
                got |= await _next(it)
            assert not any("/app/" in p for _, p in got)
        finally:
            stop.set()
            with pytest.raises(StopAsyncIteration):
                await _next(it)
            tree.close()

    asyncio.run(main())


@linux
def test_real_inotify_root_removed_ends_the_batches(tmp_path: Path) -> None:
    root = tmp_path / "site"
    root.mkdir()

    async def main() -> None:
        tree = InotifyTree(str(root), watch_filter)
        it = tree.batches(asyncio.Event()).__aiter__()
        try:
            await _next(it)
            root.rmdir()
            with pytest.raises(FileNotFoundError):
                while True:
                    await _next(it)
        finally:
            tree.close()

    asyncio.run(main())


@linux
def test_watcher_falls_back_to_watchfiles_without_inotify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*_a: object, **_k: object) -> None:
        raise InotifyUnavailable("no inotify watch left (raise fs.inotify.max_user_watches)")

    monkeypatch.setattr("hotlink.agent.watcher.InotifyTree", unavailable)

    async def main() -> list[Path]:
        seen: list[Path] = []
        w = RequestWatcher(tmp_path, seen.extend)
        assert w.backend == "inotify"
        w.start()
        await asyncio.wait_for(w.ready.wait(), 10)
        assert w.backend == "watchfiles"
        f = tmp_path / "00000001.request"
        f.write_bytes(b"x")
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.05)
        await w.stop()
        return seen

    assert asyncio.run(main()) == [tmp_path / "00000001.request"]


@linux
def test_an_idle_inotify_watcher_starts_no_thread(tmp_path: Path) -> None:
    async def main() -> set[str]:
        before = set(threading.enumerate())
        w = RequestWatcher(tmp_path, lambda paths: None)
        w.start()
        await asyncio.wait_for(w.ready.wait(), 10)
        await asyncio.sleep(0.2)
        started = {t.name for t in set(threading.enumerate()) - before}
        await w.stop()
        return started

    assert asyncio.run(main()) == set()


def test_watcher_backend_from_the_environment() -> None:
    on_linux = sys.platform.startswith("linux")
    assert default_backend({}) == ("inotify" if on_linux else "watchfiles")
    assert default_backend({"HOTLINK_WATCHER": " Auto "}) == default_backend({})
    assert default_backend({"HOTLINK_WATCHER": "watchfiles"}) == "watchfiles"
    with pytest.raises(ValueError, match="HOTLINK_WATCHER must be auto, inotify or watchfiles"):
        default_backend({"HOTLINK_WATCHER": "poll"})


def test_bad_watcher_backend_stops_the_agent_with_a_clear_error(relay, tmp_path):  # type: ignore[no-untyped-def]
    carol = AgentProcess(
        tmp_path / "carol", "carol@example.org", relay, env={"HOTLINK_WATCHER": "poll"}
    )
    proc = carol.run_to_exit()
    assert proc.returncode == 1, proc.stderr
    assert "HOTLINK_WATCHER must be auto, inotify or watchfiles, not 'poll'" in proc.stderr
    assert "Traceback" not in proc.stderr
