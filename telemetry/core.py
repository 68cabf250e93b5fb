"""`Telemetry`: the hot-path facade. Decide sampling once, record tuples, export later.

Measured with the OpenTelemetry SDK, one span costs ~30 µs sampled and ~10 µs even
when sampled out, which would double the relay's latency. So nothing here touches the
SDK on the data path:

- `sample_origin()` decides once per message where it enters Hotlink (one random
  compare); None means unsampled and the call sites do nothing more for that message.
  Hotlink never sends a traceparent for an unsampled message, so downstream a missing
  `tpc` means "not sampled" and costs one falsy check.
- `child_of(tp)` continues a trace that arrived on the wire; `TraceCtx.child()`
  continues one inside a process. Span ids are generated up front, so the traceparent
  of a stage can go on the wire before that stage's span exists.
- `record()` appends one tuple to a bounded deque (drops and counts when full, never
  blocks). A daemon thread wakes every `flush_interval` seconds and, once the data
  path has stopped adding records (`busy_can_wait`), hands the tuples, in chunks, to
  the sink: `exporter_process.ProcessSink` pickles them into a pipe to
  the process that builds and exports the spans (see there for why). The thread
  yields the GIL between chunks so the event loop thread can run; it does its work
  mostly while the loop waits for I/O without the GIL. (Pickling on the event loop
  instead, in small chunks per loop iteration, put all of it on the data path:
  pipelined 1 KB P50 2.2-4.9 ms against 1.5-1.7 ms from the thread, same run.)

Nothing in this module imports OpenTelemetry: with tracing off (`OFF`, the default),
importing `hotlink.telemetry` costs no SDK import and every call returns at once.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from .compact import expand
from .config import TracingConfig
from .traceparent import format_traceparent, parse_fields, sampled_v00

log = logging.getLogger(__name__)
#: seconds the exit path waits for the exporter (twice at most: flusher, then final
#: flush); a collector that is gone costs that much, not the OTLP retry schedule
SHUTDOWN_TIMEOUT = 1.5
#: seconds the flusher may leave records queued while the data path stays busy
HOLD_MAX = 5.0

AttrValue = str | bool | int | float
Attrs = Mapping[str, AttrValue] | tuple[Mapping[str, AttrValue], Mapping[str, AttrValue]]

#: One recorded span, as queued: (name, trace_id, span_id, parent_id, parent_remote,
#: start_ns, end_ns, attrs, kind, error). parent_id 0 = root; kind None = the
#: name's default kind in `names.KINDS`.
SpanRecord = tuple[str, int, int, int, bool, int, int, Any, str | None, str]


class SpanSink(Protocol):
    """Where drained records go (`export.SdkSink` in production, a list in tests)."""

    def export(self, records: list[SpanRecord]) -> None: ...
    def force_flush(self, timeout: float) -> None: ...
    def shutdown(self, timeout: float) -> None: ...


_MASK64 = (1 << 64) - 1
_getrandbits = random.getrandbits


def _new_span_id() -> int:
    sid = _getrandbits(64)
    while not sid:  # zero is invalid (W3C); 1 in 2**64
        sid = _getrandbits(64)
    return sid


#: a fresh non-zero span id (random, 64 bits): for call sites that record compact
#: tuples (`compact.py`) instead of building a `TraceCtx` per span
new_span_id = _new_span_id


class TraceCtx:
    """The identity of one span that will be recorded: its trace, its id, its parent.

    Exists only for sampled messages. Cheap (slots, ints); `traceparent` is formatted
    on demand (only when it goes on the wire).
    """

    __slots__ = ("parent_id", "remote", "span_id", "trace_id")

    def __init__(self, trace_id: int, span_id: int, parent_id: int = 0, remote: bool = False):
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id  # 0: a root span
        self.remote = remote  # parent lives in another process

    def child(self) -> TraceCtx:
        """The next span of the same message in this process, a child of this one."""
        return TraceCtx(self.trace_id, _new_span_id(), self.span_id, False)

    @property
    def traceparent(self) -> str:
        """W3C traceparent naming this span as the parent (sampled flag set)."""
        return format_traceparent(self.trace_id, self.span_id, True)

    def __repr__(self) -> str:
        return (
            f"TraceCtx(trace={self.trace_id:032x}, span={self.span_id:016x}, "
            f"parent={self.parent_id:016x}, remote={self.remote})"
        )


class Telemetry:
    """Tracing for one process. `Telemetry()` (and `OFF`) is disabled and does nothing.

    Build an enabled one with `hotlink.telemetry.setup(...)`. Thread-safe for
    `record()` from any thread (deque append is atomic in CPython).
    """

    def __init__(
        self,
        *,
        enabled: bool = False,
        root_ratio: float = 0.0,
        parent_based: bool = True,
        always_sample_lifecycle: bool = True,
        sink: SpanSink | None = None,
        max_pending: int = 16384,
        flush_interval: float = 0.2,
        flush_chunk: int = 64,
        start_thread: bool = True,
        config: TracingConfig | None = None,
    ) -> None:
        self.enabled = enabled
        self.config = config  # what setup() resolved (None for OFF / tests)
        self.root_ratio = root_ratio
        self.parent_based = parent_based
        self._lifecycle = enabled and always_sample_lifecycle and root_ratio > 0.0
        # A ratio sampler's decision is `low 64 bits of the trace id < bound`, like the
        # SDK's TraceIdRatioBased, so a non-parent-based child decides the same way.
        self._bound = round(root_ratio * (1 << 64))
        self._sink = sink
        self._pending: deque[SpanRecord] = deque()
        self.max_pending = max_pending
        self.flush_interval = flush_interval
        self.flush_chunk = max(1, flush_chunk)
        self.dropped = 0  # records dropped because the queue was full
        self.flushed = 0  # spans handed to the sink
        self.sink_errors = 0
        self._lock = threading.Lock()  # one drainer at a time
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        if enabled and sink is not None and start_thread:
            self._thread = threading.Thread(
                target=self._run, name="hotlink-otel-flush", daemon=True
            )
            self._thread.start()
            atexit.register(self.shutdown)

    # ------------------------------------------------------------------ sampling

    def sample_origin(self) -> TraceCtx | None:
        """Sampling decision for a message entering Hotlink here (no parent).

        None: not sampled; send no traceparent and record nothing for it.
        """
        if not self.enabled:
            return None
        low = _getrandbits(64)
        if low >= self._bound:
            return None
        tid = (_getrandbits(64) << 64) | low
        return TraceCtx(tid, _new_span_id())

    def sample_origin_id(self) -> int:
        """`sample_origin` for call sites that record compact tuples: the new trace id,
        or 0 for "not sampled" (no `TraceCtx` built; span ids from `new_span_id`)."""
        if not self.enabled:
            return 0
        low = _getrandbits(64)
        if low >= self._bound:
            return 0
        return (_getrandbits(64) << 64) | low or 1

    def sample_lifecycle(self) -> TraceCtx | None:
        """A new trace for a rare event (session open/accept/reject/close).

        Always sampled when tracing is on, unless the root ratio is 0 (`*always_off`
        samplers, or ratio 0): these are a handful per session, and a 1% sample of them
        would be useless.
        """
        if not self._lifecycle:
            return None
        tid = (_getrandbits(64) << 64) | _getrandbits(64)
        return TraceCtx(tid or 1, _new_span_id())

    def child_of(self, traceparent: str) -> TraceCtx | None:
        """Continue the trace of a message that arrived with `traceparent` (may be "").

        Parent-based samplers (the default) follow the parent's sampled flag; the
        others decide on their own (always_on / always_off / ratio of the trace id).
        Returns None, creating nothing, for "", garbage, and unsampled parents.
        """
        p = self.parent_of(traceparent)
        if p is None:
            return None
        return TraceCtx(p[0], _new_span_id(), p[1], True)

    def parent_of(self, traceparent: str) -> tuple[int, int, int] | None:
        """`child_of` for call sites that record compact tuples: the parsed
        (trace id, parent span id, flags) when the trace is to be continued, else None;
        no `TraceCtx` built (span ids from `new_span_id`)."""
        if not self.enabled or not traceparent:
            return None
        p = parse_fields(traceparent)
        if p is None:
            return None
        if self.parent_based:
            if not p[2] & 1:
                return None
        elif (p[0] & _MASK64) >= self._bound:
            return None
        return p

    def parent_ref(self, traceparent: str) -> tuple[int | str, int] | None:
        """`parent_of` for compact records, without parsing ids on the data path:
        (traceparent, 0) when it is a sampled version-00 one and the sampler follows
        the parent (the default; `compact` parses its ids when it builds the spans),
        (trace id, parent span id) for other forms and samplers, None when the trace
        is not continued. Either pair goes into a record as its trace and parent."""
        if not self.enabled or not traceparent:
            return None
        if self.parent_based and sampled_v00(traceparent):
            return traceparent, 0
        p = self.parent_of(traceparent)
        return None if p is None else (p[0], p[1])

    # ------------------------------------------------------------------ recording

    def record(
        self,
        name: str,
        ctx: TraceCtx | None,
        start_ns: int,
        end_ns: int,
        attrs: Attrs | None = None,
        kind: str | None = None,
        error: str = "",
    ) -> None:
        """Queue one finished span (wall-clock `time.time_ns()` stamps). Never blocks.

        `attrs` is kept by reference: do not mutate it afterwards. It may also be a
        pair `(shared, own)` of mappings, merged (own wins) when the span is built:
        `shared` can then be one object for many spans (per session attributes), which
        costs the hot path no copy and the exporter pipe one copy per chunk. `error`
        non-empty marks the span's status ERROR with that description.
        """
        if not self.enabled or ctx is None:  # None: an unsampled message slipped through
            return
        q = self._pending
        if len(q) >= self.max_pending:
            self.dropped += 1
            return
        q.append(
            (name, ctx.trace_id, ctx.span_id, ctx.parent_id, ctx.remote,
             start_ns, end_ns, attrs, kind, error)
        )  # fmt: skip

    def add(self, rec: tuple[Any, ...]) -> None:
        """Queue one compact data-path record (`compact.py`: a flat tuple standing for
        one or two spans of one message). The data path's `record`: no attribute dict
        per message, nothing to merge; never blocks."""
        q = self._pending
        if len(q) >= self.max_pending:
            self.dropped += 1
            return
        q.append(rec)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def span(
        self, name: str, ctx: TraceCtx | None, attrs: dict[str, AttrValue] | None = None
    ) -> Iterator[dict[str, AttrValue]]:
        """Time a block off the data path (lifecycle, file path); no-op when ctx is None.

        Yields a dict the block may add attributes to; an exception marks the span
        ERROR (and propagates).
        """
        a: dict[str, AttrValue] = attrs if attrs is not None else {}
        if ctx is None:
            yield a
            return
        t0 = time.time_ns()
        err = ""
        try:
            yield a
        except BaseException as exc:
            err = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.record(name, ctx, t0, time.time_ns(), a, error=err)

    @property
    def pending(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ flushing

    def drain(self, limit: int | None = None) -> int:
        """Hand up to `limit` queued spans to the sink now; returns how many."""
        if self._sink is None:
            n = len(self._pending)
            self._pending.clear()
            return n
        with self._lock:
            return self._drain_locked(limit)

    def _drain_locked(self, limit: int | None) -> int:
        q = self._pending
        assert self._sink is not None
        export = self._sink.export
        # a sink that builds spans elsewhere (the exporter process) takes compact
        # records as they are; for the others the flusher thread expands them
        compact_ok = getattr(self._sink, "compact", False)
        done = 0
        chunk = self.flush_chunk
        while q and (limit is None or done < limit):
            n = min(len(q), chunk)
            if limit is not None:
                n = min(n, limit - done)
            batch = [q.popleft() for _ in range(n)]
            try:
                export(batch if compact_ok else expand(batch))
            except Exception:
                self.sink_errors += 1
                log.exception("telemetry: dropping %d spans the exporter refused", n)
            done += n
            self.flushed += n
            time.sleep(0)  # give the GIL to the event loop between chunks
        return done

    def _run(self) -> None:
        seen = 0  # records queued at the previous wake-up
        since = 0.0  # when the flusher first left records for later (0: it did not)
        while not self._stopped:
            self._wake.wait(self.flush_interval)
            woken = self._wake.is_set()
            self._wake.clear()
            n = len(self._pending)
            now = time.monotonic()
            if n and not woken and busy_can_wait(n, seen, self.max_pending):
                since = since or now
                if now - since < HOLD_MAX:
                    seen = n
                    continue
            if n:
                try:
                    self.drain()
                except Exception:  # never let the flusher die
                    log.exception("telemetry: flush failed")
            seen = len(self._pending)
            since = 0.0

    def flush(self, timeout: float = 5.0) -> None:
        """Export everything queued so far (blocks the caller: not for the data path)."""
        if not self.enabled:
            return
        self.drain()
        if self._sink is not None:
            self._sink.force_flush(timeout)

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Stop the flusher, export what is queued and shut the exporter down, within
        about 2 x `timeout` even when the collector is gone. Idempotent."""
        if self._stopped or not self.enabled:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.shutdown)
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with contextlib.suppress(Exception):
            self.drain()
        if self._sink is not None:
            try:
                self._sink.shutdown(timeout)
            except Exception:
                log.exception("telemetry: exporter shutdown failed")

    def stats(self) -> dict[str, int]:
        return {
            "recorded": self.flushed + len(self._pending),
            "dropped": self.dropped,
            "flushed": self.flushed,
            "pending": len(self._pending),
            "sink_errors": self.sink_errors,
        }


def busy_can_wait(queued: int, before: int, max_pending: int) -> bool:
    """Whether the flusher leaves the queue for later: records arrived since its last
    wake-up (the data path is busy) and the queue is below half its bound.

    Why: the pickling (one C call per chunk of records, which never lets go of the
    GIL) is work the event loop thread waits behind while messages are in flight: with
    8 in flight, it was most of what tracing added to the pipelined P50. Records carry
    their own clock stamps, so handing them over once the process is quiet costs only
    export latency; half the bound leaves room for a burst while the flusher catches up.
    """
    return queued > before and queued < max_pending // 2


#: The disabled instance: the default for every component that takes a `Telemetry`.
OFF = Telemetry()
