"""Benchmark inputs for `make bench`: owns everything under bench/data/ (git-ignored).

For each shape (rows N, classes C) it writes one folder `bench/data/n{N}_c{C}/` holding the same
numbers in up to three formats:

  logits.npy + labels.npy   float32 [N, C] (standard normal x 3) and int64 [N] (uniform in [0, C))
  dump.parquet              list<float> column `logits`, int64 column `label`, ~64 MiB row groups
  pandas.parquet            the same columns as pandas' DataFrame.to_parquet() writes them by default
                            (one row group up to 1,048,576 rows, dictionary encoding tried, snappy)
  dump.csv                  wide columns `logit_0` … `logit_{C-1}` (shortest float32 text), `label`

The data is generated in chunks of ~64 MiB of scores from one numpy generator seeded by the shape,
so both formats hold identical values, every run produces the same files, and generation never
holds more than a few chunks in memory. `manifest.json` in the folder records the shape and the
size of each finished file; a file whose recorded size matches is not written again. Which shapes
`make bench` needs is decided by run_bench.py (its cases); this file's own command line is for
generating any shape by hand:

    python bench/make_data.py                       # 250000x1000 as NPY and Parquet
    python bench/make_data.py --shapes 3000000x10 --formats csv --rows-scale 0.01
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_SHAPES: list[tuple[int, int]] = [(250_000, 1000)]  # 1 GB of float32 scores
FORMATS = ("npy", "parquet", "pandas", "csv", "pair", "groups", "binary", "multilabel", "shards")
SHARDS = 4  # the "shards" format: the Parquet dump's row groups spread over this many files
DEFAULT_FORMATS = ["npy", "parquet"]
SEED = 20240611
CHUNK_BYTES = 64 << 20  # scores per generated chunk, and per Parquet row group
SCALE = 3.0  # logits ~ N(0, SCALE^2): a realistic spread of losses, no overflow concerns


def parse_shape(text: str) -> tuple[int, int]:
    """'250000x1000' or '250_000x1000' -> (250000, 1000)."""
    rows, sep, classes = text.lower().replace("_", "").partition("x")
    if not sep or not rows.isdigit() or not classes.isdigit() or int(rows) < 1 or int(classes) < 1:
        raise argparse.ArgumentTypeError(f"shape must look like ROWSxCLASSES, got {text!r}")
    return int(rows), int(classes)


def parse_shapes(text: str) -> list[tuple[int, int]]:
    return [parse_shape(part) for part in text.split(",") if part.strip()]


def scaled(shape: tuple[int, int], rows_scale: float) -> tuple[int, int]:
    return max(1, round(shape[0] * rows_scale)), shape[1]


def shape_dir(rows: int, classes: int) -> Path:
    return DATA_DIR / f"n{rows}_c{classes}"


def dataset_files(rows: int, classes: int, fmt: str) -> dict[str, Path]:
    """The files of one format, keyed by their role: npy -> logits + labels, parquet -> dump."""
    folder = shape_dir(rows, classes)
    if fmt == "npy":
        return {"logits": folder / "logits.npy", "labels": folder / "labels.npy"}
    if fmt == "groups":  # the npy dump and each row's group (1,000 of them) for --by-file
        return {"logits": folder / "logits.npy", "labels": folder / "labels.npy", "groups": folder / "groups.npy"}
    if fmt == "pair":  # for xent diff: the npy dump and a candidate model's logits on the same rows
        return {"logits": folder / "logits.npy", "labels": folder / "labels.npy", "candidate": folder / "candidate.npy"}
    if fmt in ("parquet", "csv"):
        return {"dump": folder / f"dump.{fmt}"}
    if fmt == "pandas":  # the Parquet dump as pandas writes it by default
        return {"dump": folder / "pandas.parquet"}
    if fmt == "shards":  # the Parquet dump as SHARDS files (shard-0.parquet …), read as one dump through a glob
        return {f"shard{i}": folder / f"shard-{i}.parquet" for i in range(SHARDS)}
    if fmt == "binary":  # a binary sigmoid head: one float32 logit a row, uint8 labels
        return {"logits": folder / "binary_logits.npy", "labels": folder / "binary_labels.npy"}
    if fmt == "multilabel":  # the npy dump, and multi-hot float32 targets of its shape (--head sigmoid)
        return {"logits": folder / "logits.npy", "labels": folder / "labels.npy", "targets": folder / "targets.npy"}
    raise ValueError(f"unknown format {fmt!r}")


def chunk_rows(classes: int) -> int:
    return max(1, CHUNK_BYTES // (4 * classes))


def chunks(rows: int, classes: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(float32 [n, C] logits, int64 [n] labels) chunks covering all rows, the same on every call."""
    rng = np.random.default_rng([SEED, rows, classes])
    step = chunk_rows(classes)
    for start in range(0, rows, step):
        n = min(step, rows - start)
        logits = rng.standard_normal((n, classes), dtype=np.float32)
        logits *= np.float32(SCALE)
        labels = rng.integers(0, classes, size=n, dtype=np.int64)
        yield logits, labels


def write_npy(rows: int, classes: int, files: dict[str, Path]) -> None:
    # Plain sequential writes after the NPY header (no memmap): memory stays at one chunk.
    with open(files["logits"], "wb") as fx, open(files["labels"], "wb") as fy:
        for f, dtype, shape in ((fx, np.float32, (rows, classes)), (fy, np.int64, (rows,))):
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(f, header)
        for x, y in chunks(rows, classes):
            x.tofile(fx)
            y.tofile(fy)


SCHEMA = pa.schema([("logits", pa.list_(pa.float32())), ("label", pa.int64())])


def write_parquet(rows: int, classes: int, files: dict[str, Path]) -> None:
    # Random floats do not dictionary-encode; labels (few distinct values) do.
    with pq.ParquetWriter(files["dump"], SCHEMA, use_dictionary=["label"]) as writer:
        for x, y in chunks(rows, classes):
            flat = pa.array(x.reshape(-1))  # zero-copy view of the chunk
            nested = pa.FixedSizeListArray.from_arrays(flat, classes).cast(SCHEMA.field("logits").type)
            table = pa.Table.from_arrays([nested, pa.array(y)], schema=SCHEMA)
            writer.write_table(table, row_group_size=len(x))  # one chunk = one row group


def write_pandas(rows: int, classes: int, files: dict[str, Path]) -> None:
    """DataFrame.to_parquet() with its defaults, of a frame holding one numpy row of logits a cell
    (how a user's eval loop often collects them). The frame holds every row: this format is for
    dumps of a few GB at most."""
    import pandas as pd

    logits, labels = zip(*chunks(rows, classes))
    frame = pd.DataFrame({"logits": [row for block in logits for row in block], "label": np.concatenate(labels)})
    frame.to_parquet(files["dump"])


def write_shards(rows: int, classes: int, files: dict[str, Path]) -> None:
    """The Parquet dump's rows in SHARDS files of consecutive rows (row groups of at most ~64 MiB)."""
    bounds = [rows * i // SHARDS for i in range(SHARDS + 1)]
    writers = [pq.ParquetWriter(files[f"shard{i}"], SCHEMA, use_dictionary=["label"]) for i in range(SHARDS)]
    try:
        start = 0
        for x, y in chunks(rows, classes):
            for i, writer in enumerate(writers):  # the chunk's rows that fall in shard i
                lo, hi = max(bounds[i], start) - start, min(bounds[i + 1], start + len(x)) - start
                if hi > lo:
                    nested = pa.FixedSizeListArray.from_arrays(pa.array(x[lo:hi].reshape(-1)), classes).cast(SCHEMA.field("logits").type)
                    writer.write_table(pa.Table.from_arrays([nested, pa.array(y[lo:hi])], schema=SCHEMA), row_group_size=hi - lo)
            start += len(x)
    finally:
        for writer in writers:
            writer.close()


def write_csv(rows: int, classes: int, files: dict[str, Path]) -> None:
    # A CSV chunk is ~2.6x its float32 bytes as text: written in slices of ~16 MiB of scores.
    names = [f"logit_{j}" for j in range(classes)]
    schema = pa.schema([(name, pa.float32()) for name in names] + [("label", pa.int64())])
    step = max(1, chunk_rows(classes) // 4)
    with pa_csv.CSVWriter(files["dump"], schema) as writer:
        for x, y in chunks(rows, classes):
            columns = np.ascontiguousarray(x.T)  # one contiguous row per CSV column
            for start in range(0, len(y), step):
                part = slice(start, start + step)
                arrays = [pa.array(column[part]) for column in columns] + [pa.array(y[part])]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))


def write_pair(rows: int, classes: int, files: dict[str, Path]) -> None:
    """The npy dump, and a candidate: the same logits with N(0, 0.3²) noise (its own seed)."""
    write_npy(rows, classes, files)
    rng = np.random.default_rng([SEED, rows, classes, 1])
    with open(files["candidate"], "wb") as f:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False, "shape": (rows, classes)}
        np.lib.format.write_array_header_1_0(f, header)
        for x, _ in chunks(rows, classes):
            (x + rng.normal(0.0, 0.3, x.shape).astype(np.float32)).tofile(f)


def write_groups(rows: int, classes: int, files: dict[str, Path]) -> None:
    """The npy dump, and 1,000 groups spread over the rows (int64)."""
    write_npy(rows, classes, files)
    np.save(files["groups"], (np.arange(rows, dtype=np.int64) * 7919) % 1000)


def write_binary(rows: int, classes: int, files: dict[str, Path]) -> None:
    """[rows] float32 logits (classes = 1) and uint8 0/1 labels drawn from them, in chunks."""
    rng = np.random.default_rng([SEED, rows, classes, 2])
    step = CHUNK_BYTES // 4
    with open(files["logits"], "wb") as fz, open(files["labels"], "wb") as fy:
        for f, dtype in ((fz, np.float32), (fy, np.uint8)):
            np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (rows,)})
        for start in range(0, rows, step):
            z = rng.standard_normal(min(step, rows - start), dtype=np.float32) * np.float32(SCALE)
            z.tofile(fz)
            (rng.random(z.size, dtype=np.float32) < 1 / (1 + np.exp(-z))).astype(np.uint8).tofile(fy)


def write_multilabel(rows: int, classes: int, files: dict[str, Path]) -> None:
    """The npy dump, and multi-hot float32 targets [rows, classes] drawn from σ of its logits."""
    write_npy(rows, classes, files)
    rng = np.random.default_rng([SEED, rows, classes, 3])
    with open(files["targets"], "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False, "shape": (rows, classes)})
        for x, _ in chunks(rows, classes):
            (rng.random(x.shape, dtype=np.float32) < 1 / (1 + np.exp(-x))).astype(np.float32).tofile(f)


WRITERS = {"npy": write_npy, "parquet": write_parquet, "pandas": write_pandas, "csv": write_csv, "pair": write_pair, "groups": write_groups,
           "binary": write_binary, "multilabel": write_multilabel, "shards": write_shards}
CSV_BYTES_PER_SCORE = 10.6  # measured: a standard normal x 3 float32 as shortest text, plus a comma


def estimated_bytes(rows: int, classes: int, fmt: str) -> int:
    """Roughly what `ensure` would write (0 if the files are already complete), for a disk check."""
    folder = shape_dir(rows, classes)
    manifest = read_manifest(folder)
    if manifest.get("shape") == [rows, classes] and manifest.get("seed") == SEED:
        if is_complete(manifest, dataset_files(rows, classes, fmt)):
            return 0
    if fmt == "csv":
        return int(rows * (classes * CSV_BYTES_PER_SCORE + 3))
    return rows * classes * 4 * (2 if fmt in ("pair", "multilabel") else 1) + rows * 8


def read_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def is_complete(manifest: dict, files: dict[str, Path]) -> bool:
    sizes = manifest.get("sizes", {})
    return all(p.exists() and sizes.get(p.name) == p.stat().st_size for p in files.values())


def ensure(rows: int, classes: int, fmt: str, log: bool = True) -> dict[str, Path]:
    """Make sure one shape exists in one format; returns its files. Skips finished files."""
    folder = shape_dir(rows, classes)
    folder.mkdir(parents=True, exist_ok=True)
    files = dataset_files(rows, classes, fmt)
    manifest = read_manifest(folder)
    if manifest.get("shape") == [rows, classes] and manifest.get("seed") == SEED and is_complete(manifest, files):
        return files
    if manifest.get("shape") != [rows, classes] or manifest.get("seed") != SEED:
        manifest = {"shape": [rows, classes], "seed": SEED, "scores_bytes": rows * classes * 4, "sizes": {}}
    for path in files.values():
        manifest["sizes"].pop(path.name, None)  # a half-written file is never trusted
    t0 = time.perf_counter()
    if log:
        print(f"make_data: writing {fmt} {rows}x{classes} -> {folder}", file=sys.stderr, flush=True)
    WRITERS[fmt](rows, classes, files)
    for path in files.values():
        manifest["sizes"][path.name] = path.stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if log:
        mb = sum(p.stat().st_size for p in files.values()) / 1e6
        print(f"make_data:   {mb:,.1f} MB in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return files


def ensure_all(
    shapes: list[tuple[int, int]], formats: list[str], rows_scale: float = 1.0
) -> dict[tuple[int, int, str], dict[str, Path]]:
    """All (shape, format) datasets after --rows-scale, keyed by (rows, classes, format)."""
    out = {}
    for shape in shapes:
        rows, classes = scaled(shape, rows_scale)
        for fmt in formats:
            out[rows, classes, fmt] = ensure(rows, classes, fmt)
    return out


def parse_formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise argparse.ArgumentTypeError(f"formats must be among {','.join(FORMATS)}, got {text!r}")
    return formats


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the benchmark dumps under bench/data/.")
    default = ",".join(f"{n}x{c}" for n, c in DEFAULT_SHAPES)
    parser.add_argument("--shapes", type=parse_shapes, default=DEFAULT_SHAPES,
                        help=f"comma-separated ROWSxCLASSES (default: {default})")
    parser.add_argument("--formats", type=parse_formats, default=DEFAULT_FORMATS,
                        help=f"comma-separated, among {','.join(FORMATS)} (default: {','.join(DEFAULT_FORMATS)})")
    parser.add_argument("--rows-scale", type=positive_float, default=1.0,
                        help="multiply every shape's rows by this (default: 1)")
    args = parser.parse_args(argv)
    for (rows, classes, fmt), files in ensure_all(args.shapes, args.formats, args.rows_scale).items():
        print(f"{fmt:8} {rows}x{classes}: " + " ".join(str(p) for p in files.values()))


if __name__ == "__main__":
    main()
