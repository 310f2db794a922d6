"""Write the same scores and targets in every layout xent reads, for tests that compare formats."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

LAYOUTS = [
    "parquet-list",
    "parquet-large-list",
    "parquet-fixed-list",
    "parquet-wide",
    "arrow-file",
    "arrow-stream",
    "csv",
    "csv-gz",
    "npy",
    "npz",
    "npz-compressed",
]


def _list_column(values: np.ndarray, kind: str = "list") -> pa.Array:
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])
    if kind == "fixed":
        return fixed
    return fixed.cast(pa.large_list(fixed.type.value_type) if kind == "large" else pa.list_(fixed.type.value_type))


def write_dump(folder: Path, layout: str, scores: np.ndarray, labels: np.ndarray, ids: list[str] | None = None) -> list[str]:
    """Write the dump; return the xent arguments that read it (path and, for NPY, --labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = ids if ids is not None else [f"r{i}" for i in range(len(labels))]
    width = scores.shape[1]
    if layout.startswith("npy"):
        np.save(folder / "logits.npy", scores)
        np.save(folder / "labels.npy", labels)
        return [str(folder / "logits.npy"), "--labels", str(folder / "labels.npy")]
    if layout.startswith("npz"):
        path = folder / "dump.npz"
        (np.savez_compressed if layout == "npz-compressed" else np.savez)(path, logits=scores, labels=labels)
        return [str(path)]
    label_col = _list_column(labels) if labels.ndim == 2 else pa.array(labels)
    if layout in ("parquet-wide", "csv", "csv-gz"):
        columns = {"id": ids, **{f"logit_{c}": pa.array(scores[:, c]) for c in range(width)}}
        if labels.ndim == 2:
            columns.update({f"label_{c}": pa.array(labels[:, c]) for c in range(width)})
        else:
            columns["label"] = label_col
        table = pa.table(columns)
    else:
        kind = {"parquet-large-list": "large", "parquet-fixed-list": "fixed"}.get(layout, "list")
        table = pa.table({"id": ids, "logits": _list_column(scores, kind), "label": label_col})
    if layout.startswith("parquet"):
        path = folder / "dump.parquet"
        pq.write_table(table, path, row_group_size=37)
    elif layout == "arrow-file":
        path = folder / "dump.arrow"
        feather.write_feather(table, path, chunksize=29)
    elif layout == "arrow-stream":
        path = folder / "dump.arrow"
        with ipc.new_stream(path, table.schema) as writer:
            for batch in table.to_batches(max_chunksize=31):
                writer.write_batch(batch)
    elif layout == "csv":
        path = folder / "dump.csv"
        pa_csv.write_csv(table, path)
    else:
        plain = folder / "plain.csv"
        pa_csv.write_csv(table, plain)
        path = folder / "dump.csv.gz"
        path.write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
    return [str(path)]


__all__ = ["LAYOUTS", "write_dump", "zipfile"]


def random_npy(folder: Path, rows: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal float32 logits [rows, classes] and uniform integer labels, saved as z.npy and y.npy in `folder`."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((rows, classes)).astype(np.float32)
    y = rng.integers(0, classes, rows)
    np.save(folder / "z.npy", z)
    np.save(folder / "y.npy", y)
    return z, y
