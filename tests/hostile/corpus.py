"""The hostile corpus: inputs that once gave a wrong number, a traceback or injected output, and
variants of each (other names, other positions of the bad cell, other escape sequences).

Each case writes its files into a folder and returns the xent arguments and the outcome it must
have: the right number (`loss_mean`, from a float64 formula here), a flagged code that fails
`xent check` (`codes`, exit 1), or a refusal (exit 2, one line on stderr holding `says`).
Run as a script to write the corpus to a folder: python tests/hostile/corpus.py OUT_DIR
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.feather as feather
import pyarrow.parquet as pq


@dataclass
class Case:
    args: list[str]
    exit: int
    says: str | None = None  # in the one stderr line of a refusal
    loss_mean: float | None = None  # the true mean, from a float64 formula
    codes: set[str] = field(default_factory=set)  # diagnostics that must be there
    command: str = "check"


CASES: dict[str, Callable[[Path], Case]] = {}


def case(function: Callable[[Path], Case]) -> Callable[[Path], Case]:
    CASES[function.__name__] = function
    return function


def loss64(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    return lse - z[np.arange(len(y)), y]


RNG = np.random.default_rng(12)
Z = (RNG.standard_normal((40, 3)) * 2).astype(np.float32)
Y = RNG.integers(0, 3, 40)
NAMES = ("cat", "dog", "bird")


def _named(folder: Path, order: tuple[str, ...], name: str = "d.parquet", z: np.ndarray = Z, y: np.ndarray = Y) -> str:
    """Class-named score columns score_<class> in `order` (the scores of class NAMES[i] are z[:, i])."""
    columns = {f"score_{c}": z[:, NAMES.index(c)] for c in order}
    pq.write_table(pa.table({**columns, "label": [NAMES[i] for i in y]}), folder / name)
    return str(folder / name)


# ---- 1. --classes against class-named columns ------------------------------------------------

@case
def classes_reordered(folder: Path) -> Case:
    path = _named(folder, NAMES)
    return Case([path, "--classes", "bird,cat,dog"], 0, says="the columns' order is used", loss_mean=loss64(Z, Y).mean())


@case
def classes_reordered_file(folder: Path) -> Case:
    path = _named(folder, NAMES)
    (folder / "classes.txt").write_text("dog\nbird\ncat\n")
    return Case([path, "--classes", str(folder / "classes.txt")], 0, says="the columns' order is used", loss_mean=loss64(Z, Y).mean())


@case
def classes_other_names(folder: Path) -> Case:
    return Case([_named(folder, NAMES), "--classes", "bird,cat,fish"], 2, says="'fish'")


# ---- 2. shards in another class order ---------------------------------------------------------

@case
def shards_reordered(folder: Path) -> Case:
    _named(folder, NAMES, "a.parquet", Z[:20], Y[:20])
    _named(folder, ("bird", "cat", "dog"), "b.parquet", Z[20:], Y[20:])
    return Case([str(folder)], 0, says="read in its order", loss_mean=loss64(Z, Y).mean())


@case
def shards_reordered_index_labels(folder: Path) -> Case:
    """Labels as class positions count each shard's own columns: reading b in a's order would move them."""
    for name, order, rows in (("a.parquet", NAMES, slice(0, 20)), ("b.parquet", ("bird", "cat", "dog"), slice(20, 40))):
        columns = {f"score_{c}": Z[rows, NAMES.index(c)] for c in order}
        pq.write_table(pa.table({**columns, "label": [order.index(NAMES[i]) for i in Y[rows]]}), folder / name)
    return Case([str(folder)], 2, says="class positions")


@case
def shards_reordered_target_rows(folder: Path) -> Case:
    for name, order in (("a.parquet", NAMES), ("b.parquet", ("dog", "bird", "cat"))):
        columns = {f"score_{c}": Z[:20, NAMES.index(c)] for c in order}
        pq.write_table(pa.table({**columns, "target": [np.eye(3)[i].tolist() for i in Y[:20]]}), folder / name)
    return Case([str(folder)], 2, says="class positions")


@case
def shards_other_classes(folder: Path) -> Case:
    _named(folder, NAMES, "a.parquet", Z[:20], Y[:20])
    pq.write_table(pa.table({"score_cat": Z[20:, 0], "score_dog": Z[20:, 1], "score_fish": Z[20:, 2], "label": ["cat"] * 20}), folder / "b.parquet")
    return Case([str(folder)], 2, says="'fish'")


@case
def shards_other_id_type(folder: Path) -> Case:
    for name, ids in (("a.parquet", list(range(20))), ("b.parquet", [str(i) for i in range(20)])):
        pq.write_table(pa.table({"logits": list(Z[:20]), "label": Y[:20], "id": ids}), folder / name)
    return Case([str(folder), "--id-col", "id"], 2, says="id type")


# ---- 3. a cell that is not a number -------------------------------------------------------------

def _csv(folder: Path, rows: int, bad_row: int, bad_column: int, text: str) -> str:
    z = np.round(RNG.standard_normal((rows, 4)), 3)
    lines = ["id,logit_0,logit_1,logit_2,logit_3,label"]
    for i in range(rows):
        cells = [f"{v:.3f}" for v in z[i]] + [str(i % 4)]
        if i == bad_row:
            cells[bad_column] = text
        lines.append(",".join([f"r{i}", *cells]))
    (folder / "d.csv").write_text("\n".join(lines) + "\n")
    return str(folder / "d.csv")


@case
def csv_bad_cell_first_block(folder: Path) -> Case:
    return Case([_csv(folder, 50, 3, 2, "#VALUE!")], 2, says="column 'logit_2' row 3: '#VALUE!'")


@case
def csv_bad_cell_late_block(folder: Path) -> Case:
    return Case([_csv(folder, 120_000, 110_000, 0, "#DIV/0!")], 2, says="column 'logit_0' row 110000: '#DIV/0!'")


@case
def csv_bad_label_cell(folder: Path) -> Case:
    return Case([_csv(folder, 120_000, 100_001, 4, "two")], 2, says="column 'label' row 100001: 'two'")


@case
def csv_empty_cell_is_nan(folder: Path) -> Case:
    return Case([_csv(folder, 50, 7, 1, "")], 1, codes={"XE101"})


@case
def parquet_wide_member_not_number(folder: Path) -> Case:
    columns = {f"logit_{c}": Z[:, c] for c in range(3)}
    columns["logit_2"] = [str(v) for v in Z[:, 2]]
    pq.write_table(pa.table({**columns, "label": Y}), folder / "d.parquet")
    return Case([str(folder / "d.parquet")], 2, says="column 'logit_2' holds string")


@case
def predict_proba_columns(folder: Path) -> Case:
    p = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    pq.write_table(pa.table({**{str(c): p[:, c] for c in range(3)}, "label": Y}), folder / "d.parquet")
    return Case([str(folder / "d.parquet"), "--score-prefix", "", "--input", "probs"], 0, loss_mean=loss64(np.log(p), Y).mean())


# ---- 5. sample weights ------------------------------------------------------------------------

def _weights(folder: Path, weights: np.ndarray) -> list[str]:
    np.save(folder / "z.npy", Z)
    np.save(folder / "y.npy", Y)
    np.save(folder / "w.npy", weights)
    return [str(folder / "z.npy"), "--labels", str(folder / "y.npy"), "--sample-weights", str(folder / "w.npy")]


def _bad_weight(value: float, row: int) -> Callable[[Path], Case]:
    def make(folder: Path) -> Case:
        w = np.ones(40)
        w[row] = value
        return Case(_weights(folder, w), 2, says=f"row {row} is {value}")
    return make


for _value, _row in ((-0.5, 0), (float("nan"), 17), (float("inf"), 39)):
    CASES[f"weight_{_value}_row_{_row}"] = _bad_weight(_value, _row)


@case
def weights_all_zero(folder: Path) -> Case:
    return Case(_weights(folder, np.zeros(40)), 2, says="every sample weight is 0")


@case
def weights_wrong_shape(folder: Path) -> Case:
    return Case(_weights(folder, np.ones((40, 3))), 2, says="sample weights have shape [40, 3]")


# ---- 8. ids that collide with the output's own columns ----------------------------------------

def _collide(name: str) -> Callable[[Path], Case]:
    def make(folder: Path) -> Case:
        pq.write_table(pa.table({"logits": list(Z), "label": Y, name: np.arange(40)}), folder / "d.parquet")
        return Case([str(folder / "d.parquet"), "--id-col", name, "-o", str(folder / "out.parquet")], 2, says=f"'{name}'")
    return make


for _name in ("row", "loss", "p_true"):
    CASES[f"id_named_{_name}"] = _collide(_name)


# ---- 12. one format per folder ----------------------------------------------------------------

@case
def folder_of_mixed_formats(folder: Path) -> Case:
    table = pa.table({"logits": list(Z), "label": Y})
    pq.write_table(table, folder / "d.parquet")
    pa_csv.write_csv(pa.table({**{f"logit_{c}": Z[:, c] for c in range(3)}, "label": Y}), folder / "d.csv")
    return Case([str(folder)], 2, says="several formats (csv, parquet)")


@case
def folder_of_mixed_formats_chosen(folder: Path) -> Case:
    folder_of_mixed_formats(folder)
    return Case([str(folder), "--format", "parquet"], 0, says="skipped 1 files of other formats", loss_mean=loss64(Z, Y).mean())


# ---- damaged files: one line and exit 2, never an internal error ------------------------------

def _npy_header(shape: str, fortran: bool = False) -> bytes:
    header = f"{{'descr': '<f4', 'fortran_order': {fortran}, 'shape': {shape}, }}".encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


@case
def npy_negative_dimension(folder: Path) -> Case:
    (folder / "z.npy").write_bytes(_npy_header("(-5, 3)"))
    np.save(folder / "y.npy", Y[:5])
    return Case([str(folder / "z.npy"), "--labels", str(folder / "y.npy")], 2, says="claims the shape")


@case
def npy_fortran_shorter_than_header(folder: Path) -> Case:
    (folder / "z.npy").write_bytes(_npy_header("(5, 3)", fortran=True) + b"\0" * 12)
    np.save(folder / "y.npy", Y[:5])
    return Case([str(folder / "z.npy"), "--labels", str(folder / "y.npy")], 2, says="the file is truncated")


def _npz_patched(folder: Path, patch: Callable[[bytearray], None]) -> str:
    path = folder / "d.npz"
    np.savez(path, logits=Z, labels=Y)
    raw = bytearray(path.read_bytes())
    patch(raw)
    path.write_bytes(bytes(raw))
    return str(path)


def _set_flag(raw: bytearray, offset_in_local: int, central_offset: int, value: int, size: int) -> None:
    """Patch a field of every local header (PK\\3\\4) and of every central directory entry (PK\\1\\2)."""
    for signature, offset in ((b"PK\x03\x04", offset_in_local), (b"PK\x01\x02", central_offset)):
        start = 0
        while (start := raw.find(signature, start)) != -1:
            raw[start + offset : start + offset + size] = value.to_bytes(size, "little")
            start += 4


@case
def npz_encrypted_member(folder: Path) -> Case:
    return Case([_npz_patched(folder, lambda raw: _set_flag(raw, 6, 8, 1, 2))], 2, says="encrypted")


@case
def npz_deflate64_member(folder: Path) -> Case:
    return Case([_npz_patched(folder, lambda raw: _set_flag(raw, 8, 10, 9, 2))], 2, says="cannot read array")


@case
def npz_bad_crc(folder: Path) -> Case:
    def flip(raw: bytearray) -> None:
        start = raw.find(b"\x93NUMPY", raw.find(b"logits.npy")) + 200  # inside the logits' data
        raw[start] ^= 0xFF
    return Case([_npz_patched(folder, flip)], 2, says="Bad CRC-32")


@case
def arrow_file_cut_short(folder: Path) -> Case:
    path = folder / "d.arrow"
    feather.write_feather(pa.table({"logits": list(Z), "label": Y}), path, compression="uncompressed")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] + raw[-200:])
    return Case([str(path)], 2, says="cannot read")


@case
def duplicate_parquet_columns(folder: Path) -> Case:
    table = pa.Table.from_arrays([pa.array(list(Z)), pa.array(list(Z)), pa.array(Y)], names=["logits", "logits", "label"])
    pq.write_table(table, folder / "d.parquet")
    return Case([str(folder / "d.parquet")], 2, says="column names repeat: 'logits'")


@case
def duplicate_csv_columns(folder: Path) -> Case:
    (folder / "d.csv").write_text("logit_0,logit_1,label,label\n0.1,0.2,1,1\n")
    return Case([str(folder / "d.csv")], 2, says="column names repeat: 'label'")


@case
def list_group_column(folder: Path) -> Case:
    pq.write_table(pa.table({"logits": list(Z), "label": Y, "doc": [[1, 2]] * 40}), folder / "d.parquet")
    return Case([str(folder / "d.parquet"), "--group-col", "doc"], 2, says="group column 'doc'")


@case
def list_id_column(folder: Path) -> Case:
    pq.write_table(pa.table({"logits": list(Z), "label": Y, "key": [[1, 2]] * 40}), folder / "d.parquet")
    return Case([str(folder / "d.parquet"), "--id-col", "key", "--worst", "3"], 2, says="id column 'key'")


def _npz_role(option: str, shape: tuple[int, ...], says: str) -> Callable[[Path], Case]:
    """An NPZ member for ids, weights or groups that is not one value per row."""
    def make(folder: Path) -> Case:
        np.savez(folder / "d.npz", logits=Z, labels=Y, extra=np.zeros(shape))
        return Case([str(folder / "d.npz"), option, "extra"], 2, says=says)
    return make


CASES["npz_groups_3d"] = _npz_role("--by", (40, 2, 2), "groups need [N]")
CASES["npz_groups_column"] = _npz_role("--by", (40, 1), "groups need [N]")
CASES["npz_ids_2d"] = _npz_role("--id-col", (40, 3), "ids need [N]")
CASES["npz_weights_3d"] = _npz_role("--weight-col", (40, 2, 2), "weights need [N] or [N, 1]")


@case
def dates_as_groups(folder: Path) -> Case:
    """datetime64 groups from --by-file (numpy gives them no buffer format)."""
    np.save(folder / "z.npy", Z)
    np.save(folder / "y.npy", Y)
    np.save(folder / "g.npy", np.full(40, "2024-01-01", dtype="datetime64[D]"))
    return Case([str(folder / "z.npy"), "--labels", str(folder / "y.npy"), "--by-file", str(folder / "g.npy")], 0,
                loss_mean=loss64(Z, Y).mean(), command="score")


def _option_file(name: str, make_file: Callable[[Path], str], says: str) -> Callable[[Path], Case]:
    def make(folder: Path) -> Case:
        pq.write_table(pa.table({"logits": list(Z), "label": Y}), folder / "d.parquet")
        return Case([str(folder / "d.parquet"), name, make_file(folder)], 2, says=says)
    return make


CASES["classes_folder"] = _option_file("--classes", lambda f: str(f), "names a folder")
CASES["class_weights_folder"] = _option_file("--class-weights", lambda f: str(f), "names a folder")
CASES["classes_not_utf8"] = _option_file(
    "--classes", lambda f: (f / "c.txt").write_bytes(b"cat\n\xff\xfedog\n") and str(f / "c.txt"), "not UTF-8")
CASES["class_weights_dev_zero"] = _option_file("--class-weights", lambda f: "/dev/zero", "not a regular file")
CASES["label_smoothing_nan"] = _option_file("--label-smoothing", lambda f: "nan", "--label-smoothing must lie in [0, 1]")


def write(out: Path) -> None:
    for name, make in CASES.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        made = make(out / name)
        (out / name / "ARGS").write_text(" ".join(made.args) + "\n")


if __name__ == "__main__":
    write(Path(sys.argv[1]))
