"""How a trace follows a message onto the file (fallback) path.

Decision: nothing trace-related is ever written to disk.
- On the wire, the FileWrite (agent -> relay) and the FileNotify (relay -> readers)
  carry the traceparent in the WS envelope's optional `tpc` field, exactly like
  HotlinkData: `encode(FileWrite(...), traceparent=ctx.traceparent)`. The message's own
  fields are the reference's and stay untouched.
- Between "the agent wrote / saw a `.request` file" and "the agent sent it", the
  context stays in memory in the same agent process: `FileTraces`, a small bounded map
  from the file's datasite-relative path to the traceparent. The agent that falls back
  puts the traceparent of the hotlink message it could not send; the watcher that
  picks the file up takes it and continues that trace (`watcher.detected` becomes a
  child), or, if there is none (a file written by another program, or an agent
  restart in between), starts a new origin with `sample_origin()`.
- Same on the reader: the agent that received a FileNotify writes the file and
  replays it into IPC within one process, so it keeps the `TraceCtx` in hand.

Why not on disk: the `.request` content is the app's payload (cannot grow a header);
sidecar files double the file count and race with the sync; extended attributes are
lost by copies and unsupported on some filesystems. A lost context only costs a
broken trace, never a message.
"""

from __future__ import annotations

from collections import OrderedDict


class FileTraces:
    """Bounded path -> traceparent map (oldest entries evicted first).

    Only sampled messages are ever put here, so it stays small; `capacity` bounds it
    anyway against files that are never picked up.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._map: OrderedDict[str, str] = OrderedDict()
        self.evicted = 0

    def put(self, path: str, traceparent: str) -> None:
        """Remember the trace of the message now stored as file `path`."""
        if not traceparent:
            return
        m = self._map
        m[path] = traceparent
        m.move_to_end(path)
        while len(m) > self.capacity:
            m.popitem(last=False)
            self.evicted += 1

    def take(self, path: str) -> str:
        """The traceparent stored for `path` ("" if none), forgetting it."""
        return self._map.pop(path, "")

    def __len__(self) -> int:
        return len(self._map)
