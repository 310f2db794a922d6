"""Remake the sample dumps in this folder, deterministically: `python sample_data/make_samples.py`.

A realistic 10-class image classifier (CIFAR-10 classes) evaluated on 500 validation images:
~85% accurate, with the usual confusions (cat/dog, automobile/truck, deer/horse, airplane/ship)
and a few confident mistakes. The same rows are written as Parquet (list column + ids), wide CSV,
NPY logits + labels, NPZ and Arrow IPC, so every reader can be tried on the same numbers; and a
binary spam filter's sigmoid head (spam_val.parquet: one logit per message), and a photo tagger's
multi-label head (tags_val.parquet: 6 logits and 6 0/1 targets per image).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.feather as feather
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CONFUSED = {0: 8, 8: 0, 1: 9, 9: 1, 3: 5, 5: 3, 4: 7, 7: 4, 2: 0, 6: 3}
ROWS = 500
SEED = 20261123


def classifier_dump(rows: int = ROWS, seed: int = SEED) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """float32 logits [rows, 10], int64 labels [rows] and string ids of a plausible classifier."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), rows)
    logits = rng.normal(0.0, 1.2, (rows, len(CLASSES)))
    rowsel = np.arange(rows)
    confused = np.array([CONFUSED[int(y)] for y in labels])
    logits[rowsel, labels] += rng.gamma(5.0, 1.2, rows)  # evidence for the true class
    logits[rowsel, confused] += rng.gamma(1.5, 0.9, rows)  # and for its usual look-alike
    flipped = rng.random(rows) < 0.03  # a few confident mistakes (or label errors)
    logits[flipped, confused[flipped]] += 9.0
    logits += rng.normal(0.0, 0.5, (rows, 1))  # per-image offset: logits are not normalised
    ids = [f"val_{i:05d}" for i in range(rows)]
    return logits.astype(np.float32), labels.astype(np.int64), ids


def main() -> None:
    logits, labels, ids = classifier_dump()
    width = logits.shape[1]
    flat = pa.array(logits.ravel())
    as_list = pa.FixedSizeListArray.from_arrays(flat, width).cast(pa.list_(pa.float32()))
    table = pa.table({"id": ids, "logits": as_list, "label": labels})
    pq.write_table(table, HERE / "cifar10_val.parquet")
    feather.write_feather(table, HERE / "cifar10_val.arrow")
    wide = {"id": ids, **{f"logit_{c}": pa.array(logits[:, c]) for c in range(width)}, "label": labels}
    pa_csv.write_csv(pa.table(wide), HERE / "cifar10_val.csv")
    np.save(HERE / "cifar10_val_logits.npy", logits)
    np.save(HERE / "cifar10_val_labels.npy", labels)
    np.savez(HERE / "cifar10_val.npz", logits=logits, labels=labels)
    (HERE / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    broken_dumps(logits, labels, ids)
    candidate_dump(logits, labels, ids)
    binary_dump()
    multilabel_dump()


def binary_dump(rows: int = 1000, seed: int = SEED) -> None:
    """A spam filter's sigmoid head: one float32 logit per message, 0/1 labels drawn from a slightly
    over-confident model (the labels follow σ(0.8·z)), ids msg_00000 …"""
    rng = np.random.default_rng(seed + 1)
    logits = rng.normal(-0.6, 2.6, rows)
    labels = (rng.random(rows) < 1 / (1 + np.exp(-0.8 * logits))).astype(np.int64)
    ids = [f"msg_{i:05d}" for i in range(rows)]
    pq.write_table(pa.table({"id": ids, "logit": logits.astype(np.float32), "label": labels}), HERE / "spam_val.parquet")


def candidate_dump(logits: np.ndarray, labels: np.ndarray, ids: list[str]) -> None:
    """A candidate model on the same rows for `xent diff`: slightly less sure of itself (logits
    shrunk by 8%) and noisier, with the rows in another order (pair them with --key id)."""
    rng = np.random.default_rng(SEED + 1)
    candidate = (logits * 0.92 + rng.normal(0.0, 0.35, logits.shape)).astype(np.float32)
    order = rng.permutation(len(ids))
    as_list = pa.FixedSizeListArray.from_arrays(pa.array(candidate[order].ravel()), candidate.shape[1]).cast(pa.list_(pa.float32()))
    table = pa.table({"id": [ids[i] for i in order], "logits": as_list, "label": labels[order]})
    pq.write_table(table, HERE / "cifar10_val_candidate.parquet")


def broken_dumps(logits: np.ndarray, labels: np.ndarray, ids: list[str]) -> None:
    """The same eval broken in the four ways the README's debugging walk-through shows."""
    width = logits.shape[1]

    def as_list(values: np.ndarray) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1]).cast(pa.list_(pa.from_numpy_dtype(values.dtype)))

    # labels written 1-based (1 … 10) by an exporter that forgot to subtract 1
    pq.write_table(pa.table({"id": ids, "logits": as_list(logits), "label": labels + 1}), HERE / "broken_one_based.parquet")
    # the model's softmax applied before dumping, in a column named like logits
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
    pq.write_table(pa.table({"id": ids, "scores": as_list(probs), "label": labels}), HERE / "broken_probs_as_logits.parquet")
    # a float16 head that overflowed: logits scaled ×8 (some beyond float16's exp range), and a few
    # rows where the overflow became inf and then NaN
    head = (logits * 8).astype(np.float16)
    head[[17, 211]] = np.inf
    head[[17, 211], [3, 5]] = np.nan
    head[[18, 19], 0] = np.float16(np.inf)
    np.savez(HERE / "broken_fp16_nan.npz", logits=head, labels=labels)
    # multi-label targets (two classes tagged on some images) fed to a softmax cross-entropy
    targets = np.eye(width, dtype=np.float32)[labels]
    targets[::7, (labels[::7] + 1) % width] = 1.0
    pq.write_table(pa.table({"id": ids, "logits": as_list(logits), "targets": as_list(targets)}), HERE / "broken_multilabel.parquet")


def multilabel_dump(rows: int = 400, labels: int = 6, seed: int = SEED) -> None:
    """A photo tagger's sigmoid head: 6 independent tags (outdoor, person, animal, vehicle, food,
    text), float32 logits per tag and multi-hot targets drawn from the model's own probabilities
    (one tag, vehicle, rarer and under-predicted)."""
    rng = np.random.default_rng(seed + 2)
    logits = rng.normal(-0.8, 2.4, (rows, labels))
    logits[:, 3] -= 1.5
    targets = (rng.random((rows, labels)) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    targets[:, 3] = np.maximum(targets[:, 3], rng.random(rows) < 0.08)
    ids = [f"img_{i:05d}" for i in range(rows)]
    pq.write_table(pa.table({"id": ids, "logits": list(logits.astype(np.float32)), "targets": list(targets)}), HERE / "tags_val.parquet")


if __name__ == "__main__":
    main()
