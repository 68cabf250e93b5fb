"""Span export in a child process, so that no OpenTelemetry work shares the GIL with
the data path.

Why: exporting in-process (records -> `ReadableSpan` -> `BatchSpanProcessor` -> OTLP
protobuf encoding -> gRPC) costs ~70 µs of Python per message and process at 100 %
sampling, run in bursts by two background threads. Whenever the event loop woke up
during such a burst it waited for the GIL, up to the interpreter's 5 ms switch
interval: sequential 1 KB P99 went from ~0.6 ms to 8-11 ms and pipelined P99 to 37 ms
(py-spy of a traced relay and agent: `BatchProcessor.worker` -> `encode_spans` and
`Telemetry._run` -> `to_readable_span` were the only other busy threads).

Now the process that records spans only pickles the queued records (one C call per
chunk of 64: ~2 µs a record, strings shared by the records of a chunk written once)
and writes them to a non-blocking pipe, from the flusher thread of `core.Telemetry`.
The exporter process (`python -m hotlink.telemetry.exporter_process`, started by
`ProcessSink.start`) unpickles them, builds the spans and exports them with the SDK
exporter `config` asked for, exactly as before (`export.SdkSink`), under the
SCHED_IDLE policy (`HOTLINK_OTEL_EXPORTER_PRIORITY`: `idle`, the default, or a nice
increment such as `10`, or `normal`): a waking relay or agent preempts it at once and
the scheduler treats a core running only it as free, so the export runs in the data
path's gaps. With the exporter still at normal priority, each of its batches (512
spans, ~15 ms of CPU) pushed the data path off a core: P99 6-7 ms sequential, 30 ms
pipelined. While someone waits for it (a flush request, end of input at exit) it
runs at normal priority, so exits and tests do not wait on a busy machine.

Stream on the child's stdin: pickles (protocol 5; the pipe is private to the two
processes, the child trusts its parent as it trusts its own code), each either
  - a list of `core.SpanRecord` tuples;
  - an int N: a flush request; the child exports everything before it and writes
    "N\\n" to its stdout.
The child holds the chunks back, undecoded, until its parent has been quiet for a
moment (`holdback.py`: export latency is not user-visible, the data path's tail is);
a flush request or the end of input releases them at once.
End of input (the parent closed the pipe or died) makes the child export what it
has and exit: no orphan outlives its process.

Nothing is ever waited for on the data path: when the pipe is full the bytes wait in
a bounded backlog, and past it spans are dropped and counted (`dropped`), with one
warning a minute.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import asdict
from typing import Any

from .compact import expand, spans_in
from .config import TracingConfig
from .core import SpanRecord
from .holdback import HoldBack

log = logging.getLogger(__name__)

#: Bytes waiting for the pipe (exporter behind); past this, new spans are dropped.
MAX_BACKLOG = 32 * 1024 * 1024
#: Pipe size asked for (Linux F_SETPIPE_SZ; 1 MiB is the unprivileged maximum).
PIPE_SIZE = 1 << 20
PRIORITY_ENV = "HOTLINK_OTEL_EXPORTER_PRIORITY"
_F_SETPIPE_SZ = 1031
_LEN = struct.Struct("<I")
#: a frame this small is a control message (a flush request's int), never records
CONTROL_MAX = 32


def encode_batch(records: list[SpanRecord]) -> bytes:
    """The bytes of one batch of records on the stream (length-prefixed pickle)."""
    return _frame(pickle.dumps(records, protocol=5))


def _frame(data: bytes) -> bytes:
    return _LEN.pack(len(data)) + data


def decode_frames(buf: bytearray) -> tuple[list[Any], int]:
    """The complete objects at the start of `buf`, and how many bytes they used."""
    frames, used = split_frames(buf)
    return [pickle.loads(f) for f in frames], used


class ProcessSink:
    """A `core.SpanSink` that hands records to an exporter process through a pipe."""

    #: compact records (`compact.py`) cross the pipe as they are: the child expands them
    compact = True

    def __init__(self, cfg: TracingConfig, *, python: str = sys.executable) -> None:
        self.cfg = cfg
        self.python = python
        self.proc: subprocess.Popen[bytes] | None = None
        self._fd = -1
        #: chunks the pipe had no room for, oldest first (`_head` bytes of the first
        #: are written): no copying of the whole backlog when a little of it goes out
        self._backlog: deque[bytes] = deque()
        self._head = 0
        self._backlog_bytes = 0
        self._lock = threading.Lock()  # export / flush / shutdown may run on two threads
        self._flush_seq = 0
        self._acks = b""
        self.dropped = 0
        self.sent = 0
        self._last_warning = 0.0
        self._broken = False

    def start(self) -> ProcessSink:
        """Spawn the exporter process (raises OSError if it cannot be started)."""
        argv = [self.python, "-m", "hotlink.telemetry.exporter_process", json.dumps(_cfg(self.cfg))]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
        )
        assert self.proc.stdin is not None
        self._fd = self.proc.stdin.fileno()
        with contextlib.suppress(OSError):  # Linux only; the default 64 KiB also works
            import fcntl

            fcntl.fcntl(self._fd, _F_SETPIPE_SZ, PIPE_SIZE)
        os.set_blocking(self._fd, False)
        return self

    # ------------------------------------------------------------------ SpanSink

    def export(self, records: list[SpanRecord]) -> None:
        data = encode_batch(records)
        with self._lock:
            if self._broken:
                self._drop(spans_in(records), "the exporter process is gone")
                return
            if self._backlog:
                self._write_backlog()
            if self._backlog_bytes + len(data) > MAX_BACKLOG:
                self._drop(spans_in(records), "the exporter process is behind")
                return
            if self._backlog:
                self._queue(data)
            else:
                self._write_now(data)
            self.sent += len(records)  # records (a compact one stands for 1-2 spans)

    def force_flush(self, timeout: float) -> None:
        """Everything exported so far reaches the exporter and leaves it (or `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._broken or self.proc is None:
                return
            self._flush_seq += 1
            n = self._flush_seq
            self._queue(_frame(pickle.dumps(n, protocol=5)))
            if not self._drain_until(deadline):
                return
        self._wait_ack(n, deadline)

    def shutdown(self, timeout: float) -> None:
        """Hand over what is left, close the pipe (the exporter exports and exits), and
        wait for it up to `timeout`; then stop it (what it still held is lost)."""
        if self.proc is None:
            return
        deadline = time.monotonic() + timeout
        with self._lock:
            if not self._broken:
                self._drain_until(deadline)
            self._broken = True
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
        try:
            self.proc.wait(max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning(
                "telemetry: the span exporter did not finish within %.1fs; stopping it", timeout
            )
            self.proc.terminate()
            try:
                self.proc.wait(1.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    # ------------------------------------------------------------------ internals

    def _queue(self, data: bytes) -> None:
        self._backlog.append(data)
        self._backlog_bytes += len(data)

    def _write_now(self, data: bytes) -> None:
        try:
            n = os.write(self._fd, data)
        except BlockingIOError:
            n = 0
        except OSError:  # BrokenPipeError: the exporter died
            self._gone()
            return
        if n < len(data):
            self._queue(data[n:])

    def _write_backlog(self) -> None:
        """Write queued chunks until the pipe is full (one write of part of a chunk)."""
        q = self._backlog
        while q:
            first = q[0]
            try:
                n = os.write(self._fd, memoryview(first)[self._head :])
            except BlockingIOError:
                return
            except OSError:
                self._gone()
                return
            self._head += n
            self._backlog_bytes -= n
            if self._head < len(first):
                return  # the pipe is full
            q.popleft()
            self._head = 0

    def _drain_until(self, deadline: float) -> bool:
        while self._backlog and not self._broken:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([], [self._fd], [], left)
            self._write_backlog()
        return not self._broken

    def _wait_ack(self, n: int, deadline: float) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            lines = self._acks.split(b"\n")
            if any(x.strip().isdigit() and int(x) >= n for x in lines[:-1]):
                self._acks = lines[-1]
                return
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return
            chunk = os.read(fd, 4096)
            if not chunk:
                return
            self._acks += chunk

    def _gone(self) -> None:
        self._broken = True
        self._backlog.clear()
        self._head = self._backlog_bytes = 0
        code = self.proc.poll() if self.proc is not None else None
        log.warning(
            "telemetry: the span exporter process exited (code %s); spans are dropped "
            "from now on (see its errors above)",
            code,
        )

    def _drop(self, n: int, why: str) -> None:
        self.dropped += n
        now = time.monotonic()
        if now - self._last_warning >= 60.0:
            self._last_warning = now
            log.warning("telemetry: %s: dropped %d spans so far", why, self.dropped)


def _cfg(cfg: TracingConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["resource_attrs"] = dict(cfg.resource_attrs)
    return d


# --------------------------------------------------------------------------- the child


def main(argv: list[str] | None = None) -> int:
    """The exporter process: records on stdin, spans out through the SDK exporter."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hotlink.telemetry.exporter_process CONFIG_JSON", file=sys.stderr)
        return 2
    # The parent decides when we stop (it closes our stdin): a Ctrl-C in its terminal
    # must not lose the spans it still hands over while it shuts down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s otel-exporter: %(message)s"
    )
    raw = json.loads(args[0])
    cfg = TracingConfig(**raw)
    sink = _child_sink(cfg)
    _background_priority(os.environ.get(PRIORITY_ENV, "idle").strip().lower())
    out = sys.stdout.buffer
    buf = bytearray()
    try:
        hold = HoldBack.from_env()
    except ValueError as exc:
        log.warning("%s: using the defaults", exc)
        hold = HoldBack()
    held: list[bytes] = []  # pickled chunks of records, oldest first, not yet decoded
    while True:
        now = time.monotonic()
        if hold.should_release(now):
            _release(sink, held, hold)
        due = _earliest(hold.due(now), sink.due() if hasattr(sink, "due") else None)
        try:
            ready = select.select([0], [], [], due)[0]
        except InterruptedError:
            continue
        if not ready:
            if not hold.held_bytes and hasattr(sink, "tick"):
                sink.tick()
            continue
        data = os.read(0, 1 << 20)
        if not data:
            break
        buf += data
        frames, used = split_frames(buf)
        del buf[:used]
        now = time.monotonic()
        torn = False
        for frame in frames:
            if len(frame) > CONTROL_MAX:
                held.append(frame)
                hold.arrived(len(frame), now)
                continue
            try:
                obj = pickle.loads(frame)
            except Exception:  # a torn stream: nothing after it can be trusted
                log.exception("unreadable span stream; exporting what arrived before it")
                torn = True
                break
            if isinstance(obj, int):
                _normal_priority()  # someone waits for this flush
                _release(sink, held, hold)
                sink.force_flush(10.0)
                with contextlib.suppress(OSError):
                    out.write(b"%d\n" % obj)
                    out.flush()
            else:
                _export(sink, obj)
        if torn:
            break
    _normal_priority()  # our process is exiting and waits for us
    _release(sink, held, hold)
    sink.shutdown(5.0)
    return 0


def split_frames(buf: bytearray) -> tuple[list[bytes], int]:
    """The complete frames' payloads at the start of `buf` (still pickled), and how
    many bytes they used."""
    out: list[bytes] = []
    pos = 0
    n = len(buf)
    while n - pos >= _LEN.size:
        (size,) = _LEN.unpack_from(buf, pos)
        end = pos + _LEN.size + size
        if end > n:
            break
        out.append(bytes(buf[pos + _LEN.size : end]))
        pos = end
    return out, pos


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _export(sink: Any, obj: Any) -> None:
    try:
        sink.export(expand(obj))
    except Exception:
        log.exception("dropping a batch of %d spans", len(obj) if isinstance(obj, list) else 0)


def _release(sink: Any, held: list[bytes], hold: HoldBack) -> None:
    """Decode and export every held chunk, oldest first, then send what the sink
    batched: the data path is idle (or someone waits), so it all goes now."""
    if not held:
        return
    for frame in held:
        try:
            obj = pickle.loads(frame)
        except Exception:
            log.exception("dropping an unreadable chunk of spans")
            continue
        _export(sink, obj)
    held.clear()
    hold.released()
    sink.force_flush(10.0)


def _child_sink(cfg: TracingConfig) -> Any:
    """OTLP/gRPC: our own encoder (`direct_export`); otherwise the SDK pipeline."""
    if cfg.exporter == "otlp" and cfg.protocol == "grpc":
        from .direct_export import DirectGrpcSink, supported

        if supported():
            return DirectGrpcSink(cfg, os.environ)
        log.warning("this OpenTelemetry SDK's gRPC exporter has no _translate_data: SDK path")
    from .export import SdkSink, make_exporter, make_processor, make_resource

    return SdkSink(make_processor(make_exporter(cfg), os.environ), make_resource(cfg))


def _threads() -> list[int]:
    """Our thread ids: Linux scheduling policies are per thread (0 = the caller)."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _background_priority(how: str) -> None:
    try:
        if how == "idle" and hasattr(os, "SCHED_IDLE"):
            for tid in _threads():
                with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                    os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        elif how not in ("idle", "normal", ""):
            os.nice(int(how))
    except (OSError, ValueError) as exc:
        log.warning("cannot lower the exporter's priority (%s=%s): %s", PRIORITY_ENV, how, exc)


def _normal_priority() -> None:
    # Allowed unprivileged within RLIMIT_NICE (Linux >= 2.6.39); else we stay idle.
    if not hasattr(os, "SCHED_IDLE") or os.sched_getscheduler(0) != os.SCHED_IDLE:
        return
    for tid in _threads():
        with contextlib.suppress(OSError):
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))


if __name__ == "__main__":
    sys.exit(main())
