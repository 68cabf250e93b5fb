"""Long fuzz run of the codecs (not part of the test suite).

    nice -n 10 python fuzz/run.py --cases 1000000            # all targets, atheris
    python fuzz/run.py --targets acl --cases 20000 --engine hypothesis

Targets (`fuzz/targets.py`): `frames` (HLNK FrameDecoder), `envelope` (WS envelope
decode), `acl` (syft.pub.yaml parser + glob matcher), `paths` (path validation).
`--cases` is the total over the selected targets, split by `WEIGHTS`.

Engines: `atheris` (coverage-guided libFuzzer; `pip install atheris`), else
`hypothesis` (random generation, much slower per case). Every case is bounded:
- time: libFuzzer `-timeout` (a case running longer is reported as a hang), and the
  slowest case is recorded;
- memory: `tracemalloc` peak of the case must stay under
  `MEM_BASE + MEM_PER_BYTE * len(input)` (a decoder that trusts a length prefix
  would allocate far more);
- exceptions: anything but the codec's own error type is a crash.
Each target runs in its own process; findings are written to `--out`
(`<target>/crash-*`, libFuzzer's artifacts) and the summary to `--out/summary.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Share of `--cases` per target (the ACL target is ~10x slower per case: YAML).
WEIGHTS = {"frames": 0.3, "envelope": 0.3, "paths": 0.25, "acl": 0.15}
MAX_LEN = {"frames": 4096, "envelope": 4096, "paths": 4096 + 64, "acl": 8192}
MEM_BASE = 4 * 1024 * 1024
MEM_PER_BYTE = 256
_STATS_EVERY = 1000


class Bounded:
    """Wraps a target with the per-case memory bound and keeps statistics."""

    def __init__(self, name: str, fn: Callable[[bytes], None], stats_path: Path | None) -> None:
        self.name = name
        self.fn = fn
        self.stats_path = stats_path
        self.cases = 0
        self.max_seconds = 0.0
        self.max_peak = 0
        self.max_peak_len = 0
        tracemalloc.start()

    def __call__(self, data: bytes) -> None:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        self.fn(data)
        dt = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] - base
        bound = MEM_BASE + MEM_PER_BYTE * len(data)
        if peak > bound:
            raise MemoryError(
                f"{self.name}: case of {len(data)} bytes peaked at {peak} bytes (> {bound})"
            )
        self.cases += 1
        if dt > self.max_seconds:
            self.max_seconds = dt
        if peak > self.max_peak:
            self.max_peak, self.max_peak_len = peak, len(data)
            if self.stats_path is not None:  # keep it for a look (cheap: rare)
                self.stats_path.with_name("max_peak_input.bin").write_bytes(data)
        if self.stats_path is not None and self.cases % _STATS_EVERY == 0:
            self.write_stats()

    def write_stats(self) -> None:
        assert self.stats_path is not None
        tmp = self.stats_path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "cases": self.cases,
                    "max_case_seconds": round(self.max_seconds, 4),
                    "max_peak_bytes": self.max_peak,
                    "max_peak_input_len": self.max_peak_len,
                }
            )
        )
        tmp.replace(self.stats_path)


# ------------------------------------------------------------------------ workers


def worker_atheris(name: str, runs: int, timeout: int, out: Path) -> int:
    import atheris

    with atheris.instrument_imports(include=["hotlink", "yaml", "msgpack"]):
        sys.path.insert(0, str(HERE))
        import targets

    corpus = out / name / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(targets.seeds(name)):
        (corpus / f"seed-{i}").write_bytes(seed)
    bounded = Bounded(name, targets.TARGETS[name], out / name / "stats.json")
    argv = [
        sys.argv[0],
        f"-runs={runs}",
        f"-timeout={timeout}",
        f"-max_len={MAX_LEN[name]}",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={out / name}/",
        str(corpus),
    ]
    atheris.Setup(argv, bounded)
    atheris.Fuzz()  # exits the process when done
    return 0


def worker_hypothesis(name: str, runs: int, timeout: int, out: Path) -> int:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    sys.path.insert(0, str(HERE))
    import targets

    bounded = Bounded(name, targets.TARGETS[name], out / name / "stats.json")
    seeds = targets.seeds(name)
    data = st.binary(max_size=MAX_LEN[name]) | st.sampled_from(seeds).flatmap(
        lambda s: st.binary(max_size=64).map(lambda tail: s[: len(s) - len(tail) // 2] + tail)
    )

    @settings(
        max_examples=runs,
        deadline=timeout * 1000,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data)
    def run(b: bytes) -> None:
        bounded(b)

    t0 = time.monotonic()
    try:
        run()
    finally:
        bounded.write_stats()
    print(f"Done {bounded.cases} runs in {int(time.monotonic() - t0)} second(s)", file=sys.stderr)
    return 0


# --------------------------------------------------------------------- orchestrator


def _split(total: int, names: list[str]) -> dict[str, int]:
    w = sum(WEIGHTS[n] for n in names)
    return {n: max(1, round(total * WEIGHTS[n] / w)) for n in names}


def _engine(requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        import atheris  # noqa: F401
    except ImportError:
        return "hypothesis"
    return "atheris"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", type=int, default=1_000_000, help="total over all targets")
    p.add_argument("--targets", default=",".join(WEIGHTS), help="comma-separated subset")
    p.add_argument("--engine", choices=["auto", "atheris", "hypothesis"], default="auto")
    p.add_argument("--timeout", type=int, default=5, help="seconds per case (hang bound)")
    p.add_argument("--jobs", type=int, default=1, help="targets fuzzed at the same time")
    p.add_argument("--out", type=Path, default=Path("/tmp/hotlink-fuzz"), help="artifacts")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--runs", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    engine = _engine(args.engine)
    out: Path = args.out.resolve()

    if args.worker:
        fn = worker_atheris if engine == "atheris" else worker_hypothesis
        return fn(args.worker, args.runs, args.timeout, out)

    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = set(names) - set(WEIGHTS)
    if unknown:
        p.error(f"unknown targets {sorted(unknown)}")
    out.mkdir(parents=True, exist_ok=True)
    runs = _split(args.cases, names)
    print(f"engine {engine}; cases {runs}; artifacts in {out}", flush=True)
    pending = list(names)
    running: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
    results: dict[str, dict[str, object]] = {}
    while pending or running:
        while pending and len(running) < args.jobs:
            name = pending.pop(0)
            shutil.rmtree(out / name, ignore_errors=True)
            (out / name).mkdir(parents=True)
            log = open(out / name / "log.txt", "wb")  # noqa: SIM115 - owned by the child
            cmd = [sys.executable, __file__, "--worker", name, "--runs", str(runs[name])]
            cmd += ["--engine", engine, "--timeout", str(args.timeout), "--out", str(out)]
            running[name] = (subprocess.Popen(cmd, stdout=log, stderr=log), time.monotonic())
            log.close()
        time.sleep(1)
        for name, (proc, t0) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            results[name] = _result(name, proc.returncode, time.monotonic() - t0, out)
            print(json.dumps({name: results[name]}), flush=True)
    total = sum(int(r["cases"]) for r in results.values())  # type: ignore[call-overload]
    ok = all(r["ok"] for r in results.values())
    summary = {"engine": engine, "total_cases": total, "ok": ok, "targets": results}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"{'OK' if ok else 'FINDINGS'}: {total} cases; summary {out / 'summary.json'}")
    return 0 if ok else 1


def _result(name: str, rc: int, seconds: float, out: Path) -> dict[str, object]:
    log = (out / name / "log.txt").read_text(errors="replace")
    m = re.search(r"Done (\d+) runs in (\d+) second", log)
    try:
        stats = json.loads((out / name / "stats.json").read_text())
    except (OSError, ValueError):
        stats = {}
    crashes = sorted(str(p) for p in (out / name).glob("*-*") if p.is_file())
    return {
        "ok": rc == 0 and not crashes,
        "returncode": rc,
        "cases": int(m.group(1)) if m else stats.get("cases", 0),
        "seconds": round(seconds, 1),
        "max_case_seconds": stats.get("max_case_seconds"),
        "max_peak_bytes": stats.get("max_peak_bytes"),
        "artifacts": crashes,
        "tail": "" if rc == 0 else log[-3000:],
    }


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
