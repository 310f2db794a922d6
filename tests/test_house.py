"""The house may be rebuilt, the answers may not change: the JSON of every sample dump, under the
options that reach every room (ids, worst rows, per class, frameworks, sequences of options), is
held against golden files written before the restructuring (tests/golden/, floats to 1e-12).

XENT_UPDATE_GOLDEN=1 rewrites them; do that only for a change of behaviour that is meant, and say
so in the commit."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xentcli.cli import app

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
RUNS = {
    "parquet_full": ["score", "sample_data/cifar10_val.parquet", "--id-col", "id", "--worst", "5", "--per-class"],
    "arrow_classes": ["score", "sample_data/cifar10_val.arrow", "--per-class", "--classes", "sample_data/classes.txt"],
    "csv": ["score", "sample_data/cifar10_val.csv", "--id-col", "id", "--worst", "3"],
    "npz_compare": ["score", "sample_data/cifar10_val.npz", "--compare-frameworks"],
    "npy_like_keras": ["score", "sample_data/cifar10_val_logits.npy", "--labels", "sample_data/cifar10_val_labels.npy", "--like", "keras",
                       "--label-smoothing", "0.1", "--class-weights", "1,1,1,2,1,1,1,1,1,0.5"],
    "fp16_nan": ["score", "sample_data/broken_fp16_nan.npz", "--worst", "4"],
    "one_based_check": ["check", "sample_data/broken_one_based.parquet", "--max-loss", "2.5", "--min-accuracy", "0.5"],
    "probs_as_logits": ["score", "sample_data/broken_probs_as_logits.parquet", "--compare-frameworks"],
    "multilabel": ["score", "sample_data/broken_multilabel.parquet", "--select", "XE2,XE4"],
}


def _close(got, want, where: str) -> None:
    if isinstance(want, float) and isinstance(got, float):
        assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-300), where
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{where}: keys {list(got)} != {list(want)}"
        for key in want:
            _close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: length"
        for i, (g, w) in enumerate(zip(got, want)):
            _close(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


@pytest.mark.parametrize("name", sorted(RUNS))
def test_json_of_the_sample_dumps_is_unchanged(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, [*RUNS[name], "--json"])
    assert result.exit_code in (0, 1), result.output
    doc = json.loads(result.stdout)
    path = GOLDEN / f"{name}.json"
    if os.environ.get("XENT_UPDATE_GOLDEN"):
        path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    _close(doc, json.loads(path.read_text()), name)
