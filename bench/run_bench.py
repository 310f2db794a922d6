"""`make bench`: times whole `xent score --json --quiet` processes against a plain numpy script.

Owns the timing, the peak-RSS measurement, the plain-numpy reference and the results table
(printed, and written to bench/results.md). The inputs come from make_data.py (bench/data/).

For every shape and format it runs each command once as a warm-up (which also puts the files in
the page cache), then `--repeat` more times, and reports the median wall-clock time of the whole
process (interpreter start-up and imports included) and the peak RSS of that process alone, read
from `os.wait4`. The reference is this file itself, run as
`python bench/run_bench.py --reference FILE [LABELS]`: it loads the whole array into memory and
computes max-subtract / exp / sum / log and the mean in numpy. xent's `summary.loss_mean` must
agree with the reference's mean to 1e-6 relative, else a warning is printed.

    .venv/bin/python bench/run_bench.py
    .venv/bin/python bench/run_bench.py --shapes 250000x1000 --formats npy --repeat 5 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results.md"
REL_TOL = 1e-6


def reference(paths: list[str]) -> None:
    """The plain in-memory numpy baseline: print the mean cross-entropy of one dump."""
    if paths[0].endswith(".parquet"):
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(paths[0], columns=["logits", "label"])
        x = pc.list_flatten(table["logits"]).to_numpy().reshape(table.num_rows, -1)
        y = table["label"].to_numpy()
    else:
        x, y = np.load(paths[0]), np.load(paths[1])
    z = x - x.max(axis=1, keepdims=True)
    loss = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]
    print(repr(float(loss.mean(dtype=np.float64))))


class BenchError(Exception):
    pass


@dataclass
class Timing:
    median_s: float
    peak_rss_kib: int
    stdout: str  # of the last run


def run_once(cmd: list[str]) -> tuple[float, int, str]:
    """Wall-clock seconds, peak RSS (KiB) of this child alone, and its stdout."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=REPO)
        assert proc.stdout is not None
        out = proc.stdout.read()  # until the child closes stdout (it exits)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.stdout.close()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-5:]
            raise BenchError(f"exit {proc.returncode}: {shlex.join(cmd)}\n    " + "\n    ".join(tail))
    return seconds, usage.ru_maxrss, out.decode()


def measure(cmd: list[str], repeat: int) -> Timing:
    """One warm-up run, then `repeat` timed runs: median time, max peak RSS over all runs."""
    _, rss, out = run_once(cmd)
    times = []
    for _ in range(repeat):
        seconds, run_rss, out = run_once(cmd)
        times.append(seconds)
        rss = max(rss, run_rss)
    return Timing(statistics.median(times), rss, out)


def measure_pair(cmd_a: list[str], cmd_b: list[str], repeat: int) -> tuple[Timing, Timing, float]:
    """A and B in turn (A B A B …) after one warm-up each, so a drift of the machine's speed hits
    both alike: both medians, and the median of the pairwise ratios A / B."""
    _, rss_a, out_a = run_once(cmd_a)
    _, rss_b, out_b = run_once(cmd_b)
    times_a, times_b = [], []
    for _ in range(repeat):
        seconds, run_rss, out_a = run_once(cmd_a)
        times_a.append(seconds)
        rss_a = max(rss_a, run_rss)
        seconds, run_rss, out_b = run_once(cmd_b)
        times_b.append(seconds)
        rss_b = max(rss_b, run_rss)
    ratio = statistics.median(a / b for a, b in zip(times_a, times_b))
    return Timing(statistics.median(times_a), rss_a, out_a), Timing(statistics.median(times_b), rss_b, out_b), ratio


@dataclass
class Row:
    rows: int
    classes: int
    fmt: str
    xent: Timing | None = None
    numpy: Timing | None = None
    plain: Timing | None = None  # xent --no-diagnostics
    diagnostics_ratio: float | None = None  # xent / xent --no-diagnostics, median of pairs

    @property
    def scores_gb(self) -> float:
        return self.rows * self.classes * 4 / 1e9


def xent_command(files: dict[str, Path], threads: int | None) -> list[str]:
    if "dump" in files:
        cmd = [sys.executable, "-m", "xentcli", "score", str(files["dump"])]
    else:
        cmd = [sys.executable, "-m", "xentcli", "score", str(files["logits"]), "--labels", str(files["labels"])]
    cmd += ["--json", "--quiet"]
    return cmd + (["--threads", str(threads)] if threads else [])


def reference_command(files: dict[str, Path]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--reference", *map(str, files.values())]


def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def bench_one(row: Row, files: dict[str, Path], repeat: int, threads: int | None) -> dict:
    """Fill row.xent and row.numpy; returns xent's JSON document ({} if xent failed)."""
    label = f"{row.rows}x{row.classes} {row.fmt}"
    doc: dict = {}
    xent_mean = ref_mean = None
    agree = "not compared"
    try:
        command = xent_command(files, threads)
        row.xent, row.plain, row.diagnostics_ratio = measure_pair(command, [*command, "--no-diagnostics"], repeat)
        doc = json.loads(row.xent.stdout)
        xent_mean, xent_rows = doc["summary"]["loss_mean"], doc["summary"]["rows"]
        if xent_rows != row.rows:
            warn(f"{label}: xent summary.rows = {xent_rows}, expected {row.rows}")
    except (BenchError, ValueError, KeyError) as exc:
        row.xent = None
        warn(f"{label}: xent failed: {exc}")
    try:
        row.numpy = measure(reference_command(files), repeat)
        ref_mean = float(row.numpy.stdout)
    except (BenchError, ValueError) as exc:
        row.numpy = None
        warn(f"{label}: numpy reference failed: {exc}")
    if xent_mean is not None and ref_mean is not None:
        rel = abs(xent_mean - ref_mean) / max(abs(ref_mean), 1e-300)
        agree = f"loss_mean rel. diff {rel:.1e}"
        if not rel <= REL_TOL:
            warn(f"{label}: loss_mean {xent_mean!r} (xent) vs {ref_mean!r} (numpy): relative difference {rel:.2e}")
    print(f"bench: {label}: xent {fmt_s(row.xent)} s, numpy {fmt_s(row.numpy)} s, {agree}", file=sys.stderr, flush=True)
    return doc


def fmt_s(t: Timing | None) -> str:
    return "error" if t is None else f"{t.median_s:.3f}"


def table(rows: list[Row]) -> str:
    head = ["shape", "format", "scores GB", "xent s", "xent GB/s", "xent rows/s", "xent RSS MiB",
            "numpy s", "numpy GB/s", "numpy RSS MiB", "xent/numpy throughput", "diagnostics cost"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 2 else "--:" for i in range(len(head))) + "|"]
    for r in rows:
        cells = [f"{r.rows:,} x {r.classes:,}", r.fmt, f"{r.scores_gb:.4g}"]
        for t, with_rows in ((r.xent, True), (r.numpy, False)):
            if t is None:
                cells += ["error"] * (4 if with_rows else 3)
                continue
            cells += [f"{t.median_s:.3f}", f"{r.scores_gb / t.median_s:.3g}"]
            cells += [f"{r.rows / t.median_s:,.0f}"] if with_rows else []
            cells += [f"{t.peak_rss_kib / 1024:,.0f}"]
        ratio = r.numpy.median_s / r.xent.median_s if r.xent and r.numpy else None
        cells.append("n/a" if ratio is None else f"{ratio:.2f}x")
        cells.append("n/a" if r.diagnostics_ratio is None else f"{(r.diagnostics_ratio - 1) * 100:+.0f}%")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine(xent_version: str) -> str:
    import pyarrow

    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"Machine: nproc {usable} (of {os.cpu_count()}), {model}, {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, numpy {np.__version__}, pyarrow {pyarrow.__version__}, "
            f"xent {xent_version}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--reference"]:  # hidden: the numpy baseline, run as a child process
        reference(argv[1:])
        return 0
    import make_data  # bench/ is sys.path[0] when this file is run as a script

    parser = argparse.ArgumentParser(description="Benchmark `xent score` against plain numpy.")
    make_data.add_data_options(parser)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up (default: 3)")
    parser.add_argument("--threads", type=int, default=None, help="pass --threads N to xent (default: xent's own)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--repeat and --threads must be >= 1")

    datasets = make_data.ensure_all(args.shapes, args.formats, args.rows_scale)
    rows, version = [], "unknown"
    for (n, c, fmt), files in datasets.items():
        row = Row(n, c, fmt)
        doc = bench_one(row, files, args.repeat, args.threads)
        version = doc.get("xent_version", version)
        rows.append(row)

    report = "\n".join([
        "# xent benchmark",
        "",
        machine(version),
        "",
        f"Command: `{shlex.join([sys.executable, *sys.argv])}`",
        "",
        f"xent runs `python -m xentcli score FILE [--labels LABELS] --json --quiet"
        f"{f' --threads {args.threads}' if args.threads else ''}`; numpy runs "
        "`bench/run_bench.py --reference FILE [LABELS]` (whole array in memory, float32 passes). "
        f"Times: median of {args.repeat} whole-process runs after one warm-up (files in the page cache). "
        "RSS: peak resident set of the process, from wait4. GB = 1e9 bytes of float32 scores. "
        "Diagnostics cost: xent's time over `xent --no-diagnostics`, the median of pairwise ratios of interleaved runs.",
        "",
        table(rows),
        "",
    ])
    print(report)
    RESULTS.write_text(report)
    print(f"(written to {RESULTS.relative_to(REPO)})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
