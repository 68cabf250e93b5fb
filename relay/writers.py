"""Who wrote each stored fallback file: the relay's record, so readers can check it.

A fallback file (`wire.fallbackfile`, content starting `HLFB`) is replayed into a
session's stream by every reader agent that finds it under the session's folder. Any
user with write access to that folder could store one, and its content names the
session by its sid, which is no secret (it is inside every fallback file a reader
can read). So the relay, the only party that knows who wrote a file, records the
authenticated writer of every fallback file it stores and stamps it on the copies it
passes on (`FileWrite.wrt`): on broadcasts right away, and on catch-up pages
(`FileSync`) from this record, which therefore has to outlive a relay restart.

Persistence is an append-only log of JSON lines `[path, writer]` (`writer` empty: the
path no longer holds a fallback file), one short unsynced `write` per fallback file,
replayed at start (last line wins) and rewritten from memory when it holds more than
four times as many lines as live entries. A file stored before this record existed
has no writer: readers refuse to replay it (logged on their side).

Relay cluster nodes share `--data`, so several processes append to one log: a lookup
that misses reads what others appended since (`_catch_up`), and a node notices that
another one compacted the log (a new inode) before it appends or reads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import TextIO

from hotlink.common.atomic import write_atomic

log = logging.getLogger(__name__)

LOG_NAME = "fallback-writers.log"
#: the log is compacted when it has more lines than this many times the live entries
#: (plus a constant, so a small record is never rewritten over and over)
COMPACT_FACTOR = 4
COMPACT_SLACK = 10_000


class WriterLedger:
    """path -> authenticated writer of the fallback file stored there. `data_dir`
    None keeps it in memory only (unit tests)."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        self.writers: dict[str, str] = {}
        self.path = Path(data_dir, LOG_NAME) if data_dir is not None else None
        self._lines = 0
        self._fh: TextIO | None = None
        #: read side of the log (what other cluster nodes append) and its partial line
        self._rd: TextIO | None = None
        self._rest = ""
        if self.path is not None:
            self._compact()

    def _apply(self, lines: list[str]) -> None:
        bad = 0
        for line in lines:
            try:
                path, writer = json.loads(line)
                if not isinstance(path, str) or not isinstance(writer, str):
                    raise ValueError("not two strings")
            except ValueError:
                bad += 1  # a torn line after a crash; the rest still counts
                continue
            if writer:
                self.writers[path] = writer
            else:
                self.writers.pop(path, None)
        if bad:
            log.warning("%s: %d unreadable lines skipped", self.path, bad)

    def _replaced(self, fh: TextIO | None) -> bool:
        """True if the log file is no longer the one `fh` has open (compacted)."""
        assert self.path is not None
        try:
            return fh is None or os.stat(self.path).st_ino != os.fstat(fh.fileno()).st_ino
        except OSError:
            return True

    def _catch_up(self) -> None:
        """Read what was appended to the log since we last looked (by anyone)."""
        assert self.path is not None
        if self._replaced(self._rd):
            if self._rd is not None:
                self._rd.close()
            self._rest = ""
            try:
                self._rd = open(self.path, encoding="utf-8")  # noqa: SIM115 - kept open
            except OSError:
                self._rd = None
                return
        assert self._rd is not None
        data = self._rest + self._rd.read()
        lines = data.split("\n")
        self._rest = lines.pop()
        self._apply(lines)

    def _compact(self) -> None:
        assert self.path is not None
        self._catch_up()
        lines = "".join(json.dumps([p, w]) + "\n" for p, w in self.writers.items())
        if self._fh is not None:
            self._fh.close()
        write_atomic(self.path, lines.encode())
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        self._lines = len(self.writers)
        self._catch_up()  # the read side moves to the new file, at its end

    def writer(self, path: str) -> str:
        """The recorded writer of the fallback file at `path` ("" if unknown)."""
        w = self.writers.get(path)
        if w is None and self.path is not None:
            self._catch_up()  # another cluster node may have stored it
            w = self.writers.get(path)
        return w or ""

    def record(self, path: str, writer: str) -> None:
        """`writer` stored a fallback file at `path` (`""`: some other content)."""
        if self.writers.get(path, "") == writer:
            return
        if writer:
            self.writers[path] = writer
        else:
            del self.writers[path]
        if self.path is None:
            return
        try:
            if self._replaced(self._fh):  # compacted by another node: append to the new one
                if self._fh is not None:
                    self._fh.close()
                self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
            self._fh.write(json.dumps([path, writer]) + "\n")
            self._fh.flush()
        except OSError as exc:  # the file is stored; readers will refuse its replay
            log.error("cannot record the writer of %s: %s", path, exc)
            return
        self._lines += 1
        if self._lines > COMPACT_FACTOR * len(self.writers) + COMPACT_SLACK:
            self._compact()

    def close(self) -> None:
        for fh in (self._fh, self._rd):
            if fh is not None:
                with contextlib.suppress(OSError):
                    fh.close()
        self._fh = self._rd = None
