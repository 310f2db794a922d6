"""`make bench`: whole `xent score FILE --json --quiet` processes against what users would run instead.

Owns the cases (which dump, compared with what), the checks and the report: two Markdown tables,
printed and written to bench/results.md. The dumps come from make_data.py (bench/data/), the
processes that are timed from references.py, the timing itself from measure.py.

Cases (`--cases`, default all of them):

  npy1000   NPY float32 500,000 x 1000 (2 GB) vs torch cross_entropy, 2 threads, in memory
  npy10     NPY float32 10,000,000 x 10 vs torch cross_entropy, 1 thread, in memory
  parquet   Parquet list<float32> 250,000 x 1000, as written with ~64 MiB row groups and as pandas writes it by default
            (to_parquet: one row group), vs pyarrow.parquet.read_table (a whole process, and in process
            warm: the decode ceiling), and the first vs
            pandas.read_parquet + np.stack + torch cross_entropy (both whole processes)
  csv       wide CSV, 3,000,000 x 10 and 300,000 x 100 (~320 MB each) vs pyarrow.csv.open_csv
  shapes    NPY and Parquet, 1,000,000 x 10, 250,000 x 1000 and 8,000 x 32,000, vs a plain numpy
            script holding the whole array in memory (both whole processes)
  diff      xent diff of two NPY float32 1,000,000 x 10 dumps (row order, 1,000 bootstrap replicates)
            vs the two xent score processes it replaces
  extras    NPY float32 4,000,000 x 10: xent score against itself with --calibration, --temperature-scan, with
            --by-file (1,000 groups) --calibration, with --per-class --confusions 10, and with --worst 100000
            (the ratio is the plain run's time over the variant's)
  sigmoid   a binary head, NPY float32 100,000,000 x 1 with uint8 labels (xent alone: GB/s of scores), and a
            multi-label head, NPY float32 500,000 x 100 with multi-hot targets (--head sigmoid) vs xent
            scoring the same logits as a softmax over integer labels
  dask      the Parquet dump of the parquet case as 4 shards (1 GB): xent --engine dask on an already-started
            LocalCluster of 2 worker processes against the same local run (the cluster's start-up time and
            its workers' peak RSS are reported below the tables; the ratio is the local throughput over Dask's)
  scaling   xent alone on the npy1000 and parquet dumps with 2x and 4x the rows (2x only when
            the disk is short): does the peak RSS grow with the rows?

Every case runs xent and xent --no-diagnostics (the diagnostics' cost) and its references in
interleaved rounds (measure.py): each ratio is the median of the ratios within a round. xent's time
is its whole process; torch's is the median of 3 in-process cross_entropy calls (file loading
excluded); every other reference is its whole process.

    .venv/bin/python bench/run_bench.py                      # everything, ~15 min on 2 cores
    .venv/bin/python bench/run_bench.py --cases npy10,csv --repeat 5
    .venv/bin/python bench/run_bench.py --rows-scale 0.05    # a quick end-to-end check
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import platform
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cluster
import make_data  # bench/ is sys.path[0] when this file is run as a script
import references
from measure import REPO, Run, Series, log, pairwise, run_rounds

RESULTS = Path(__file__).resolve().parent / "results.md"
REL_TOL = 1e-6  # xent's loss_mean against torch's
DISK_MARGIN = 2 << 30  # bytes left free on the disk after generating the dumps
HAS_TORCH = importlib.util.find_spec("torch") is not None
NO_TORCH = "torch not available"


@dataclass(frozen=True)
class Reference:
    name: str  # its command's name within a round
    label: str  # as shown in the table
    kind: str  # a kind of references.py
    in_process: bool = False  # timed by the child itself ("seconds"), not by its wall clock
    needs_torch: bool = False
    threads: int = 0  # torch threads, for torch-npy
    flags: tuple[str, ...] = ()  # for kind "xent": the options this variant adds to a plain score

    def command(self, files: dict[str, Path]) -> list[str]:
        if self.kind == "xent":  # xent itself with more options: what the options cost
            output = Path(files.get("logits") or files["dump"]).parent / "xent-rows.parquet"  # -o: beside the dump
            flags = [f.replace("{groups}", str(files.get("groups"))).replace("{scheduler}", str(files.get("scheduler")))
                     .replace("{output}", str(output)) for f in self.flags]
            return xent_command(files, None) + flags
        if self.kind == "softmax":  # xent score of the same logits as a softmax over integer labels
            return references.command("xent", "score", str(files["logits"]), "--labels", str(files["labels"]), "--json", "--quiet")
        if self.kind == "score-twice":
            return references.command(self.kind, str(files["logits"]), str(files["candidate"]), str(files["labels"]))
        if self.kind == "torch-npy":
            return references.command(self.kind, str(files["logits"]), str(files["labels"]), str(self.threads))
        if "dump" not in files:  # NPY: scores and labels in two files
            return references.command(self.kind, str(files["logits"]), str(files["labels"]))
        return references.command(self.kind, str(files["dump"]))

    def seconds(self, run: Run) -> float:
        return float(run.json()["seconds"]) if self.in_process else run.seconds


def torch_reference(threads: int) -> Reference:
    label = f"torch cross_entropy, {threads} thread{'s' if threads > 1 else ''}, in memory (load excluded)"
    return Reference("torch", label, "torch-npy", in_process=True, needs_torch=True, threads=threads)


READ_TABLE = Reference("read_table", "pyarrow.parquet.read_table (process)", "read-table")
READ_TABLE_WARM = Reference("read_table_warm", "pyarrow.parquet.read_table in process, warm (median of 3 calls)", "read-table-warm",
                            in_process=True)
PANDAS_TORCH = Reference("pandas_torch", "pandas.read_parquet + np.stack + torch cross_entropy (process)",
                         "pandas-torch", needs_torch=True)
OPEN_CSV = Reference("open_csv", "pyarrow.csv.open_csv read to the end (process)", "open-csv")
NUMPY = Reference("numpy", "plain numpy, whole array in memory (process)", "numpy")
CALIBRATION = Reference("calibration", "xent score --calibration (process)", "xent", flags=("--calibration",))
TEMPERATURE = Reference("temperature", "xent score --temperature-scan (process)", "xent", flags=("--temperature-scan",))
GROUPS = Reference("groups", "xent score --by-file (1,000 groups) --calibration (process)", "xent",
                   flags=("--by-file", "{groups}", "--calibration"))
ERROR_BARS = Reference("per_class", "xent score --per-class --confusions 10 (process)", "xent",
                       flags=("--per-class", "--confusions", "10"))
WORST = Reference("worst", "xent score --worst 100000 (process)", "xent", flags=("--worst", "100000"))
DASK = Reference("dask", "xent score --engine dask, 2 workers on a started cluster (process)", "xent",
                 flags=("--engine", "dask", "--scheduler", "{scheduler}"))
OUTPUT = Reference("output", "xent score -o rows.parquet (process)", "xent", flags=("-o", "{output}", "--force"))
LIKE_TORCH = Reference("like_torch", "xent score --like torch (process)", "xent", flags=("--like", "torch"))
COMPARE = Reference("compare", "xent score --compare-frameworks (process)", "xent", flags=("--compare-frameworks",))
SOFTMAX_SAME = Reference("softmax", "xent score of the same logits as a softmax (process)", "softmax")
SCORE_TWICE = Reference("score_twice", "two xent score processes, one per model (what diff replaces)", "score-twice", in_process=True)


@dataclass(frozen=True)
class Case:
    name: str  # the --cases name selecting it
    rows: int
    classes: int
    fmt: str
    references: tuple[Reference, ...] = ()
    factor: int = 1  # rows relative to the case it scales

    @property
    def key(self) -> tuple[int, int, str]:
        return self.rows, self.classes, self.fmt

    @property
    def scores_gb(self) -> float:
        return self.rows * self.classes * 4 / 1e9


SCALING = (2, 4)
CASES: dict[str, list[Case]] = {
    "npy1000": [Case("npy1000", 500_000, 1000, "npy", (torch_reference(2), OUTPUT, LIKE_TORCH, COMPARE))],
    "npy10": [Case("npy10", 10_000_000, 10, "npy", (torch_reference(1), OUTPUT, LIKE_TORCH, COMPARE))],
    "parquet": [Case("parquet", 250_000, 1000, "parquet", (READ_TABLE, READ_TABLE_WARM, PANDAS_TORCH)),
                Case("parquet", 250_000, 1000, "pandas", (READ_TABLE, READ_TABLE_WARM))],
    "csv": [Case("csv", 3_000_000, 10, "csv", (OPEN_CSV,)), Case("csv", 300_000, 100, "csv", (OPEN_CSV,))],
    "shapes": [Case("shapes", rows, classes, fmt, (NUMPY,))
               for rows, classes in ((1_000_000, 10), (250_000, 1000), (8_000, 32_000)) for fmt in ("npy", "parquet")],
    "diff": [Case("diff", 1_000_000, 10, "pair", (SCORE_TWICE,))],
    "extras": [Case("extras", 4_000_000, 10, "groups", (CALIBRATION, TEMPERATURE, GROUPS, ERROR_BARS, WORST))],
    "sigmoid": [Case("sigmoid", 100_000_000, 1, "binary"), Case("sigmoid", 500_000, 100, "multilabel", (SOFTMAX_SAME,))],
    "dask": [Case("dask", 250_000, 1000, "shards", (DASK,))],
    "scaling": [Case("scaling", rows * k, 1000, fmt, factor=k)
                for fmt, rows in (("npy", 500_000), ("parquet", 250_000)) for k in (1, *SCALING)],
}


def select_cases(names: list[str], rows_scale: float) -> list[Case]:
    """The chosen cases with --rows-scale applied; a dump measured by two cases is measured once."""
    chosen: dict[tuple[int, int, str], Case] = {}
    for case in sorted((c for n in names for c in CASES[n]), key=lambda c: c.name == "scaling"):
        rows, _ = make_data.scaled((case.rows, case.classes), rows_scale)
        chosen.setdefault((rows, case.classes, case.fmt), replace(case, rows=rows))
    return list(chosen.values())


def fit_disk(cases: list[Case]) -> tuple[list[Case], str]:
    """Drop the 4x scaling dumps if writing every missing dump would leave under DISK_MARGIN free."""
    make_data.DATA_DIR.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(make_data.DATA_DIR).free

    def needed(cs: list[Case]) -> int:
        return sum(make_data.estimated_bytes(c.rows, c.classes, c.fmt) for c in cs)

    if needed(cases) + DISK_MARGIN <= free:
        return cases, ""
    kept = [c for c in cases if c.factor < max(SCALING)]
    note = (f"Disk short: the dumps need {needed(cases) / 1e9:.1f} GB more and {free / 1e9:.1f} GB is free, "
            f"so the {max(SCALING)}x scaling dumps were skipped.")
    if needed(kept) + DISK_MARGIN > free:
        note += f" Even without them {needed(kept) / 1e9:.1f} GB is needed: generation may fail."
    log(note)
    return kept, note


@dataclass
class Result:
    case: Case
    files: dict[str, Path]
    series: dict[str, Series]  # "xent", "no_diag", then one per reference run
    checks: list[str] = field(default_factory=list)  # what disagreed
    compared: list[str] = field(default_factory=list)  # the references xent's loss_mean was checked against

    @property
    def file_gb(self) -> float:
        return sum(p.stat().st_size for p in self.files.values() if isinstance(p, Path)) / 1e9

    @property
    def label(self) -> str:
        return f"{self.case.fmt} {self.case.rows}x{self.case.classes}"


def xent_command(files: dict[str, Path], threads: int | None) -> list[str]:
    threads_option = ["--threads", str(threads)] if threads else []
    if "candidate" in files:  # the diff case: both models, paired by row order, with the default bootstrap
        return references.command("xent", "diff", str(files["logits"]), str(files["candidate"]), "--labels",
                                  str(files["labels"]), "--json", "--quiet", *threads_option)
    if "targets" in files:  # a multi-label sigmoid head
        return references.command("xent", "score", str(files["logits"]), "--labels", str(files["targets"]), "--head", "sigmoid",
                                  "--json", "--quiet", *threads_option)
    if "shard0" in files:  # sharded Parquet: one glob
        paths = [str(files["shard0"].parent / "shard-*.parquet")]
    else:
        paths = [str(files["dump"])] if "dump" in files else [str(files["logits"]), "--labels", str(files["labels"])]
    return references.command("xent", "score", *paths, "--json", "--quiet", *threads_option)


def in_process_seconds(run: Run) -> float:
    """xent's own time after its imports, from the `bench-timing` line of references.py."""
    for line in run.stderr.splitlines():
        if line.startswith(references.TIMING_PREFIX):
            return float(json.loads(line[len(references.TIMING_PREFIX):])["run_s"])
    raise ValueError("no timing line")


def bench_case(case: Case, files: dict[str, Path], repeat: int, threads: int | None) -> Result:
    xent = xent_command(files, threads)
    commands = {"xent": xent, "no_diag": [*xent, "--no-diagnostics"]}
    for ref in case.references:
        if HAS_TORCH or not ref.needs_torch:
            commands[ref.name] = ref.command(files)
    result = Result(case, files, run_rounds(commands, repeat, f"{case.name} {case.fmt} {case.rows}x{case.classes}"))
    check(result)
    return result


def check(result: Result) -> None:
    """xent's row count, and its loss_mean against every reference that computes one."""
    xent = result.series["xent"]
    if not xent.runs or xent.error:
        return
    doc = xent.runs[-1].json()
    if "pairing" in doc:  # diff: every row paired
        if doc["pairing"]["usable_pairs"] != result.case.rows:
            result.checks.append(f"{result.label}: xent diff paired {doc['pairing']['usable_pairs']} rows, expected {result.case.rows}")
        return
    summary = doc["summary"]
    if summary["rows"] != result.case.rows:
        result.checks.append(f"{result.label}: xent counted {summary['rows']} rows, expected {result.case.rows}")
    for name, series in result.series.items():
        if name in ("xent", "no_diag") or not series.runs or series.error:
            continue
        doc = series.runs[-1].json()
        if "loss_mean" in doc:
            result.compared.append(f"{name} on {result.label}")
            rel = abs(summary["loss_mean"] - doc["loss_mean"]) / max(abs(doc["loss_mean"]), 1e-300)
            if not rel <= REL_TOL:
                result.checks.append(f"{result.label}: loss_mean {summary['loss_mean']!r} (xent) vs "
                                     f"{doc['loss_mean']!r} ({name}), relative difference {rel:.1e}")
        if "rows" in doc and doc["rows"] != result.case.rows:
            result.checks.append(f"{result.label}: {name} read {doc['rows']} rows, expected {result.case.rows}")
    for message in result.checks:
        log(f"WARNING: {message}")


def num(value: float | None, fmt: str, missing: str = "error") -> str:
    return missing if value is None else format(value, fmt)


def mib(kib: int | None) -> str:
    return num(None if kib is None else kib / 1024, ",.0f")


def markdown(head: list[str], rows: list[list[str]], left: int) -> str:
    """A Markdown table, its first `left` columns left-aligned and the others right-aligned."""
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < left else "--:" for i in range(len(head))) + "|"]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows])


def shape(case: Case) -> str:
    return f"{case.rows:,} x {case.classes:,}"


def percent(ratio: float | None) -> str:
    """1.07 -> '+7%'."""
    return "error" if ratio is None else f"{(ratio - 1) * 100:+.0f}%"


def throughput(gb: float, seconds: float | None) -> str:
    return num(None if not seconds else gb / seconds, ".3g")


def comparison_table(results: list[Result]) -> str:
    head = ["case", "input", "rows x classes", "scores GB", "xent s", "xent GB/s", "xent in-process s",
            "reference", "reference s", "reference GB/s", "xent/reference throughput", "reference peak RSS MiB"]
    rows = []
    for r in results:
        xent = r.series["xent"]
        xent_s = xent.median()
        inproc = xent.median(in_process_seconds) if xent.runs else None
        left = [r.case.name, {"parquet": "Parquet", "pandas": "Parquet (pandas)"}.get(r.case.fmt, r.case.fmt.upper()), shape(r.case),
                f"{r.case.scores_gb:.4g}", num(xent_s, ".3f"), throughput(r.case.scores_gb, xent_s), num(inproc, ".3f")]
        for ref in r.case.references:
            series = r.series.get(ref.name)
            if series is None:
                rows.append(left + [ref.label] + [NO_TORCH] * 4)
                continue
            ref_s = series.median(ref.seconds)
            ratio = pairwise(xent, series, lambda a, b, ref=ref: ref.seconds(b) / a.seconds)
            rows.append(left + [ref.label, num(ref_s, ".3f"), throughput(r.case.scores_gb, ref_s),
                                num(ratio, ".2f") + ("x" if ratio is not None else ""), mib(series.peak_rss_kib)])
    return markdown(head, rows, left=3)


FORMAT_ORDER = {"npy": 0, "parquet": 1, "pandas": 1.5, "csv": 2, "pair": 9, "groups": 10, "binary": 11, "multilabel": 12, "shards": 13}


def xent_table(results: list[Result]) -> str:
    head = ["input", "rows x classes", "file GB", "scores GB", "xent s", "xent GB/s", "xent peak RSS MiB",
            "peak RSS of each run MiB (warm-up first)", "--no-diagnostics s", "diagnostics cost"]
    rows = []
    for r in sorted(results, key=lambda r: (FORMAT_ORDER[r.case.fmt], r.case.classes, r.case.rows)):
        xent, plain = r.series["xent"], r.series["no_diag"]
        each = " / ".join(f"{run.rss_kib / 1024:,.0f}" for run in (xent.warmup, *xent.runs) if run is not None)
        cost = pairwise(xent, plain, lambda a, b: a.seconds / b.seconds)
        rows.append([r.case.fmt, shape(r.case), f"{r.file_gb:.3g}", f"{r.case.scores_gb:.4g}", num(xent.median(), ".3f"),
                     throughput(r.case.scores_gb, xent.median()), mib(xent.peak_rss_kib), each or "error",
                     num(plain.median(), ".3f"), percent(cost)])
    return markdown(head, rows, left=2)


def versions() -> str:
    import numpy
    import pandas
    import pyarrow

    torch = NO_TORCH
    if HAS_TORCH:
        import torch as torch_module

        torch = f"torch {torch_module.__version__}"
    return f"Python {platform.python_version()}, numpy {numpy.__version__}, pyarrow {pyarrow.__version__}, " \
           f"pandas {pandas.__version__}, {torch}"


def machine() -> str:
    model = "unknown CPU"
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"nproc {usable} (of {os.cpu_count()}), {model}, {platform.system()} {platform.release()}"


def report(results: list[Result], args: argparse.Namespace, notes: list[str]) -> str:
    xent_version = next((r.series["xent"].runs[-1].json().get("xent_version") for r in results
                         if r.series["xent"].runs and not r.series["xent"].error), "unknown")
    checks = [message for r in results for message in r.checks]
    compared = [item for r in results for item in r.compared]
    agreed = (f"xent's loss_mean agrees to {REL_TOL:g} relative with " + ", ".join(compared)) if compared \
        else "no reference computed a loss_mean to compare with"
    threads = f" --threads {args.threads}" if args.threads else " (its default threads: the number of cores)"
    return "\n".join([
        "# xent benchmark",
        "",
        f"Machine: {machine()}; {versions()}; xent {xent_version}",
        "",
        f"Command: `{shlex.join([sys.executable, *sys.argv])}`",
        "",
        f"xent runs `python -m xentcli score FILE [--labels LABELS] --json --quiet`{threads}, through "
        "`bench/references.py xent`, which only adds a clock after the imports (xent in-process s: reading, "
        f"computing and reporting). Every case runs xent, xent `--no-diagnostics` and its references in turn, "
        f"one warm-up round (files in the page cache) then {args.repeat} timed rounds; times are medians, "
        "ratios the median of the ratios within each round. xent's time is its whole process (interpreter "
        "start-up and imports included), like every reference's except torch's, which is the median of "
        f"{references.CALLS} in-process cross_entropy(reduction='none') calls on tensors already in memory. "
        "GB = 1e9 bytes of float32 scores (rows x classes x 4), whatever the file's format. Peak RSS: "
        "of the process alone, from wait4. Diagnostics cost: xent's time over xent `--no-diagnostics`.",
        "",
        "## xent against the references",
        "",
        comparison_table([r for r in results if r.case.references]) if any(r.case.references for r in results)
        else "(no case with references selected)",
        "",
        "## xent on every dump: peak memory against rows, and the diagnostics' cost",
        "",
        xent_table(results),
        "",
        *[note + "\n" for note in notes],
        f"Checks FAILED: {'; '.join(checks)}" if checks else
        f"Checks: xent counted the expected rows in every dump; {agreed}.",
        "",
    ])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Benchmark `xent score` against torch, pyarrow and pandas.")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, among {','.join(CASES)} (default: all)")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds after one warm-up (default: 3)")
    parser.add_argument("--threads", type=int, default=None, help="pass --threads N to xent (default: xent's own)")
    parser.add_argument("--rows-scale", type=make_data.positive_float, default=1.0,
                        help="multiply every dump's rows by this, e.g. 0.05 for a quick check (default: 1)")
    parser.add_argument("--data-only", action="store_true", help="only generate the dumps")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    if not names or any(n not in CASES for n in names):
        parser.error(f"--cases must be among {','.join(CASES)}, got {args.cases!r}")
    if args.repeat < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--repeat and --threads must be >= 1")

    t0 = time.perf_counter()
    cases, disk_note = fit_disk(select_cases(names, args.rows_scale))
    files = {case.key: make_data.ensure(case.rows, case.classes, case.fmt) for case in cases}
    generated = time.perf_counter() - t0
    if args.data_only:
        return 0
    # Bytecode as an installed package has it: where PYTHONDONTWRITEBYTECODE is set, every timed
    # run would otherwise compile xent's modules again (~0.08 s).
    compileall.compile_dir(REPO / "xentcli", quiet=1)
    results, cluster_notes = [], []
    for case in cases:
        if case.name == "dask":
            with cluster.started(2) as (address, note):
                results.append(bench_case(case, {**files[case.key], "scheduler": address}, args.repeat, args.threads))  # type: ignore[dict-item]
                cluster_notes.append(note())
        else:
            results.append(bench_case(case, files[case.key], args.repeat, args.threads))
    total = time.perf_counter() - t0
    on_disk = sum(p.stat().st_size for p in make_data.DATA_DIR.rglob("*") if p.is_file())
    used = sum(p.stat().st_size for f in files.values() for p in f.values())
    notes = [note for note in (disk_note, "" if HAS_TORCH else "torch is not installed: its cells say so.", *cluster_notes) if note]
    notes.append(f"Bench wall time: {total / 60:.1f} min ({generated:.0f} s of it generating dumps); "
                 f"this run's dumps take {used / 1e9:.1f} GB of the {on_disk / 1e9:.1f} GB in bench/data/.")
    text = report(results, args, notes)
    print(text)
    RESULTS.write_text(text)
    print(f"(written to {RESULTS.relative_to(REPO)})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
