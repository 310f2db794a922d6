"""One test per diagnostic on data crafted to trigger it, and clean data that triggers none."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from reference import log_softmax64
from xentcli.cli import app
from xentcli.diagnostics import RULES

runner = CliRunner()
SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"


def run_json(tmp_path, scores, labels, *args, command="score", name="z.npy"):
    np.save(tmp_path / name, np.asarray(scores))
    np.save(tmp_path / "y.npy", np.asarray(labels))
    result = runner.invoke(app, [command, str(tmp_path / name), "--labels", str(tmp_path / "y.npy"), "--json", *args])
    assert result.exit_code in (0, 1), result.stderr
    return json.loads(result.stdout), result.exit_code


def diagnose(tmp_path, scores, labels, *args, name="z.npy"):
    doc, _ = run_json(tmp_path, scores, labels, *args, name=name)
    return {d["code"]: d for d in doc["diagnostics"]}, doc


def clean(n=400, c=8, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    z = rng.standard_normal((n, c)).astype(np.float32)
    z[np.arange(n), y] += 2.0
    return z, y


def test_clean_data_triggers_no_warning_or_error(tmp_path):
    z, y = clean()
    found, _ = diagnose(tmp_path, z, y)
    assert all(d["severity"] == "info" for d in found.values()), found.keys()


def test_every_rule_is_documented():
    for code, rule in RULES.items():
        assert code.startswith("XE") and len(code) == 5
        assert rule.severity in ("error", "warning", "info") and rule.summary and rule.why and rule.fix and rule.example
    assert len({rule.name for rule in RULES.values()}) == len(RULES)


def test_xe101_nan_scores(tmp_path):
    z, y = clean()
    z[3, 2] = np.nan
    z[10, 5] = np.nan
    found, doc = diagnose(tmp_path, z, y)
    assert found["XE101"]["rows"] == 2 and found["XE101"]["examples"][0] == {"row": 3, "classes": "2"}
    assert found["XE401"]["causes"] == {"XE101": 2}
    assert doc["summary"]["nonfinite"] == 2


def test_xe102_inf_scores(tmp_path):
    z, y = clean()
    z[0, :] = 0.0
    z[0, 1] = np.inf
    z[1, y[1]] = -np.inf
    found, _ = diagnose(tmp_path, z, y)
    assert found["XE102"]["rows"] == 2
    assert found["XE401"]["causes"] == {"XE102": 2}


def test_xe103_overflow_risk_per_dtype(tmp_path):
    z, y = clean()
    z[5, 0] = 95.0
    found, _ = diagnose(tmp_path, z, y)
    assert found["XE103"]["rows"] == 1 and found["XE103"]["max_abs"] == 95.0
    z16 = clean()[0].astype(np.float16)
    z16[7, 1] = 12.0
    found16, _ = diagnose(tmp_path, z16, y)
    assert found16["XE103"]["rows"] == 1 and "float16" in found16["XE103"]["message"]
    assert "XE109" in found16


def test_xe104_probabilities_read_as_logits(tmp_path):
    z, y = clean()
    p = np.exp(log_softmax64(z)).astype(np.float32)
    found, _ = diagnose(tmp_path, p, y, "--input", "logits")
    assert found["XE104"]["rows"] == len(y) and found["XE104"]["severity"] == "error"
    assert "XE104" not in diagnose(tmp_path, p, y, "--input", "probs")[0]


def test_xe105_logits_read_as_probabilities(tmp_path):
    z, y = clean()
    found, _ = diagnose(tmp_path, z, y, "--input", "probs")
    assert found["XE105"]["rows"] > 0.9 * len(y)


def test_xe106_log_probabilities(tmp_path):
    z, y = clean()
    found, _ = diagnose(tmp_path, log_softmax64(z), y)
    assert found["XE106"]["severity"] == "info" and found["XE106"]["rows"] == len(y)
    assert "XE106" not in diagnose(tmp_path, z, y)[0]


def test_xe107_constant_rows(tmp_path):
    z, y = clean()
    z[:4] = 0.5
    found, _ = diagnose(tmp_path, z, y)
    assert found["XE107"]["rows"] == 4 and [e["row"] for e in found["XE107"]["examples"]] == [0, 1, 2, 3]


def test_xe108_zero_probability_on_target(tmp_path):
    p = np.array([[0.6, 0.4, 0.0], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    found, doc = diagnose(tmp_path, p, [2, 2, 2], name="probs.npy")
    assert found["XE108"]["rows"] == 1
    clipped = np.mean([-math.log(1e-7), -math.log(0.5), -math.log(0.8)])
    assert found["XE108"]["clipped_mean"] == pytest.approx(clipped, rel=1e-9)
    assert found["XE401"]["causes"] == {"zero_probability": 1}


def test_xe201_xe202_labels(tmp_path):
    z, y = clean()
    bad = y.copy()
    bad[[4, 9]] = [8, -3]
    found, _ = diagnose(tmp_path, z, bad)
    assert found["XE201"]["rows"] == 2 and found["XE201"]["examples"][0]["label"] == 8
    assert "XE202" not in found
    one_based = y + 1
    found, _ = diagnose(tmp_path, z, one_based)
    # every labelled row points at the next class (found in review: it counted only label C's rows, 11% for 100%)
    assert found["XE202"]["severity"] == "error" and found["XE202"]["rows"] == one_based.size
    assert f"({int((one_based == 8).sum())} of label C out of range)" in found["XE202"]["message"]


def test_xe203_fractional_labels(tmp_path):
    z, y = clean()
    labels = y.astype(np.float64)
    labels[[1, 2]] = [2.5, np.nan]
    found, _ = diagnose(tmp_path, z, labels)
    assert found["XE203"]["rows"] == 2 and found["XE401"]["causes"] == {"XE203": 2}


def test_xe204_unknown_class(tmp_path):
    z, y = clean(c=3)
    names = ["cat", "dog", "owl"]
    labels = [names[v] for v in y]
    labels[0] = "Cat"
    pq.write_table(pa.table({"logits": pa.array(z.tolist()), "label": labels}), tmp_path / "s.parquet")
    doc = json.loads(runner.invoke(app, ["score", str(tmp_path / "s.parquet"), "--classes", "cat,dog,owl", "--json"]).stdout)
    found = {d["code"]: d for d in doc["diagnostics"]}
    assert found["XE204"]["rows"] == 1 and "XE203" not in found


def test_xe205_xe206_xe207_dense_targets(tmp_path):
    z, y = clean(c=4)
    onehot = np.eye(4)[y]
    found, _ = diagnose(tmp_path, z, onehot)
    assert found["XE205"]["severity"] == "info"
    multi = onehot.copy()
    multi[0] = [1, 0, 1, 0]
    multi[1] = [0.5, 0.3, 0.1, 0.0]  # sums to 0.9
    multi[2] = [1.2, -0.2, 0.0, 0.0]  # a negative entry
    found, _ = diagnose(tmp_path, z, multi)
    assert found["XE206"]["rows"] == 1 and found["XE206"]["examples"][0]["row"] == 0
    assert found["XE207"]["rows"] == 2 and "XE205" not in found


@pytest.mark.parametrize("targets, want", [
    # hand-counted: the whole targets other than 0/1 are labels out of range (XE201) and have no loss (XE401)
    ([0.3, -1, 1, 0, 2, 1], {"XE201": 2, "XE401": 2}),
    ([0.3, 1, 2, 2, 2, 1], {"XE201": 3, "XE202": 5, "XE401": 3}),  # 1/2 targets: no 0, the largest 2; all 5 whole ones shifted
    ([0.3, np.nan, 1, 0, -100, 1], {"XE203": 1, "XE208": 1, "XE401": 1}),  # a missing target; the ignore index
])
def test_binary_label_diagnostics_judge_whole_targets_beside_soft_ones_in_any_chunk(tmp_path, targets, want):
    """A binary head's whole targets beside a soft one (0.3) are scored as labels whatever chunk
    holds them (engine._whole_targets_as_labels), so the label rules judge them in every chunk too:
    the same codes, counts and examples for every --chunk-rows (they were missed in a chunk holding
    the soft target)."""
    z = np.array([0.5, -1, 2, 0.3, -0.2, 1.0], np.float32)
    found = []
    for rows in (1, 2, 3, 6):
        doc, code = run_json(tmp_path, z, np.array(targets, np.float64), "--chunk-rows", str(rows), command="check")
        assert code == 1
        found.append(doc["diagnostics"])
        assert {d["code"]: d["rows"] for d in doc["diagnostics"] if d["code"] in ("XE201", "XE202", "XE203", "XE208", "XE401")} == want
    assert all(f == found[0] for f in found)


def test_xe208_ignored_rows(tmp_path):
    z, y = clean()
    y[:10] = -100
    found, _ = diagnose(tmp_path, z, y)
    assert found["XE208"]["rows"] == 10 and found["XE208"]["fraction"] == pytest.approx(10 / len(y))
    assert "XE201" not in found and "XE401" not in found


def test_xe209_absent_classes(tmp_path):
    z, y = clean(c=8)
    y = np.where(y == 7, 0, y)
    found, _ = diagnose(tmp_path, z, y)
    assert "7" in found["XE209"]["message"] and found["XE209"]["absent_targets"] == [7]


def test_xe30x_shape_errors_carry_codes(tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((3, 4)))
    np.save(tmp_path / "y.npy", np.zeros(2, int))
    result = runner.invoke(app, ["check", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy")])
    assert result.exit_code == 2 and "[XE302]" in result.stderr
    pq.write_table(pa.table({"logits": [[0.0, 1.0], [0.0]], "label": [0, 1]}), tmp_path / "r.parquet")
    result = runner.invoke(app, ["check", str(tmp_path / "r.parquet")])
    assert result.exit_code == 2 and "[XE301]" in result.stderr
    np.save(tmp_path / "t.npy", np.zeros((3, 5)))
    result = runner.invoke(app, ["check", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "t.npy")])
    assert result.exit_code == 2 and "[XE303]" in result.stderr
    np.save(tmp_path / "e.npy", np.zeros((0, 4)))
    np.save(tmp_path / "ey.npy", np.zeros(0, int))
    result = runner.invoke(app, ["check", str(tmp_path / "e.npy"), "--labels", str(tmp_path / "ey.npy")])
    assert result.exit_code == 2 and "[XE304]" in result.stderr


@pytest.mark.parametrize("shape, axis", [((5, 0, 3), "2"), ((5, 3, 0), "1"), ((0, 4, 3), "2"), ((5, 0, 1), "2")])
def test_xe304_sequences_without_positions(tmp_path, shape, axis):
    """Sequences of no positions ([N, 0, C] or [N, C, 0]) hold no tokens: XE304, not a division by zero (exit 3)."""
    labels_shape = (shape[0], shape[3 - int(axis)])
    for dump in ("npy", "npz"):
        if dump == "npy":
            np.save(tmp_path / "s.npy", np.zeros(shape, np.float32))
            np.save(tmp_path / "y.npy", np.zeros(labels_shape, np.int64))
            args = [str(tmp_path / "s.npy"), "--labels", str(tmp_path / "y.npy")]
        else:
            np.savez(tmp_path / "d.npz", logits=np.zeros(shape, np.float32), labels=np.zeros(labels_shape, np.int64))
            args = [str(tmp_path / "d.npz")]
        result = runner.invoke(app, ["check", *args, "--class-axis", axis])
        assert (result.exit_code, result.stderr) == (2, f"xent: error: [XE304] {args[0]}: holds no rows; there is nothing to score; check the step that wrote it\n")


def test_xe305_class_axis_suspect(tmp_path):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((6, 20, 7)).astype(np.float32)  # PyTorch's [N, C=20, T=7] read as [N, T, C]
    y = rng.integers(0, 20, (6, 7))
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    result = runner.invoke(app, ["check", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy")])
    assert result.exit_code == 2 and "[XE305]" in result.stderr and "--class-axis 1" in result.stderr
    fixed = runner.invoke(app, ["check", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--class-axis", "1", "--fail-on", "never"])
    assert fixed.exit_code == 0


def test_xe402_xe404_outliers_and_confident_mistakes(tmp_path):
    z, y = clean(c=4)
    z[5] = [30.0, 0, 0, 0]
    y[5] = 1
    found, _ = diagnose(tmp_path, z, y)
    assert found["XE402"]["examples"][0]["row"] == 5
    assert found["XE404"]["examples"][0]["row"] == 5 and found["XE404"]["examples"][0]["pred"] == 0


def test_xe403_prediction_collapse(tmp_path):
    z, y = clean()
    z[:, 3] += 50.0
    found, _ = diagnose(tmp_path, z, y)
    assert found["XE403"]["severity"] == "warning" and "class 3" in found["XE403"]["message"]


def test_diagnostics_do_not_hide_each_other(tmp_path):
    z, y = clean()
    z[0, 0] = np.nan
    y[1] = 99
    y[2] = -100
    found, _ = diagnose(tmp_path, z, y)
    assert {"XE101", "XE201", "XE208", "XE401"} <= set(found)
    assert list(found)[:3] == sorted(list(found)[:3])  # errors first, by code


def test_select_and_ignore(tmp_path):
    z, y = clean()
    z[0, 0] = np.nan
    y[1] = 99
    found, _ = diagnose(tmp_path, z, y, "--select", "XE2")
    assert set(found) == {"XE201"}
    found, _ = diagnose(tmp_path, z, y, "--ignore", "XE4,XE101")
    assert "XE401" not in found and "XE101" not in found and "XE201" in found


def test_no_diagnostics(tmp_path):
    z, y = clean()
    z[0, 0] = np.nan
    found, _ = diagnose(tmp_path, z, y, "--no-diagnostics")
    assert found == {}


def test_check_exit_codes_and_verdict(tmp_path):
    z, y = clean()
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    ok = runner.invoke(app, ["check", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--max-loss", "5"])
    assert ok.exit_code == 0 and ok.stdout.strip().splitlines()[-1].startswith("PASS")
    fail = runner.invoke(app, ["check", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--max-loss", "0.1", "--min-accuracy", "0.99"])
    last = fail.stdout.strip().splitlines()[-1]
    assert fail.exit_code == 1 and last.startswith("FAIL: mean loss") and "accuracy" in last
    y2 = y.copy()
    y2[0] = 50
    np.save(tmp_path / "y.npy", y2)
    fail = runner.invoke(app, ["check", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--json"])
    doc = json.loads(fail.stdout)
    assert fail.exit_code == 1 and doc["passed"] is False
    assert any(r.startswith("XE201") for r in doc["reasons"]) and any(r.startswith("non-finite rows 1 > 0") for r in doc["reasons"])
    never = runner.invoke(app, ["check", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--fail-on", "never", "--max-nonfinite", "1"])
    assert never.exit_code == 0


def test_explain():
    result = runner.invoke(app, ["explain", "XE202"])
    assert result.exit_code == 0 and "one-based-labels" in result.stdout and "Subtract 1" in result.stdout
    doc = json.loads(runner.invoke(app, ["explain", "one-based-labels", "--json"]).stdout)
    assert doc["code"] == "XE202"
    listing = runner.invoke(app, ["explain"]).stdout
    assert all(code in listing for code in RULES)
    bad = runner.invoke(app, ["explain", "XE999"])
    assert bad.exit_code == 2 and "no diagnostic 'XE999'" in bad.stderr


def test_xe109_counts_the_finite_half_precision_rows_in_any_chunk(tmp_path):
    """XE109 counted every row of a chunk holding a finite float16 score and none of a chunk of NaN
    rows, so its count moved with --chunk-rows; it counts the 7 rows with finite scores (of 10)."""
    z = np.random.default_rng(5).standard_normal((10, 3)).astype(np.float16)
    z[[1, 2, 3]] = np.nan
    counts = set()
    for rows in (1, 2, 3, 10):
        found, _ = diagnose(tmp_path, z, np.arange(10) % 3, "--chunk-rows", str(rows))
        counts.add(found["XE109"]["rows"])
    assert counts == {7}


def test_xe401_names_causes_by_the_codes_that_report_them(tmp_path):
    """Found in review: XE401 named causes by codes the report did not hold — class names that are no
    class as [XE203] (XE204 reports them), a NaN in a dense target row as [XE201] (XE207 missed it),
    a multi-label target of 2 and a binary probability of 1.3 as "another cause" (XE115, XE113)."""
    from typer.testing import CliRunner

    from xentcli.cli import app

    (tmp_path / "names.csv").write_text("logit_cat,logit_dog,label\n1,2,cat\n3,0,dog\n0,1,cow\n")
    z = np.random.default_rng(0).normal(size=(4, 4))
    t = np.eye(4)
    t[1] = [np.nan, 1, 0, 0]
    np.savez(tmp_path / "dense.npz", logits=z, labels=t)
    zm = np.random.default_rng(0).normal(size=(4, 3))
    tm = (zm > 0).astype(float)
    tm[0, 1] = 2
    np.savez(tmp_path / "multi.npz", logits=zm, labels=tm)
    np.save(tmp_path / "p.npy", np.array([0.5, 1.3, 0.2]))
    np.save(tmp_path / "py.npy", np.array([1, 0, 1]))
    cases = (([tmp_path / "names.csv", "--classes", "cat,dog"], "XE204"), ([tmp_path / "dense.npz"], "XE207"),
             ([tmp_path / "multi.npz", "--head", "sigmoid"], "XE115"), ([tmp_path / "p.npy", "--labels", tmp_path / "py.npy", "--input", "probs"], "XE113"))
    for args, code in cases:
        doc = json.loads(CliRunner().invoke(app, ["score", *map(str, args), "--json"]).stdout)
        found = {d["code"]: d for d in doc["diagnostics"]}
        assert code in found and found["XE401"]["causes"] == {code: 1}, (code, found["XE401"])
        assert f"[{code}]" in found["XE401"]["message"]


def test_xe401_names_logits_read_as_probabilities(tmp_path):
    """Found in a new-user review: logits scored with --input probs gave '68 rows have a NaN or
    infinite loss: 68 from another cause' — no cause named. A negative "probability" (the log of a
    negative number) is traced to XE105, which reports such rows."""
    import json

    from typer.testing import CliRunner

    from xentcli.cli import app

    rng = np.random.default_rng(3)
    z = rng.normal(size=(200, 5))
    y = rng.integers(0, 5, 200)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    doc = json.loads(CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--input", "probs",
                                              "--json"]).stdout)
    xe401 = next(d for d in doc["diagnostics"] if d["code"] == "XE401")
    # the loss of probabilities is log Σp − log p_y: NaN or inf where p_y ≤ 0 or Σp ≤ 0
    want = int(np.count_nonzero((z[np.arange(200), y] <= 0) | (z.sum(axis=1) <= 0)))
    assert xe401["causes"] == {"XE105": want} and "[XE105]" in xe401["message"] and "another cause" not in xe401["message"]


@pytest.mark.parametrize("binary", [False, True])
def test_ranked_examples_are_the_top_five_whatever_the_chunks_and_threads(tmp_path, monkeypatch, binary):
    """XE402's examples are the five highest losses and XE404's the five highest p_max among the
    confident mistakes, ties to the lower row — by a float64 reference — over 60 chunks, on one
    thread or two. Chunks whose best candidates cannot enter the five kept so far make no records
    (diagnostics.view.ExampleFloors): far fewer record builds than chunks with findings."""
    from xentcli.diagnostics import run as diagnostics_run

    rng = np.random.default_rng(4)
    n = 6000
    if binary:  # a sigmoid head's logits (the one C pass of binary dumps, whose columns are looked up by row)
        z = (rng.standard_normal(n) * 4).astype(np.float32)
        y = (rng.random(n) < 0.5).astype(np.uint8)
        z64 = z.astype(np.float64)
        loss = np.maximum(z64, 0) - z64 * y + np.log1p(np.exp(-np.abs(z64)))
        p_max = 1 / (1 + np.exp(-np.abs(z64)))
        wrong = (z >= 0) != (y == 1)
    else:
        z = (rng.standard_normal((n, 4)) * 4).astype(np.float32)
        y = rng.integers(0, 4, n)
        log_p = log_softmax64(z.astype(np.float64))
        loss, p_max = -log_p[np.arange(n), y], np.exp(log_p.max(axis=1))
        wrong = z.argmax(axis=1) != y
    outliers = np.flatnonzero(loss > (math.log(1000) if binary else 3 * math.log(4)))  # README: 3·log C; binary log 1000
    confident = np.flatnonzero(wrong & (p_max >= 0.99))
    top = lambda rows, key: sorted(rows.tolist(), key=lambda r: (-key[r], r))[:5]  # noqa: E731
    built = []
    real_rows = diagnostics_run._rows
    monkeypatch.setattr(diagnostics_run, "_rows", lambda view, picked, columns: built.append(1) or real_rows(view, picked, columns))
    for threads in ("1", "2"):
        built.clear()
        found, _ = diagnose(tmp_path, z, y, "--chunk-rows", "100", "--threads", threads)
        assert [e["row"] for e in found["XE402"]["examples"]] == top(outliers, loss)
        assert [e["row"] for e in found["XE404"]["examples"]] == top(confident, p_max)
        assert found["XE402"]["rows"] == outliers.size and found["XE404"]["rows"] == confident.size
        assert len(built) < 60  # 60 chunks, each with both findings: 120 record builds before the floors


def test_rows_with_negative_entries_are_not_distributions_not_multi_label(tmp_path):
    """Found in review: logits passed as targets (negative entries and two above 0.5) were called
    multi-label (XE206) on most rows; a multi-hot row holds entries in [0, 1]. Hand-made rows:
    [1.5, 0.7, -2] and [0.9, 0.8, -0.1] are not distributions (XE207); [1, 1, 0] is multi-label."""
    z = np.zeros((3, 3))
    targets = np.array([[1.5, 0.7, -2.0], [0.9, 0.8, -0.1], [1.0, 1.0, 0.0]])
    found, _ = diagnose(tmp_path, z, targets)
    assert found["XE207"]["rows"] == 2 and found["XE206"]["rows"] == 1
    assert found["XE206"]["examples"][0]["row"] == 2
