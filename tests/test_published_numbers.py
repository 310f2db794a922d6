"""Numbers the frameworks publish in their own tests and docs, reproduced through xent."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from xentcli.cli import app

runner = CliRunner()


def score_json(tmp_path, scores, labels, *args, weights=None):
    np.save(tmp_path / "scores.npy", np.asarray(scores, dtype=np.float64))
    np.save(tmp_path / "labels.npy", np.asarray(labels))
    extra = []
    if weights is not None:
        np.save(tmp_path / "w.npy", np.asarray(weights, dtype=np.float64))
        extra = ["--sample-weights", str(tmp_path / "w.npy")]
    out = tmp_path / "rows.csv"
    result = runner.invoke(
        app,
        ["score", str(tmp_path / "scores.npy"), "--labels", str(tmp_path / "labels.npy"), *extra, *args, "--json", "-o", str(out), "--force"],
    )
    assert result.exit_code == 0, result.stderr
    import pyarrow.csv as pa_csv

    return json.loads(result.stdout), pa_csv.read_csv(out).to_pydict()


def test_tensorflow_sparse_xent_testNpXent(tmp_path):
    # tensorflow/python/kernel_tests/nn_ops/sparse_xent_op_test_base.py, testNpXent:
    # features [[1,1,1,1],[1,2,3,4]], labels [3, 0] → losses [1.3862, 3.4420] (rtol 1e-3)
    doc, rows = score_json(tmp_path, [[1.0, 1, 1, 1], [1, 2, 3, 4]], [3, 0], "--like", "tf")
    np.testing.assert_allclose(rows["loss"], [1.3862, 3.4420], rtol=1e-3)
    assert rows["loss"][0] == pytest.approx(np.log(4), rel=1e-12)


def test_keras_sparse_categorical_crossentropy_docstring(tmp_path):
    # keras.losses.SparseCategoricalCrossentropy docstring: y_true [1, 2],
    # y_pred [[0.05, 0.95, 0], [0.1, 0.8, 0.1]] → 1.177; sample_weight [0.3, 0.7] → 0.814;
    # reduction "sum" → 2.354; reduction None → [0.0513, 2.303]
    probs = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    doc, rows = score_json(tmp_path, probs, [1, 2], "--input", "probs", "--like", "keras")
    assert doc["like"]["loss"] == pytest.approx(1.177, abs=5e-4)
    assert doc["like"]["sum"] == pytest.approx(2.354, abs=5e-4)
    np.testing.assert_allclose(rows["loss"], [0.0513, 2.303], atol=5e-4)
    weighted, _ = score_json(tmp_path, probs, [1, 2], "--input", "probs", "--like", "keras", weights=[0.3, 0.7])
    assert weighted["like"]["loss"] == pytest.approx(0.814, abs=5e-4)


def test_keras_categorical_crossentropy_docstring(tmp_path):
    # keras.losses.CategoricalCrossentropy docstring: the same numbers with one-hot y_true
    probs = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    doc, _ = score_json(tmp_path, probs, [[0, 1, 0], [0, 0, 1]], "--input", "probs", "--like", "keras", weights=[0.3, 0.7])
    assert doc["like"]["loss"] == pytest.approx(0.814, abs=5e-4)
    assert doc["input"]["target_kind"] == "dense"
