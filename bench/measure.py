"""Timing whole processes for `make bench`: wall-clock time, peak RSS, and interleaved rounds.

Owns how a command is run and measured; what is run lives in references.py, what it means in
run_bench.py. A group of commands is measured in rounds: one warm-up of each (which also puts the
files in the page cache), then `repeat` rounds running each command once in turn (A B C A B C …),
so a drift of the shared machine's speed hits every command of a round alike and ratios are taken
round by round.

Every command is started by a tiny launcher (`python -S -c LAUNCHER`), which times it and reads its
peak RSS from wait4. Started straight from this process, a child's peak RSS would never read below
this process's own peak: Linux carries the spawning process's high-water mark into the child at
exec (vfork and posix_spawn share its memory until then), and this process has imported numpy and
pyarrow and may have just generated the dumps. The launcher's own ~10 MB is the floor instead.
"""

from __future__ import annotations

import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# argv: STATS_FILE CMD...; runs CMD (inheriting stdout and stderr), writes "seconds peak_rss_kib exit_code".
LAUNCHER = """
import os, sys, time
t0 = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - t0
with open(sys.argv[1], "w") as f:
    f.write(f"{seconds!r} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


class BenchError(Exception):
    pass


@dataclass
class Run:
    seconds: float  # wall clock of the whole process
    rss_kib: int  # peak resident set of this process alone
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)


@dataclass
class Series:
    """One command's warm-up and timed runs; `error` is set when a run failed (later runs dropped)."""

    warmup: Run | None = None
    runs: list[Run] = field(default_factory=list)
    error: str | None = None

    def median(self, seconds: Callable[[Run], float] = lambda run: run.seconds) -> float | None:
        return statistics.median(map(seconds, self.runs)) if self.runs and not self.error else None

    @property
    def peak_rss_kib(self) -> int | None:
        runs = [r for r in (self.warmup, *self.runs) if r is not None]
        return max(r.rss_kib for r in runs) if runs and not self.error else None


def run_once(cmd: list[str]) -> Run:
    """Run `cmd` to its end through the launcher; raise BenchError (with its stderr's tail) if it fails."""
    with tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "stats"
        proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, str(stats), *cmd],
                                stdout=subprocess.PIPE, stderr=err, cwd=REPO)
        out, _ = proc.communicate()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
        fields = stats.read_text().split() if stats.exists() else []
    if proc.returncode != 0 or len(fields) != 3 or fields[2] != "0":
        tail = stderr.strip().splitlines()[-5:]
        code = fields[2] if len(fields) == 3 else f"{proc.returncode} (launcher)"
        raise BenchError(f"exit {code}: {shlex.join(cmd)}\n    " + "\n    ".join(tail))
    return Run(float(fields[0]), int(fields[1]), out.decode(), stderr)


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _step(name: str, cmd: list[str], series: Series, warmup: bool) -> Run | None:
    if series.error:
        return None
    try:
        run = run_once(cmd)
    except BenchError as exc:
        series.error = str(exc)
        log(f"{name} failed: {exc}")
        return None
    if warmup:
        series.warmup = run
    else:
        series.runs.append(run)
    return run


def run_rounds(commands: dict[str, list[str]], repeat: int, label: str) -> dict[str, Series]:
    """A warm-up of each command, then `repeat` rounds of each in turn; one Series per command."""
    series = {name: Series() for name in commands}
    for round_no in range(repeat + 1):
        done = []
        for name, cmd in commands.items():
            run = _step(name, cmd, series[name], warmup=round_no == 0)
            if run is not None:
                done.append(f"{name} {run.seconds:.2f} s")
        what = "warm-up" if round_no == 0 else f"round {round_no}/{repeat}"
        log(f"{label}: {what}: " + ", ".join(done))
    return series


def pairwise(a: Series, b: Series, value: Callable[[Run, Run], float]) -> float | None:
    """The median over rounds of value(a's run, b's run) — both runs from the same round."""
    if a.error or b.error or not a.runs or len(a.runs) != len(b.runs):
        return None
    return statistics.median(value(x, y) for x, y in zip(a.runs, b.runs))
