"""The child processes of `make bench`: xent under a stopwatch, and the scripts it is compared with.

Owns what runs inside each timed process; run_bench.py owns the timing from outside. Each kind is
run as `python bench/references.py KIND ARGS...` in a process of its own, so its wall-clock time
and peak RSS are its alone, and prints one JSON document on stdout:

  xent ARGS...                 what `python -m xentcli ARGS...` runs (xent's own JSON on stdout), with
                               one `bench-timing {"import_s", "run_s"}` line on stderr: the time to
                               import xentcli.cli, and everything after it (read, compute, report)
  torch-npy LOGITS LABELS T    np.load both, torch.from_numpy, torch.set_num_threads(T), then times
                               CALLS calls of cross_entropy(reduction='none') only:
                               {"seconds": median call, "best_s", "loss_mean"}
  read-table PARQUET           pyarrow.parquet.read_table of the whole file: {"rows"}
  read-table-warm PARQUET      the same, timed in process after a warm-up call (all cores, file cached):
                               {"seconds": median of 3 calls, "rows"}
  pandas-torch PARQUET         what users write: pandas.read_parquet, np.stack of the list column,
                               torch cross_entropy(reduction='none') with torch's default threads:
                               {"loss_mean"}
  open-csv CSV                 pyarrow.csv.open_csv (default options) read to the end: {"rows"}
  numpy FILE [LABELS]          the plain in-memory script: the whole array loaded (np.load, or
                               read_table + the flat list values), max-subtract / exp / sum / log
                               in float32, the mean in float64: {"loss_mean"}

Imports happen inside each kind, so a process loads only what its own work needs.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

CALLS = 3  # in-process cross_entropy calls per torch-npy process
TIMING_PREFIX = "bench-timing "


def emit(doc: dict) -> None:
    print(json.dumps(doc), flush=True)


def xent(args: list[str]) -> None:
    t0 = time.perf_counter()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as xentcli.entry.main does, before numpy
    import xentcli.cli

    t1 = time.perf_counter()
    sys.argv = ["xent", *args]
    code: int | str | None = 0
    xentcli.cli.setup_process()  # as xentcli.cli.main does
    try:
        xentcli.cli.app()  # what xentcli.cli.main runs, before it ends the process with os._exit
    except SystemExit as exc:
        code = exc.code
    sys.stdout.flush()
    timing = {"import_s": t1 - t0, "run_s": time.perf_counter() - t1}
    print(TIMING_PREFIX + json.dumps(timing), file=sys.stderr, flush=True)
    os._exit(code if isinstance(code, int) else 1)  # as xent does: no interpreter teardown


def torch_npy(logits: str, labels: str, threads: str) -> None:
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(int(threads))
    x = torch.from_numpy(np.load(logits))
    y = torch.from_numpy(np.load(labels))
    times = []
    for _ in range(CALLS):
        t0 = time.perf_counter()
        loss = F.cross_entropy(x, y, reduction="none")
        times.append(time.perf_counter() - t0)
    emit({"seconds": statistics.median(times), "best_s": min(times), "loss_mean": loss.double().mean().item()})


def read_table(path: str) -> None:
    import pyarrow.parquet as pq

    emit({"rows": pq.read_table(path).num_rows})


def read_table_warm(path: str) -> None:
    import pyarrow.parquet as pq

    pq.read_table(path)  # warm-up: the page cache, pyarrow's thread pool and allocator
    times = []
    for _ in range(3):
        start = time.perf_counter()
        rows = pq.read_table(path).num_rows
        times.append(time.perf_counter() - start)
    emit({"seconds": statistics.median(times), "rows": rows})


def pandas_torch(path: str) -> None:
    import numpy as np
    import pandas as pd
    import torch
    import torch.nn.functional as F

    df = pd.read_parquet(path)
    x = torch.from_numpy(np.stack(df["logits"].to_numpy()))
    y = torch.from_numpy(df["label"].to_numpy())
    loss = F.cross_entropy(x, y, reduction="none")
    emit({"loss_mean": loss.double().mean().item()})


def open_csv(path: str) -> None:
    import pyarrow.csv as pa_csv

    with pa_csv.open_csv(path) as reader:
        emit({"rows": sum(batch.num_rows for batch in reader)})


def plain_numpy(path: str, labels: str | None = None) -> None:
    import numpy as np

    if path.endswith(".parquet"):
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["logits", "label"])
        x = pc.list_flatten(table["logits"]).to_numpy().reshape(table.num_rows, -1)
        y = table["label"].to_numpy()
    else:
        x, y = np.load(path), np.load(labels)
    z = x - x.max(axis=1, keepdims=True)
    loss = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]
    emit({"loss_mean": float(loss.mean(dtype=np.float64))})


def score_twice(logits: str, candidate: str, labels: str) -> None:
    """What `xent diff` replaces: two `xent score` processes, one after the other (their wall time)."""
    import subprocess

    start = time.perf_counter()
    for scores in (logits, candidate):
        subprocess.run(command("xent", "score", scores, "--labels", labels, "--json", "--quiet"), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    emit({"seconds": time.perf_counter() - start})


KINDS: dict[str, Callable[..., None]] = {
    "score-twice": score_twice,
    "numpy": plain_numpy,
    "torch-npy": torch_npy,
    "read-table": read_table,
    "read-table-warm": read_table_warm,
    "pandas-torch": pandas_torch,
    "open-csv": open_csv,
}


def command(kind: str, *args: str) -> list[str]:
    """The argv that runs one kind in a fresh interpreter (this one's)."""
    return [sys.executable, str(Path(__file__).resolve()), kind, *args]


def main(argv: list[str]) -> None:
    if argv[:1] == ["xent"]:
        xent(argv[1:])
    elif argv and argv[0] in KINDS:
        KINDS[argv[0]](*argv[1:])
    else:
        sys.exit(f"usage: references.py {{xent,{','.join(KINDS)}}} ARGS...")


if __name__ == "__main__":
    main(sys.argv[1:])
