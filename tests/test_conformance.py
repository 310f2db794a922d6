"""xent reproduces the reference numbers recorded with the frameworks (tests/conformance, see its README).

The `reference` of every case is the exact float64 cross-entropy of the stored numbers, which is
what `xent score` reports by default. Framework presets (`--like`) are tested separately.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reference import close_to

from xentcli.config import RunConfig, SourceConfig
from xentcli.engine import run

HERE = Path(__file__).parent / "conformance"
CASES = json.loads((HERE / "cases.json").read_text())["cases"]
FLAT_CASES = [case for case in CASES if len(case["pred_shape"]) == 2]


def _numbers(values) -> np.ndarray:
    return np.array([float(v) for v in values], dtype=np.float64)


class Collect:
    def __init__(self):
        self.loss = []

    def write(self, result):
        self.loss.append(result.stats.loss)


def _config(case, layout: str) -> SourceConfig:
    files = case["files"][layout]
    if layout == "npy":
        scores = files.get("logits") or files["probs"]
        return SourceConfig((str(HERE / scores),), labels_path=str(HERE / files["labels"]))
    return SourceConfig((str(HERE / files["path"]),), score_col=files["pred_column"], label_col=files["label_column"])


@pytest.mark.parametrize("layout", ["npy", "parquet_list"])
@pytest.mark.parametrize("case", FLAT_CASES, ids=[case["id"] for case in FLAT_CASES])
def test_reference_per_sample_and_aggregates(case, layout):
    sink = Collect()
    report = run(RunConfig(_config(case, layout), chunk_rows=5, threads=2, per_sample=True), sink=sink)
    reference = case["reference"]
    got = np.concatenate(sink.loss)
    want = _numbers(reference["per_sample"])
    bad = ~close_to(got, want, case["stored_dtype"])
    assert not bad.any(), f"rows {np.flatnonzero(bad)}: {got[bad]} vs {want[bad]}"
    assert report.input.input_kind == case["pred_kind"]
    finite = np.isfinite(want)
    summary = report.summary
    assert summary["counted"] == int(finite.sum())
    assert summary["counted"] + summary["nonfinite"] + summary["ignored"] == len(want)
    assert summary["ignored"] == int((_labels(case) == -100).sum())
    if np.isfinite(float(reference["mean_over_valid"])):
        mean, total = float(reference["mean_over_valid"]), float(reference["sum_over_valid"])
        assert close_to(np.array([summary["loss_mean"]]), np.array([mean]), case["stored_dtype"]).all()
        assert close_to(np.array([summary["loss_sum"]]), np.array([total]), case["stored_dtype"]).all()
    else:  # an infinite loss is counted in `nonfinite` and reported, not averaged in
        assert summary["loss_mean"] == pytest.approx(want[finite].mean(), rel=1e-6)


TF_SPARSE = "tf.nn.sparse_softmax_cross_entropy_with_logits()"
TF_CASES = [
    c
    for c in FLAT_CASES
    if TF_SPARSE in c["expected"] and isinstance(c["expected"][TF_SPARSE]["float64"]["none"], list)
]


@pytest.mark.parametrize("case", TF_CASES, ids=[c["id"] for c in TF_CASES])
def test_tf_nn_sparse_float64_per_sample(case):
    """tf.nn.sparse_softmax_cross_entropy_with_logits (float64 run) wherever TF accepts the labels."""
    sink = Collect()
    run(RunConfig(_config(case, "npy"), per_sample=True), sink=sink)
    got = np.concatenate(sink.loss)
    want = _numbers(case["expected"][TF_SPARSE]["float64"]["none"])
    assert close_to(got, want, case["stored_dtype"]).all()


def test_tf_cases_are_found():
    """The parametrised test above runs once per case with per-sample tf.nn numbers; an empty list
    would run it never. The five: sparse_c3, sparse_c10_f64, c1000_small, large_logits_f32, float16_small."""
    assert len(TF_CASES) == 5


def _labels(case) -> np.ndarray:
    return np.load(HERE / case["files"]["npy"]["labels"])
