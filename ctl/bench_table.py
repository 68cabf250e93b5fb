"""The text table of `hotlinkctl bench` (`bench.render_table`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .bench_paths import compare_paths
from .stats import fmt_ns, fmt_size

if TYPE_CHECKING:
    from .bench import BenchReport, RunResult
    from .stats import LatencySummary

_COLS = ("P50", "P90", "P95", "P99", "max", "mean")


def render_table(report: BenchReport) -> str:
    cfg = report.config
    env = report.environment
    what = (
        ".request file -> reader app socket (file path)"
        if cfg.bench == "e2e-latency"
        else "app socket -> app socket"
    )
    path_name = "files" if cfg.bench == "e2e-latency" else "hotlink"
    lines = [
        f"{cfg.bench}: one-way latency, {what} "
        f"({cfg.count} msgs per row, warm-up {cfg.warmup}, ipc {cfg.ipc})",
        f"{env['cpu_model']}, {env['cpu_count']} cores, Python {env['python']}, "
        f"uvloop {'on' if env['uvloop'] else 'off'}, tracing {'on' if env['tracing'] else 'off'}",
        f"hot path: {env.get('hot_path', 'unknown')}",
        "",
    ]
    hdr = f"{'size':>6} {'mode':<10} {'path':<8}" + "".join(f"{c:>9}" for c in _COLS)
    hdr += f"{'MB/s':>9}" + (f" {'x floor':>8}" if any(r.floor for r in report.results) else "")
    if any(r.traced for r in report.results):
        hdr += f" {'x untraced P50 / P99':>21}"
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for r, path, s, row in _rows(report, path_name):
        figures = (s.p50_ns, s.p90_ns, s.p95_ns, s.p99_ns, s.max_ns, s.mean_ns)
        line = row + "".join(f"{fmt_ns(v):>9}" for v in figures)
        line += f"{s.mb_per_s:>9.1f}"
        if path != "floor" and r.floor is not None:
            line += f" {s.p50_ns / r.floor.p50_ns:>7.2f}x"
        elif r.floor is not None:
            line += " " * 9
        if path == "traced":
            p50 = s.p50_ns / max(r.hotlink.p50_ns, 1)
            p99 = s.p99_ns / max(r.hotlink.p99_ns, 1)
            line += f" {p50:>9.2f}x / {p99:.2f}x"
        lines.append(line)
    if report.results:
        lines.append("")
        if any(r.floor for r in report.results):
            how = (
                f"measured in {cfg.blocks} alternating blocks per path"
                if cfg.blocks > 1
                else "floor measured just before"
            )
            lines.append(f"x floor = hotlink P50 / floor P50 ({how}, same sizes).")
        if report.otel is not None:
            lines.append(
                "x untraced = traced / hotlink, same size and mode, measured seconds apart."
            )
            lines.append(report.otel.line())
        if cfg.bench == "hotlink-protocol":
            lines.append(
                "Published reference (25 msgs, one in flight): Go P50 ~330 µs, P99 ~1.1 ms; "
                "Rust P50 ~970 µs, P99 ~5.8 ms."
            )
    cpu = _cpu_per_message(report, path_name)
    if cpu and lines[-1]:
        lines.append("")
    lines += cpu
    lines += _direct_vs_relay(report)
    for note in report.notes:
        lines.append(f"note: {note}")
    if report.throughput:
        lines.append("")
        lines.append(f"{'throughput':<10} {'frames':>8} {'frame':>8} {'MB/s':>9} {'frames/s':>10}")
        for t in report.throughput:
            lines.append(
                f"{t.path:<10} {t.frames:>8} {fmt_size(t.frame_size):>8} "
                f"{t.mb_per_s:>9.1f} {t.frames_per_s:>10.0f}"
            )
    return "\n".join(lines)


def _rows(
    report: BenchReport, path_name: str
) -> Iterator[tuple[RunResult, str, LatencySummary, str]]:
    """(result, path, its summary, the row's "size mode path" columns) of every row
    the tables print, in order: a result's floor (once: with --direct the stacks share
    one floor run), the measured path, its traced twin."""
    last_floor = None
    for r in report.results:
        mode = "seq" if r.mode == "sequential" else f"pipe x{r.inflight}"
        rows = [("floor", r.floor)] if r.floor and r.floor is not last_floor else []
        last_floor = r.floor
        rows += [(r.path or path_name, r.hotlink), ("traced", r.traced)]
        for path, s in rows:
            if s is not None:
                yield r, path, s, f"{fmt_size(r.size):>6} {mode:<10} {path:<8}"


def _cpu_per_message(report: BenchReport, path_name: str) -> list[str]:
    """Each path's processes' time on CPU per message (`bench_measure.CpuMeter`): where
    a path's latency above the floor goes, process by process."""
    lines: list[str] = []
    for r, path, s, row in _rows(report, path_name):
        if not s.cpu_us:
            continue
        total = sum(s.cpu_us.values())
        floor_total = sum(r.floor.cpu_us.values()) if r.floor else 0.0
        each = ", ".join(f"{role} {us:.1f}" for role, us in s.cpu_us.items())
        vs = f", x floor {total / floor_total:.2f}" if path != "floor" and floor_total else ""
        lines.append(f"{row} {each} (total {total:.1f}{vs})")
    if not lines:
        return []
    head = "CPU per message (µs on CPU of each process on the path, over the measured messages)"
    return [head, *lines]


def _direct_vs_relay(report: BenchReport) -> list[str]:
    """The `--direct off,auto` summary: direct against relay, same run."""
    rows = compare_paths(report)
    if not rows:
        return []
    lines = [
        "",
        "direct vs relay (same run; ratio = direct / relay, < 1: direct is faster)",
        f"{'size':>6} {'mode':<10} {'relay P50':>10} {'relay P99':>10} {'direct P50':>11} "
        f"{'direct P99':>11} {'x P50':>7} {'x P99':>7}",
    ]
    for c in rows:
        ratio = c.ratios()
        if c.relay is not None and c.direct is not None:
            lines.append(
                f"{fmt_size(c.size):>6} {c.mode:<10} {fmt_ns(c.relay.p50_ns):>10} "
                f"{fmt_ns(c.relay.p99_ns):>10} {fmt_ns(c.direct.p50_ns):>11} "
                f"{fmt_ns(c.direct.p99_ns):>11} {ratio['p50']:>6.2f}x {ratio['p99']:>6.2f}x"
            )
        elif c.relay_tp is not None and c.direct_tp is not None:
            lines.append(
                f"throughput ({fmt_size(c.size)} frames): relay {c.relay_tp.mb_per_s:.1f} MB/s, "
                f"direct {c.direct_tp.mb_per_s:.1f} MB/s, x {ratio['mb_per_s']:.2f}"
            )
    return lines
