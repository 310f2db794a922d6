"""Loss options and presets through the command line, against the recorded framework numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from reference import log_softmax64
from xentcli.cli import app

DATA = Path(__file__).parent / "conformance" / "data"
CASES = {c["id"]: c for c in json.loads((DATA.parent / "cases.json").read_text())["cases"]}
runner = CliRunner()


def score_json(*args):
    result = runner.invoke(app, ["score", *map(str, args), "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def expected(case_id, call, reduction, dtype="float64"):
    return float(CASES[case_id]["expected"][call][dtype][reduction])


def test_ignore_index_default_and_explicit():
    path = DATA / "ignore_index_minus100" / "list.parquet"
    doc = score_json(path)
    assert doc["summary"]["ignored"] == 4 and doc["summary"]["nonfinite"] == 0
    assert doc["summary"]["loss_mean"] == pytest.approx(3.5332912, rel=1e-7)
    off = score_json(path, "--ignore-index", "none")
    assert off["summary"]["ignored"] == 0 and off["summary"]["nonfinite"] == 4  # -100 is out of range
    zero = score_json(path, "--ignore-index", "0")
    labels = pq.read_table(path).column("label").to_numpy()
    assert zero["summary"]["ignored"] == int((labels == 0).sum())


def test_torch_preset_with_class_weights_and_ignore():
    case = "class_weights_ignore"
    doc = score_json(DATA / case / "list.parquet", "--class-weights", "1.5,0.5,3,1,2", "--like", "torch")
    call = "torch.cross_entropy(target=int, weight=class_weight)"
    assert doc["like"]["loss"] == pytest.approx(expected(case, call, "mean"), rel=1e-6)
    assert doc["like"]["sum"] == pytest.approx(expected(case, call, "sum"), rel=1e-6)
    # the true weighted mean is PyTorch's rule: Σ w[y]·ℓ / Σ w[y] over the valid rows
    assert doc["summary"]["loss_mean"] == pytest.approx(3.3703638, rel=1e-6)


def test_label_smoothing_with_weights_from_a_json_file(tmp_path):
    weights = tmp_path / "w.json"
    weights.write_text("[1.5, 0.5, 3.0, 1.0, 2.0]")
    doc = score_json(DATA / "class_weights_ignore" / "list.parquet", "--class-weights", weights, "--label-smoothing", "0.2", "--like", "torch")
    assert doc["like"]["loss"] == pytest.approx(3.3407046, rel=1e-6)


def test_keras_sample_weights_from_column_and_file(tmp_path):
    case = "sample_weights_keras"
    call = "keras[tensorflow].SparseCategoricalCrossentropy(from_logits=True, sample_weight=sample_weight)"
    doc = score_json(DATA / case / "list.parquet", "--weight-col", "sample_weight", "--like", "keras")
    assert doc["like"]["loss"] == pytest.approx(expected(case, call, "sum_over_batch_size"), rel=1e-6)
    assert doc["like"]["per_reduction"]["mean_with_sample_weight"] == pytest.approx(3.4858733, rel=1e-6)
    assert doc["summary"]["loss_mean"] == pytest.approx(3.4858733, rel=1e-6)  # Σ s·ℓ / Σ s
    files = CASES[case]["files"]["npy"]
    doc2 = score_json(DATA.parent / files["logits"], "--labels", DATA.parent / files["labels"],
                      "--sample-weights", DATA.parent / files["sample_weight"], "--like", "keras")
    assert doc2["like"]["loss"] == pytest.approx(doc["like"]["loss"], rel=1e-12)


def test_keras_clips_probabilities_and_epsilon_option():
    case = "probs_keras_clip"
    path = DATA / case / "list.parquet"
    doc = score_json(path, "--like", "keras-jax")
    call = "keras[jax].SparseCategoricalCrossentropy()"
    assert doc["like"]["loss"] == pytest.approx(expected(case, call, "sum_over_batch_size"), rel=1e-6)
    tf_doc = score_json(path, "--like", "keras")
    tf_call = "keras[tensorflow].SparseCategoricalCrossentropy()"
    assert tf_doc["like"]["loss"] == pytest.approx(expected(case, tf_call, "sum_over_batch_size"), rel=1e-6)
    truth = score_json(path)
    assert truth["summary"]["nonfinite"] == 1  # p_target = 0: an infinite loss, reported
    clipped = score_json(path, "--epsilon", "1e-7")
    assert clipped["summary"]["nonfinite"] == 0
    # --epsilon 1e-7 gives the number Keras (TensorFlow) computed on this dump: clip, then renormalise
    assert clipped["summary"]["loss_mean"] == pytest.approx(expected(case, tf_call, "sum_over_batch_size"), rel=1e-6)


def test_epsilon_refused_for_logits():
    result = runner.invoke(app, ["score", str(DATA / "sparse_c3" / "list.parquet"), "--epsilon", "1e-7"])
    assert result.exit_code == 2 and "--epsilon clips probabilities" in result.stderr


def test_class_weight_count_checked():
    result = runner.invoke(app, ["score", str(DATA / "sparse_c3" / "list.parquet"), "--class-weights", "1,2"])
    assert result.exit_code == 2 and "--class-weights has 2 entries but the scores have 3 classes" in result.stderr


def test_tf_and_optax_presets_report_errors_and_nan():
    path = DATA / "labels_out_of_range" / "list.parquet"
    tf_doc = score_json(path, "--like", "tf")
    assert tf_doc["like"]["errors"][0].startswith("InvalidArgumentError: Received a label value of")
    assert tf_doc["like"]["error_rows"] == 2
    optax = score_json(path, "--like", "optax")
    assert optax["like"]["loss"] is None  # NaN, written as null
    truth = score_json(path)
    assert truth["summary"]["nonfinite"] == 2 and truth["summary"]["loss_mean"] == pytest.approx(3.5047746, rel=1e-6)


def test_per_sample_output_holds_the_framework_values(tmp_path):
    case = "ignore_index_minus100"
    out = tmp_path / "rows.parquet"
    result = runner.invoke(app, ["score", str(DATA / case / "list.parquet"), "--like", "optax", "--ignore-index", "-100", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    rows = pq.read_table(out).to_pydict()
    want = [float(v) for v in CASES[case]["expected"]["optax.softmax_cross_entropy_with_integer_labels(where=valid)"]["float32"]["none"]]
    np.testing.assert_allclose(rows["loss"], want, rtol=1e-6, atol=1e-6)
    assert rows["loss_true"][2] is None and rows["loss"][2] == 0.0


def test_compare_frameworks_json_and_table():
    path = DATA / "sample_weights_keras" / "list.parquet"
    doc = score_json(path, "--weight-col", "sample_weight", "--compare-frameworks")
    names = [fw["framework"] for fw in doc["compare"]["frameworks"]]
    assert names == ["torch", "keras", "tf", "optax"]
    assert any("2 zero-weight rows" in line for line in doc["compare"]["explanations"])
    table = runner.invoke(app, ["score", str(path), "--weight-col", "sample_weight", "--compare-frameworks"]).stdout
    assert "True loss and what each framework reports" in table and "zero-weight" in table


def test_dense_smoothing_matches_formula():
    path = DATA / "onehot_label_smoothing" / "list.parquet"
    doc = score_json(path, "--label-smoothing", "0.2")
    assert doc["summary"]["loss_mean"] == pytest.approx(2.7776127, rel=1e-6)
    z = np.load(DATA / "onehot_label_smoothing" / "logits.npy").astype(np.float64)
    t = np.load(DATA / "onehot_label_smoothing" / "labels.npy").astype(np.float64) * 0.8 + 0.2 / 5
    assert doc["summary"]["loss_mean"] == pytest.approx(-(t * log_softmax64(z)).sum(1).mean(), rel=1e-6)


def test_all_rows_ignored(tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((3, 4)))
    np.save(tmp_path / "y.npy", np.full(3, -100))
    doc = score_json(tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--compare-frameworks")
    assert doc["summary"]["ignored"] == 3 and doc["summary"]["loss_mean"] is None
    torch = doc["compare"]["frameworks"][0]
    assert torch["loss"] is None and torch["sum"] == 0.0  # PyTorch: mean NaN, sum 0
    keras = score_json(tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--like", "keras", "--ignore-index", "-100")
    assert keras["like"]["loss"] == 0.0  # Keras: divide_no_nan


def test_bad_option_values():
    path = str(DATA / "sparse_c3" / "list.parquet")
    for args, needle in [
        (["--ignore-index", "abc"], "--ignore-index takes an integer or 'none'"),
        (["--class-weights", "1,x,3"], "--class-weights must be numbers"),
        (["--class-weights", "1,-1,3"], "finite and non-negative"),
    ]:
        result = runner.invoke(app, ["score", path, *args])
        assert result.exit_code == 2 and needle in result.stderr, result.stderr


@pytest.mark.parametrize("how", ["class", "sample"])
@pytest.mark.parametrize("weight", [5e-324, 1e-300, 2.0**-301, 2.0**301, 1e308])
def test_weights_beyond_float64s_normal_products_are_refused(tmp_path, how, weight):
    """Weights whose products with a loss leave float64's normal range: 5e-324 made every w·ℓ 0, the
    mean loss 0 and `check --max-loss 0.2` pass (the true mean is log1p(e^-1) = 0.3132617); 1e308
    made it inf. They are refused with one line (only their ratios matter); 2^±300 are used."""
    n = 50
    z = np.tile([1.5, 0.5], (n, 1))
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", np.zeros(n, np.int64))
    np.save(tmp_path / "w.npy", np.full(n, weight))
    given = ["--class-weights", f"{weight!r},{weight!r}"] if how == "class" else ["--sample-weights", str(tmp_path / "w.npy")]
    result = runner.invoke(app, ["check", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), *given, "--max-loss", "0.2"])
    assert result.exit_code == 2, result.stdout
    assert "lies outside" in result.stderr and "divide them by the largest" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("weight", [2.0**-300, 2.0**300])
def test_weights_at_the_edges_of_the_range_give_the_unweighted_mean(tmp_path, weight):
    n = 50
    np.save(tmp_path / "z.npy", np.tile([1.5, 0.5], (n, 1)))
    np.save(tmp_path / "y.npy", np.zeros(n, np.int64))
    result = runner.invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"),
                                 "--class-weights", f"{weight!r},{weight!r}", "--json"])
    assert result.exit_code == 0 and result.stderr == ""
    assert json.loads(result.stdout)["summary"]["loss_mean"] == pytest.approx(np.log1p(np.exp(-1.0)), rel=1e-15)


def test_a_class_weight_times_a_sample_weight_outside_the_range_is_refused(tmp_path):
    """2^-300 · 2^-300 = 2^-600: each weight in range, their product's square underflows to 0 and the
    interval had width 0 (check --gate-on upper passed on the point estimate)."""
    n = 200
    rng = np.random.default_rng(3)
    np.save(tmp_path / "z.npy", rng.standard_normal((n, 3)) * 3)
    np.save(tmp_path / "y.npy", rng.integers(0, 3, n))
    np.save(tmp_path / "w.npy", np.full(n, 2.0**-300))
    tiny = repr(2.0**-300)
    result = runner.invoke(app, ["check", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--sample-weights",
                                 str(tmp_path / "w.npy"), "--class-weights", f"{tiny},{tiny},{tiny}", "--max-loss", "9", "--gate-on", "upper"])
    assert result.exit_code == 2 and "class weight times its sample weight" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("extra", [["--class-weights", "1,1,1"], ["--sample-weights", "w"]])
def test_a_zero_probability_off_the_target_with_weights_is_no_nan(tmp_path, extra):
    """Probabilities with a 0 on a class that is not the target, and weights: the smoothing term
    0·Σ w_c log p_c was NaN without smoothing, the weighted mean n/a and check passed. Equal weights
    give the unweighted mean, −mean(log [0.7, 0.5, 0.8]); a weight-0 row of infinite loss warns of nothing."""
    p = np.array([[0.7, 0.3, 0.0], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.0, 1.0, 0.0]])
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 0]))
    np.save(tmp_path / "w.npy", np.array([1.0, 1.0, 1.0, 0.0]))
    args = [str(tmp_path / "w.npy") if a == "w" else a for a in extra]
    if extra[0] == "--class-weights":  # no weight-0 row: leave the last (infinite) row out by the ignore index
        np.save(tmp_path / "y.npy", np.array([0, 1, 2, -100]))
    result = runner.invoke(app, ["score", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "y.npy"), "--input", "probs", *args, "--json"])
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    assert json.loads(result.stdout)["summary"]["loss_mean"] == pytest.approx(-np.mean(np.log([0.7, 0.5, 0.8])), rel=1e-14)


def test_class_weight_files_take_comma_lists_and_only_numbers(tmp_path):
    """Found in review: a weights file holding "1,2,3,4,5" was refused with the hint "give a comma
    list like 1,2.5,0.5"; a JSON list [true, …] or ["1", …] was taken as numbers. A file line may
    be a comma list; a JSON list must hold numbers; the hint names a file's forms."""
    from typer.testing import CliRunner

    from xentcli.cli import app

    z = np.random.default_rng(0).normal(size=(10, 5))
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", np.arange(10) % 5)
    files = {"list.txt": "1,2,3,4,5\n", "lines.txt": "1\n2\n3\n4\n5\n", "bool.json": "[true, 1, 1, 1, 1]", "text.json": '["1", 1, 1, 1, 1]',
             "word.txt": "1\nx\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    run = lambda name: CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"),  # noqa: E731
                                                "--class-weights", str(tmp_path / name), "--json"])
    assert json.loads(run("list.txt").stdout)["summary"] == json.loads(run("lines.txt").stdout)["summary"]
    for name in ("bool.json", "text.json"):
        assert run(name).exit_code == 2 and "not a JSON list of numbers" in run(name).stderr
    assert run("word.txt").exit_code == 2 and "one weight per line, a comma list, or a JSON list" in run("word.txt").stderr
    (tmp_path / "semi.csv").write_text("logit_0;logit_1;label\n1;2;1\n")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "semi.csv")])
    assert result.exit_code == 2 and "xent reads comma-separated CSV" in result.stderr
