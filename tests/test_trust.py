"""The auditor's rule, item by item (issue: trust): on any input xent gives the right number, or
flags it with a coded diagnostic that fails `xent check`, or refuses with one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from reference import sparse_loss64
from xentcli.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def check_json(*args):
    result = invoke("check", *args, "--json")
    return result, json.loads(result.stdout) if result.stdout.strip() else None


def codes(doc):
    return {d["code"] for d in doc["diagnostics"]}


def _npy(tmp_path: Path, scores, labels, name="logits.npy"):
    np.save(tmp_path / name, np.asarray(scores))
    np.save(tmp_path / "labels.npy", np.asarray(labels))
    return [tmp_path / name, "--labels", tmp_path / "labels.npy"]


# ---- 4. logits read as log-probabilities ---------------------------------------------------

@pytest.mark.parametrize("how", ["name", "option"])
def test_logits_read_as_log_probs_fail_check(tmp_path, how):
    rng = np.random.default_rng(4)
    z = (rng.standard_normal((50, 5)) * 3).astype(np.float32)
    y = rng.integers(0, 5, 50)
    if how == "name":
        pq.write_table(pa.table({"log_probs": list(z), "label": y}), tmp_path / "d.parquet")
        args = [tmp_path / "d.parquet"]
    else:
        args = [*_npy(tmp_path, z, y), "--input", "log-probs"]
    result, doc = check_json(*args)
    assert result.exit_code == 1
    assert "XE110" in codes(doc)
    xe110 = next(d for d in doc["diagnostics"] if d["code"] == "XE110")
    assert xe110["severity"] == "error" and xe110["rows"] == 50


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_true_log_probs_pass(tmp_path, dtype):
    rng = np.random.default_rng(5)
    z = rng.standard_normal((200, 50)) * 4
    lp = (z - np.log(np.exp(z).sum(axis=1, keepdims=True))).astype(dtype)
    y = rng.integers(0, 50, 200)
    result, doc = check_json(*_npy(tmp_path, lp, y), "--input", "log-probs")
    assert result.exit_code == 0, doc["diagnostics"]
    expected = -lp.astype(np.float64)[np.arange(200), y]
    assert doc["summary"]["loss_mean"] == pytest.approx(expected.mean(), rel=1e-6)


# ---- 11. masks are not errors ----------------------------------------------------------------

def test_vocabulary_masks_pass_check(tmp_path):
    rng = np.random.default_rng(6)
    z = rng.standard_normal((40, 8)).astype(np.float32)
    y = rng.integers(0, 4, 40)
    z[:, 4:] = -np.inf  # classes 4..7 are never targets: masked
    result, doc = check_json(*_npy(tmp_path, z, y))
    assert result.exit_code == 0, doc["diagnostics"]
    assert "XE111" in codes(doc) and "XE102" not in codes(doc)
    expected = sparse_loss64(z[:, :4], y)  # masked classes carry probability 0
    assert doc["summary"]["loss_mean"] == pytest.approx(expected.mean(), rel=1e-6)


@pytest.mark.parametrize("plant", ["minus_inf_on_target", "plus_inf", "all_minus_inf"])
def test_infinite_scores_that_break_the_loss_fail_check(tmp_path, plant):
    z = np.zeros((6, 3), np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    if plant == "minus_inf_on_target":
        z[2, 2] = -np.inf
    elif plant == "plus_inf":
        z[2, 0] = np.inf
    else:
        z[2] = -np.inf
    result, doc = check_json(*_npy(tmp_path, z, y))
    assert result.exit_code == 1
    xe102 = next(d for d in doc["diagnostics"] if d["code"] == "XE102")
    assert xe102["rows"] == 1 and xe102["examples"][0]["row"] == 2


# ---- 7. labels compared as the values they are -----------------------------------------------

@pytest.mark.parametrize("labels", [
    np.array([0, 1, 2**64 - 100, 2**63, 1], dtype=np.uint64),  # 2**64 - 100 wrapped to -100 before
    np.array([0, 1, 1e300, -1e300, 1], dtype=np.float64),
    np.array([0, 1, 2**62, -(2**62), 1], dtype=np.int64),
])
def test_huge_labels_are_out_of_range(tmp_path, labels):
    z = np.zeros((5, 3), np.float32)
    result, doc = check_json(*_npy(tmp_path, z, labels))
    assert result.exit_code == 1
    xe201 = next(d for d in doc["diagnostics"] if d["code"] == "XE201")
    assert xe201["rows"] == 2 and [e["row"] for e in xe201["examples"]] == [2, 3]
    assert doc["summary"]["ignored"] == 0 and "XE203" not in codes(doc)


def test_ignore_index_beyond_int64_is_refused(tmp_path):
    result = invoke("score", *_npy(tmp_path, np.zeros((2, 3)), [0, 1]), "--ignore-index", str(2**70))
    assert result.exit_code == 2


# ---- 15. --epsilon E is Keras' rule with that epsilon --------------------------------------

def test_epsilon_equals_keras_with_that_epsilon(tmp_path):
    p = np.array([[0.7, 0.3, 0.0], [0.2, 0.2, 0.6], [1.0, 0.0, 0.0]])
    y = np.array([2, 2, 1])
    args = _npy(tmp_path, p, y, name="probs.npy")
    eps = 1e-3
    truth = json.loads(invoke("score", *args, "--epsilon", eps, "--json").stdout)
    keras = json.loads(invoke("score", *args, "--epsilon", eps, "--like", "keras", "--json").stdout)
    # by hand, as keras/src/backend/tensorflow/nn.py does for integer labels: clip to [ε, 1 − ε],
    # then log_softmax of the log renormalises: −log(clip(p_y) / Σ clip(p))
    clipped = np.clip(p, eps, 1 - eps)
    hand = -np.log(clipped[np.arange(3), y] / clipped.sum(axis=1))
    assert truth["summary"]["loss_mean"] == pytest.approx(hand.mean(), rel=1e-12)
    assert keras["like"]["loss"] == pytest.approx(hand.mean(), rel=1e-12)
