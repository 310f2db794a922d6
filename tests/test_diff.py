"""`xent diff` against independent references: scipy.stats.ttest_rel and statsmodels' exact
McNemar (numbers recorded once, source next to them), hand computations, and invariances."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reference import sparse_loss64
from typer.testing import CliRunner

from xentcli.cli import app

runner = CliRunner()


def _log_probs(losses: np.ndarray) -> np.ndarray:
    """Two-class log-probabilities whose loss for label 0 is exactly `losses`."""
    return np.stack([-losses, np.log(-np.expm1(-losses))], axis=1)


def _paired_losses():
    rng = np.random.default_rng(2026)
    base = rng.gamma(2.0, 0.5, 3000) + 0.01
    candidate = base * np.exp(rng.normal(0.02, 0.2, 3000))
    return base, candidate


def _write(folder: Path, name: str, scores, labels=None):
    np.save(folder / f"{name}.npy", np.asarray(scores))
    if labels is not None:
        np.save(folder / "y.npy", np.asarray(labels))
    return str(folder / f"{name}.npy")


def diff_json(*args):
    result = runner.invoke(app, ["diff", *map(str, args), "--json"])
    assert result.exit_code in (0, 1), (result.stdout, result.stderr)
    return json.loads(result.stdout), result.exit_code


@pytest.fixture
def losses_dump(tmp_path):
    base, candidate = _paired_losses()
    b = _write(tmp_path, "base", _log_probs(base), np.zeros(3000, np.int64))
    c = _write(tmp_path, "cand", _log_probs(candidate))
    return [b, c, "--labels", tmp_path / "y.npy", "--input", "log-probs"]


def test_paired_t_equals_ttest_rel(losses_dump):
    doc, code = diff_json(*losses_dump)
    loss = doc["metrics"]["loss_mean"]
    # scipy 1.17.1: ttest_rel(candidate, base) on _paired_losses(); confidence_interval(0.95)
    assert loss["delta"] == pytest.approx(0.04693659633325455, rel=1e-9)
    assert loss["se"] == pytest.approx(0.004933626412432777, rel=1e-9)
    assert loss["p_value"] == pytest.approx(3.650496261495756e-21, rel=1e-9)
    assert loss["ci"] == pytest.approx([0.037262962102105154, 0.05661023056440395], rel=1e-9)
    # (t_{0.975, 2999} + t_{0.8, 2999})·se, scipy 1.17.1: (1.9607553192053149 + 0.841741103582018) · 0.004933626412432777
    assert loss["min_detectable_delta"] == pytest.approx(0.01382647037221196, rel=1e-9)
    assert doc["pairing"] == {"by": "row", "key": None, "pairs": 3000, "usable_pairs": 3000, "nonfinite_pairs": 0,
                              "only_base": 0, "only_candidate": 0}
    base, candidate = _paired_losses()
    assert doc["metrics"]["perplexity"]["ratio"] == pytest.approx(math.exp(0.04693659633325455), rel=1e-9)
    assert doc["metrics"]["loss_mean"]["base"] == pytest.approx(base.mean(), rel=1e-12)
    assert code == 0


def test_confidence_option(losses_dump):
    doc, _ = diff_json(*losses_dump, "--confidence", "0.9")
    # scipy 1.17.1: ttest_rel(...).confidence_interval(0.9)
    assert doc["metrics"]["loss_mean"]["ci"] == pytest.approx([0.03881899551736357, 0.05505419714914553], rel=1e-9)
    assert doc["confidence"] == 0.9


def test_bootstrap_settings_and_median_interval(losses_dump):
    doc, _ = diff_json(*losses_dump)
    assert "bootstrap_ci" not in doc["metrics"]["loss_mean"]  # the cells' bootstrap understates the mean's spread
    assert doc["bootstrap"] == {"replicates": 1000, "seed": 0}
    p50 = doc["metrics"]["loss_p50"]
    assert p50["ci"][0] < p50["delta"] < p50["ci"][1]


def test_bootstrap_is_identical_across_chunks_threads_and_shards(tmp_path, losses_dump):
    whole, _ = diff_json(*losses_dump, "--chunk-rows", "100000", "--threads", "1")
    for rows, threads in (("7", "2"), ("1000", "1"), ("333", "2")):
        other, _ = diff_json(*losses_dump, "--chunk-rows", rows, "--threads", threads)
        for name in ("loss_p50", "loss_p90", "loss_p99"):
            assert other["metrics"][name] == whole["metrics"][name]  # bit-identical: integer histograms
    # shards: the candidate split into three Parquet files, paired with the NPY base by row order
    base, candidate = _paired_losses()
    folder = tmp_path / "shards"
    folder.mkdir()
    for i, part in enumerate(np.array_split(np.arange(3000), 3)):
        pq.write_table(pa.table({"log_probs": list(_log_probs(candidate[part])), "label": np.zeros(part.size, np.int64)}),
                       folder / f"part-{i}.parquet")
    pq.write_table(pa.table({"log_probs": list(_log_probs(base)), "label": np.zeros(3000, np.int64)}), tmp_path / "base.parquet")
    sharded, _ = diff_json(tmp_path / "base.parquet", folder, "--input", "log-probs", "--threads", "2")
    for name in ("loss_p50", "loss_p90", "loss_p99"):
        assert sharded["metrics"][name] == whole["metrics"][name]
    changed, _ = diff_json(*losses_dump, "--seed", "7")
    assert changed["metrics"]["loss_p90"]["ci"] != whole["metrics"]["loss_p90"]["ci"]


def _flips(tmp_path, b: int, c: int, both: int = 50, neither: int = 10):
    """Two-class logits: b rows right in base and wrong in candidate, c the reverse."""
    right, wrong = [2.0, 0.0], [0.0, 2.0]
    base = [right] * b + [wrong] * c + [right] * both + [wrong] * neither
    candidate = [wrong] * b + [right] * c + [right] * both + [wrong] * neither
    return [_write(tmp_path, "base", base, np.zeros(len(base), np.int64)), _write(tmp_path, "cand", candidate),
            "--labels", tmp_path / "y.npy"]


def test_exact_mcnemar_and_accuracy_interval(tmp_path):
    doc, _ = diff_json(*_flips(tmp_path, 15, 35))
    accuracy = doc["metrics"]["accuracy"]
    n = 15 + 35 + 60
    assert (accuracy["b"], accuracy["c"]) == (15, 35)
    assert accuracy["p_value"] == pytest.approx(0.00660045, rel=1e-6)  # the number (statsmodels, exact)
    assert accuracy["delta"] == pytest.approx(20 / n, rel=1e-12)
    half = 1.959963984540054 * math.sqrt(15 + 35 - 20**2 / n) / n  # delta ± z·√(b + c − (c − b)²/n)/n, by hand
    assert accuracy["ci"] == pytest.approx([20 / n - half, 20 / n + half], rel=1e-9)
    assert doc["flips"] == {"correct_to_wrong": 15, "wrong_to_correct": 35}


@pytest.mark.parametrize("docs", [["a", "a", "b", "c", "c", "c"], ["a", "a", None, "c", "c", "c"], [7, 7, None, 9, 9, 9]],
                         ids=["text", "text-and-null", "int-and-null"])
def test_clustered_standard_error_by_hand(tmp_path, docs):
    # 3 documents: d = [0.1, 0.3] in doc a, [0.2] in b, [-0.1, 0.0, 0.4] in c (losses base 1, candidate 1 + d);
    # a null document is a cluster of its own
    d = np.array([0.1, 0.3, 0.2, -0.1, 0.0, 0.4])
    for name, losses in (("base", np.ones(6)), ("cand", 1 + d)):
        pq.write_table(pa.table({"log_probs": list(_log_probs(losses)), "label": np.zeros(6, np.int64), "doc": docs}),
                       tmp_path / f"{name}.parquet")
    doc, _ = diff_json(tmp_path / "base.parquet", tmp_path / "cand.parquet", "--cluster", "doc")
    loss = doc["metrics"]["loss_mean"]
    # mean 0.15; S_a − 2·0.15 = 0.1, S_b − 0.15 = 0.05, S_c − 3·0.15 = −0.15; Σ² = 0.035
    # se = √(3/2 · 0.035)/6 = √0.0525/6
    assert loss["delta"] == pytest.approx(0.15, rel=1e-12)
    assert loss["se"] == pytest.approx(math.sqrt(0.0525) / 6, rel=1e-12)
    assert loss["clusters"] == 3 and loss["df"] == 2
    assert loss["se_unclustered"] == pytest.approx(np.std(d, ddof=1) / math.sqrt(6), rel=1e-12)


@pytest.mark.parametrize("text", [False, True], ids=["int-keys", "text-keys"])
def test_key_pairing_equals_row_pairing(tmp_path, losses_dump, text):
    base, candidate = _paired_losses()
    order = np.random.default_rng(5).permutation(3000)
    ids = np.array([f"doc-{i}" for i in range(3000)], dtype=object) if text else np.arange(3000)
    pq.write_table(pa.table({"log_probs": list(_log_probs(base)), "label": np.zeros(3000, np.int64), "id": ids}),
                   tmp_path / "b.parquet")
    pq.write_table(pa.table({"log_probs": list(_log_probs(candidate[order])), "label": np.zeros(3000, np.int64),
                             "id": ids[order]}), tmp_path / "c.parquet")
    keyed, _ = diff_json(tmp_path / "b.parquet", tmp_path / "c.parquet", "--key", "id", "--chunk-rows", "500")
    rows, _ = diff_json(*losses_dump)
    for name in ("loss_mean", "accuracy", "loss_p50", "loss_p90"):
        for field in ("delta", "ci", "p_value"):
            if field in rows["metrics"][name]:
                assert keyed["metrics"][name][field] == pytest.approx(rows["metrics"][name][field], rel=1e-9)
    assert keyed["regressed"][0]["key"] == ids[keyed["regressed"][0]["row"]]
    assert keyed["pairing"]["by"] == "key" and keyed["pairing"]["usable_pairs"] == 3000


def _refused(*args, code: str):
    result = runner.invoke(app, ["diff", *map(str, args)])
    assert result.exit_code == 2, result.stdout
    assert f"[{code}]" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    return result.stderr


def test_xe501_unpaired(tmp_path):
    np.save(tmp_path / "b.npy", np.zeros((5, 3)))
    np.save(tmp_path / "c.npy", np.zeros((4, 3)))
    np.save(tmp_path / "y.npy", np.zeros(5, np.int64))
    np.save(tmp_path / "y4.npy", np.zeros(4, np.int64))
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 3, "label": [0, 1, 0], "id": ["a", "b", "c"]}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 3, "label": [0, 1, 0], "id": ["a", "b", "z"]}), tmp_path / "c.parquet")
    assert "only in" in _refused(tmp_path / "b.parquet", tmp_path / "c.parquet", "--key", "id", code="XE501")
    # the candidate side streams: its pairs were written before the refusal, and -o leaves nothing
    _refused(tmp_path / "b.parquet", tmp_path / "c.parquet", "--key", "id", "-o", tmp_path / "d.parquet", "--chunk-rows", "1", code="XE501")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.npy", "b.parquet", "c.npy", "c.parquet", "y.npy", "y4.npy"]
    doc, _ = diff_json(tmp_path / "b.parquet", tmp_path / "c.parquet", "--key", "id", "--allow-unpaired")
    assert (doc["pairing"]["only_base"], doc["pairing"]["only_candidate"], doc["pairing"]["pairs"]) == (1, 1, 2)


@pytest.mark.parametrize("ids", ["text", "int"])
def test_keyed_delta_file_when_the_first_chunks_pair_nothing(tmp_path, ids):
    """`diff --key --allow-unpaired -o`: a candidate chunk that pairs no row still writes its (empty)
    batch with the key column's own type — int64 keys, or their text — so a file whose first chunks
    pair nothing, or nothing at all, is written (an empty batch once gave the key column Arrow's null
    type, which a Parquet column cannot be required with, nor cast to the next chunk's keys)."""
    key = (lambda i: f"k{i}") if ids == "text" else (lambda i: i)
    n = 100
    base_ids = [key(i) for i in range(n)]
    for name, cand_ids, pairs in (("none", [key(i + 1000) for i in range(n)], 0),
                                  ("late", [key(i + 1000) for i in range(50)] + [key(i) for i in range(50)], 50)):
        pq.write_table(pa.table({"logits": [[0.0, 1.0]] * n, "label": [0] * n, "id": base_ids}), tmp_path / "b.parquet")
        pq.write_table(pa.table({"logits": [[0.0, 1.0]] * n, "label": [0] * n, "id": cand_ids}), tmp_path / "c.parquet")
        out = tmp_path / f"d_{name}.parquet"
        result = runner.invoke(app, ["diff", str(tmp_path / "b.parquet"), str(tmp_path / "c.parquet"), "--key", "id", "--allow-unpaired",
                                     "-o", str(out), "--chunk-rows", "25", "--quiet"])
        assert result.exit_code in (0, 1), (result.stdout, result.stderr)
        table = pq.read_table(out)
        assert table.num_rows == pairs and table.column("key").to_pylist() == [key(i) for i in range(pairs)], name
        assert table.schema.field("key").type == (pa.string() if ids == "text" else pa.int64())


def test_xe501_row_counts(tmp_path):
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 5, "label": [0] * 5}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 4, "label": [0] * 4}), tmp_path / "c.parquet")
    assert "holds 4 rows but" in _refused(tmp_path / "b.parquet", tmp_path / "c.parquet", code="XE501")


def test_xe502_duplicate_keys(tmp_path):
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 3, "label": [0, 1, 0], "id": [1, 2, 2]}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 3, "label": [0, 1, 0], "id": [1, 2, 3]}), tmp_path / "c.parquet")
    _refused(tmp_path / "b.parquet", tmp_path / "c.parquet", "--key", "id", code="XE502")
    _refused(tmp_path / "c.parquet", tmp_path / "b.parquet", "--key", "id", "--allow-unpaired", code="XE502")


def test_xe502_a_key_the_base_lacks_repeated(tmp_path):
    """Found in review: a candidate key absent from the base, repeated (in one chunk or across
    chunks, text or integer keys), is XE502 as a repeat among paired keys is — even with
    --allow-unpaired, which otherwise pairs what it can."""
    for ids in ([0, 1, 2, 3, 99, 99], ["a", "b", "c", "d", "zz", "zz"], [0, 1, 99, 2, 3, 99]):
        base = [0, 1, 2, 3, 4, 5] if isinstance(ids[0], int) else ["a", "b", "c", "d", "e", "f"]
        pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 6, "label": [0] * 6, "id": base}), tmp_path / "b.parquet")
        pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 6, "label": [0] * 6, "id": ids}), tmp_path / "c.parquet")
        for chunk in ("1", "4", "100"):
            message = _refused(tmp_path / "b.parquet", tmp_path / "c.parquet", "--key", "id", "--allow-unpaired", "--chunk-rows", chunk,
                               code="XE502")
            assert "1 key appears more than once in " in message and "c.parquet (e.g. " in message and ("99" in message or "zz" in message)


def test_unusable_labels_on_both_sides_are_nonfinite_pairs(tmp_path):
    """Found in review: a pair whose label is unusable on both sides (out of range, NaN, a binary
    head's 2) has a NaN loss on both; it is a non-finite pair (XE505), which fails every gate, never
    left out unseen; unusable labels that differ (7 and 9) are XE503."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(40, 3)).astype(np.float32)
    y = rng.integers(0, 3, 40).astype(np.float64)
    zb, yb = rng.normal(size=40).astype(np.float32), rng.integers(0, 2, 40)
    yb[4] = 2
    for bad, (zz, yy) in ((7, (z, y)), (np.nan, (z, y)), (2, (zb, yb))):
        yy = yy.copy()
        if bad != 2:
            yy[0] = bad
        np.savez(tmp_path / "a.npz", logits=zz, labels=yy)
        np.savez(tmp_path / "b.npz", logits=zz * 1.01, labels=yy)
        result = runner.invoke(app, ["diff", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--json", "--fail-on-regression", "1"])
        doc = json.loads(result.stdout)
        assert result.exit_code == 1 and doc["pairing"]["nonfinite_pairs"] == 1 and doc["pairing"]["usable_pairs"] == 39, bad
        assert "XE505" in [d["code"] for d in doc["diagnostics"]]
    y2 = y.copy()
    y[0], y2[0] = 7, 9
    np.savez(tmp_path / "a.npz", logits=z, labels=y)
    np.savez(tmp_path / "b.npz", logits=z, labels=y2)
    assert "1 pair has different labels" in _refused(tmp_path / "a.npz", tmp_path / "b.npz", code="XE503")


def test_xe503_label_mismatch(tmp_path):
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 3, "label": [0, 1, 0]}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 3, "label": [0, 0, 0]}), tmp_path / "c.parquet")
    assert "rows 1/1" in _refused(tmp_path / "b.parquet", tmp_path / "c.parquet", code="XE503")


def test_xe504_class_count(tmp_path):
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 3, "label": [0, 1, 0]}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"logits": [[0.0, 1.0, 2.0]] * 3, "label": [0, 1, 0]}), tmp_path / "c.parquet")
    _refused(tmp_path / "b.parquet", tmp_path / "c.parquet", code="XE504")


def test_ignored_and_nonfinite_pairs(tmp_path):
    base = np.zeros((6, 3))
    candidate = np.zeros((6, 3))
    candidate[4, 0] = np.nan
    labels = np.array([0, 1, 2, -100, 1, 0])
    doc, code = diff_json(_write(tmp_path, "b", base, labels), _write(tmp_path, "c", candidate), "--labels", tmp_path / "y.npy")
    assert (doc["pairing"]["pairs"], doc["pairing"]["usable_pairs"], doc["pairing"]["nonfinite_pairs"]) == (6, 4, 1)
    assert "XE505" in {d["code"] for d in doc["diagnostics"]}
    failing, code = diff_json(tmp_path / "b.npy", tmp_path / "c.npy", "--labels", tmp_path / "y.npy", "--fail-on", "error")
    assert code == 1 and not failing["passed"]  # the candidate's XE101/XE401 are errors


@pytest.mark.parametrize("gate", [["--fail-on-regression", "1"], ["--require-noninferior", "1"], ["--max-accuracy-drop", "1"]])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_pairs_fail_every_gate(tmp_path, gate, bad):
    """Gates that the remaining pairs would pass (margins of 1) fail when a pair's loss is NaN or infinite on either side."""
    labels = np.array([0, 1, 2, 1, 0, 2])
    base, candidate = np.zeros((6, 3)), np.zeros((6, 3))
    candidate[2, 2 if bad == -np.inf else 0] = bad  # -inf on the target: an infinite loss
    for side in (base, candidate):
        doc, code = diff_json(_write(tmp_path, "b", base, labels), _write(tmp_path, "c", candidate), "--labels", tmp_path / "y.npy", *gate)
        assert doc["pairing"]["nonfinite_pairs"] == 1 and code == 1 and not doc["passed"]
        assert [g["passed"] for g in doc["gates"]] == [True, False] and doc["gates"][1]["gate"] == "nonfinite-pairs"
        base, candidate = candidate, base  # then the base side holds the bad row
    clean, code = diff_json(_write(tmp_path, "b", np.zeros((6, 3)), labels), _write(tmp_path, "c", np.zeros((6, 3))), "--labels", tmp_path / "y.npy", *gate)
    assert code == 0 and clean["passed"]


@pytest.mark.parametrize("gate,margin,passes", [
    ("--fail-on-regression", "0.03", True),   # lower bound 0.0373 > 0.03: a regression beyond 0.03 is shown
    ("--fail-on-regression", "0.04", False),
    ("--require-noninferior", "0.06", True),  # upper bound 0.0566 < 0.06
    ("--require-noninferior", "0.05", False),
])
def test_loss_gates_on_both_sides(losses_dump, gate, margin, passes):
    doc, code = diff_json(*losses_dump, gate, margin)
    expected_pass = passes if gate == "--require-noninferior" else not passes
    assert doc["passed"] is expected_pass and code == (0 if expected_pass else 1)
    assert doc["gates"][0]["gate"] == gate.lstrip("-")


@pytest.mark.parametrize("margin,passes", [("0.2", True), ("0.01", False)])
def test_accuracy_gate(tmp_path, margin, passes):
    doc, code = diff_json(*_flips(tmp_path, 35, 15), "--max-accuracy-drop", margin)  # accuracy drops by 20/110
    assert doc["passed"] is passes and code == (0 if passes else 1)


def test_per_pair_output(tmp_path):
    base = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    candidate = np.array([[0.0, 2.0], [0.0, 2.0], [1.0, 1.0]])
    labels = np.array([0, 1, -100])
    args = [_write(tmp_path, "b", base, labels), _write(tmp_path, "c", candidate), "--labels", tmp_path / "y.npy"]
    result = runner.invoke(app, ["diff", *map(str, args), "-o", str(tmp_path / "pairs.parquet")])
    assert result.exit_code == 0, result.stderr
    table = pq.read_table(tmp_path / "pairs.parquet").to_pydict()
    assert list(table) == ["row", "label", "loss_base", "loss_candidate", "delta", "correct_base", "correct_candidate"]
    low, high = math.log1p(math.exp(-2.0)), 2.0 + math.log1p(math.exp(-2.0))  # hand-derived two-class losses
    assert table["loss_base"][:2] == pytest.approx([low, low]) and table["loss_candidate"][0] == pytest.approx(high)
    assert table["delta"][0] == pytest.approx(high - low) and table["delta"][2] is None
    assert table["correct_base"] == [True, True, None] and table["correct_candidate"] == [False, True, None]


@pytest.mark.parametrize("mean", [1, 3, 64, 65, 500, 100_000])
def test_poisson_draws_have_poisson_moments(mean):
    from xentcli.compare import poisson_draws

    uniforms = (np.arange(200_000) + 0.5) / 200_000  # a stratified grid of uniforms: exact quantiles
    draws = poisson_draws(np.array([mean]), uniforms[None, :])[0].astype(np.float64)
    # a Poisson's mean, variance and third central moment all equal its mean (measured: within 2e-7, 2.2e-3 and
    # 7.5e-4 here; the third moment checks the Cornish-Fisher skew term above 64, which the mean and variance did not)
    assert draws.mean() == pytest.approx(mean, rel=1e-5)
    assert draws.var() == pytest.approx(mean, rel=5e-3)
    assert ((draws - draws.mean()) ** 3).mean() == pytest.approx(mean, rel=5e-3)


@pytest.mark.parametrize("replicates", [200, 201])  # an odd count leaves the last hash's low half unused
def test_c_bootstrap_equals_numpy_bootstrap(monkeypatch, replicates):
    from native_paths import require_c_extension

    from xentcli import native
    from xentcli.compare import Bootstrap
    from xentcli.sketch import QuantileSketch

    require_c_extension()
    rng = np.random.default_rng(3)
    base = rng.gamma(2.0, 0.5, 4000)
    candidate = base * np.exp(rng.normal(0, 0.05, 4000))
    sketch = QuantileSketch()
    state = Bootstrap(replicates, 11)
    keys = tuple(sketch.keys(losses) for losses in (base, candidate))
    state.update(keys)
    with_c = state.replicates_of(sketch, (0.5, 0.9))
    for threads in (2, 3, 7):  # threads split the replicates (the histograms' columns): the same counts
        split = state.replicates_of(sketch, (0.5, 0.9), threads)
        assert all(np.array_equal(split[name], with_c[name], equal_nan=True) for name in with_c)
    monkeypatch.setattr(native, "_LIBRARY", None)
    with_numpy = state.replicates_of(sketch, (0.5, 0.9))
    small = state.counts <= 64
    assert small.mean() > 0.5  # most cells take the exact inversion, the same in C and numpy
    for name in with_c:
        np.testing.assert_allclose(with_c[name], with_numpy[name], rtol=1e-9)


def test_key_types_must_agree(tmp_path):
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 3, "label": [0, 1, 0], "id": [1, 2, 3]}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 3, "label": [0, 1, 0], "id": ["1", "2", "3"]}), tmp_path / "c.parquet")
    assert "holds text, floats or uint64 in" in _refused(tmp_path / "b.parquet", tmp_path / "c.parquet", "--key", "id", code="XE501")


@pytest.mark.parametrize("option,value", [("--fail-on-regression", "nan"), ("--require-noninferior", "inf"),
                                          ("--max-accuracy-drop", "-0.1"), ("--max-accuracy-drop", "5"), ("--confidence", "1.5"),
                                          ("--bootstrap", "-1"), ("--class-weights", "1,2,3"), ("--weight-col", "w"),
                                          ("--sample-weights", "w.npy")])
def test_options_that_cannot_work_are_refused(losses_dump, option, value):
    result = runner.invoke(app, ["diff", *map(str, losses_dump), option, value])
    assert result.exit_code == 2 and option in result.stderr


def test_bootstrap_memory_follows_the_buckets_that_occur(tmp_path):
    """Losses of 1e-261 beside losses of 1 to 6 span ~60,000 sketch buckets: the replicate histograms
    hold only the buckets that occur (a dense range took 1.5 GB; the bench has the memory). Slots
    must still map back to their buckets: the median (rank 499.5 of 1000) lies among the 1e-261s,
    the p90 among the linspace values (float64 reference, within the sketch's 2% buckets)."""
    n = 1000
    loss = np.where(np.arange(n) % 2 == 0, 1e-261, np.linspace(1, 6, n))
    doc, _ = diff_json(_write(tmp_path, "b", np.stack([-loss, np.log(-np.expm1(-loss))], 1), np.zeros(n, np.int64)),
                       _write(tmp_path, "c", np.stack([-loss * 1.01, np.log(-np.expm1(-loss * 1.01))], 1)),
                       "--labels", tmp_path / "y.npy", "--input", "log-probs", "--bootstrap", "50")
    p50, p90 = doc["metrics"]["loss_p50"], doc["metrics"]["loss_p90"]
    assert p50["base"] == pytest.approx(1e-261, rel=0.02) and p50["candidate"] == pytest.approx(1.01e-261, rel=0.02)
    assert p90["base"] == pytest.approx(np.quantile(loss, 0.9), rel=0.02)


def _groups_of_pairs() -> np.ndarray:
    groups = np.arange(3000) % 7 % 4  # groups 0…3 of 850, 850, 850 and 425 rows…
    groups[:25] = 9  # …and a small one
    return groups


@pytest.mark.parametrize("extra", [[], ["--chunk-rows", "97", "--threads", "1"], ["--chunk-rows", "500", "--threads", "3"]])
def test_by_group_equals_a_float64_groupby(tmp_path, losses_dump, extra):
    np.save(tmp_path / "groups.npy", _groups_of_pairs())
    doc, _ = diff_json(*losses_dump, "--by-file", tmp_path / "groups.npy", *extra)
    base, candidate = _paired_losses()
    groups = _groups_of_pairs()
    by = {g["by"]["groups"]: g for g in doc["groups"]}
    assert sorted(by) == [0, 1, 2, 3, 9]
    for value, group in by.items():
        rows = groups == value
        d = candidate[rows] - base[rows]
        loss = group["loss_mean"]
        assert group["usable_pairs"] == group["pairs"] == rows.sum()
        assert loss["delta"] == pytest.approx(d.mean(), rel=1e-12)
        assert loss["se"] == pytest.approx(d.std(ddof=1) / math.sqrt(d.size), rel=1e-10)
        assert loss["base"] == pytest.approx(base[rows].mean(), rel=1e-12)
        assert loss["candidate"] == pytest.approx(candidate[rows].mean(), rel=1e-12)
        assert group["small"] == (rows.sum() < 30)
    # scipy 1.17.1: ttest_rel(candidate[g == 0], base[g == 0]) and its confidence_interval(0.95); same for g == 9
    assert by[0]["loss_mean"]["p_value"] == pytest.approx(1.3248918580559356e-06, rel=1e-9)
    assert by[0]["loss_mean"]["ci"] == pytest.approx([0.028263030961117763, 0.0664132544766515], rel=1e-9)
    assert by[9]["loss_mean"]["p_value"] == pytest.approx(0.1976496937569529, rel=1e-9)
    assert by[9]["loss_mean"]["ci"] == pytest.approx([-0.04426948105583199, 0.20303733858046008], rel=1e-9)
    # most regressed first; the small group last
    deltas = [g["loss_mean"]["delta"] for g in doc["groups"][:-1]]
    assert deltas == sorted(deltas, reverse=True) and doc["groups"][-1]["by"] == {"groups": 9}


def test_by_group_with_key_pairing_and_text_groups(tmp_path, losses_dump):
    """Groups come from the base side; with --key the candidate's rows may come in any order."""
    base, candidate = _paired_losses()
    groups = np.array(["en", "de", "fr", "ja", "[bold]x"], dtype=object)[np.minimum(_groups_of_pairs(), 4)]
    order = np.random.default_rng(7).permutation(3000)
    pq.write_table(pa.table({"log_probs": list(_log_probs(base)), "label": np.zeros(3000, np.int64), "id": np.arange(3000),
                             "lang": groups}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"log_probs": list(_log_probs(candidate[order])), "label": np.zeros(3000, np.int64),
                             "id": order}), tmp_path / "c.parquet")
    doc, _ = diff_json(tmp_path / "b.parquet", tmp_path / "c.parquet", "--key", "id", "--by", "lang", "--chunk-rows", "333")
    by = {g["by"]["lang"]: g for g in doc["groups"]}
    for value, group in by.items():
        d = (candidate - base)[groups == value]
        assert group["loss_mean"]["delta"] == pytest.approx(d.mean(), rel=1e-12)
        assert group["loss_mean"]["se"] == pytest.approx(d.std(ddof=1) / math.sqrt(d.size), rel=1e-10)
    result = runner.invoke(app, ["diff", str(tmp_path / "b.parquet"), str(tmp_path / "c.parquet"), "--key", "id", "--by", "lang"])
    assert "[bold]x" in result.stdout  # a group value is text, never markup


def test_by_group_pools_beyond_max_groups(tmp_path, losses_dump):
    np.save(tmp_path / "groups.npy", _groups_of_pairs())
    doc, _ = diff_json(*losses_dump, "--by-file", tmp_path / "groups.npy", "--max-groups", "2")
    base, candidate = _paired_losses()
    groups = _groups_of_pairs()
    assert [g["by"]["groups"] for g in doc["groups"]][-1] == "(other)"
    other = doc["groups"][-1]
    rest = ~np.isin(groups, [0, 1])  # the two largest groups are kept (0, 1 and 2 tie at 850 rows: by value)
    assert other["pooled_groups"] == 3 and other["usable_pairs"] == rest.sum()
    assert other["loss_mean"]["delta"] == pytest.approx((candidate - base)[rest].mean(), rel=1e-12)
    assert other["loss_mean"]["se"] == pytest.approx((candidate - base)[rest].std(ddof=1) / math.sqrt(rest.sum()), rel=1e-10)


def _group_record(name: str, delta: float, se: float, n: int = 1001, small: bool = False) -> dict:
    return {"by": {"g": name}, "usable_pairs": n, "small": small, "pooled_groups": 0,
            "loss_mean": {"delta": delta, "se": se, "df": n - 1, "ci": [delta - 1.96 * se, delta + 1.96 * se]},
            "accuracy": {"delta": 0.0, "b": 0, "c": 0}}


def test_group_gates_use_holm_across_groups():
    from xentcli.compare import _group_gates
    from xentcli.config import DiffGates
    from xentcli import stats

    # one-sided p of each group's Δ against the margin 0 (t with 1000 df):
    # a: t = 2.5 → p 0.0063 ≤ 0.025/3; b: t = 2.0 → p 0.023 > 0.025/2 (alone it would fail at 0.025); c: t = 1 → 0.16
    groups = [_group_record("a", 2.5, 1.0), _group_record("b", 2.0, 1.0), _group_record("c", 1.0, 1.0),
              _group_record("tiny", 50.0, 1.0, n=5, small=True)]
    assert stats.t_upper_p(2.0, 1000) < 0.025 and stats.t_upper_p(2.5, 1000) < 0.025 / 3 < stats.t_upper_p(2.2, 1000)
    checks, reasons = _group_gates(groups, DiffGates(fail_on_regression=0.0), 0.95)
    assert checks[0]["failed_groups"] == [{"g": "a"}] and checks[0]["groups_gated"] == 3 and not checks[0]["passed"]
    assert reasons == [f"group g=a: the loss got worse by more than 0: Δ +2.5 (Holm-adjusted p {3 * stats.t_upper_p(2.5, 1000):.3g})"]
    # the bound shown: the largest lower bound at Holm's first level α/m
    assert checks[0]["value"] == pytest.approx(2.5 - stats.t_quantile(1 - 0.025 / 3, 1000), rel=1e-12)
    checks, reasons = _group_gates(groups[1:], DiffGates(fail_on_regression=0.0), 0.95)
    assert checks[0]["passed"] and not reasons  # b alone fails a 2.5% test, not Holm's 1.25% with two groups
    # non-inferiority: every gated group's own upper bound must lie below the margin (no correction)
    checks, _ = _group_gates(groups, DiffGates(require_noninferior=5.0), 0.95)
    assert checks[0]["passed"] and checks[0]["value"] == pytest.approx(2.5 + 1.96)
    checks, _ = _group_gates(groups, DiffGates(require_noninferior=4.0), 0.95)
    assert checks[0]["failed_groups"] == [{"g": "a"}]
    # no group large enough: the gate cannot pass
    checks, reasons = _group_gates(groups[3:], DiffGates(fail_on_regression=0.0), 0.95)
    assert not checks[0]["passed"] and "no group has --min-group usable pairs" in reasons[0]


def test_by_group_accuracy_gate(tmp_path):
    """Group a: 40 flips right → wrong of 100 pairs; group b: none. The accuracy Δ of a is −0.4."""
    labels = np.zeros(200, np.int64)
    right, wrong = np.log([0.9, 0.1]), np.log([0.1, 0.9])
    base = np.tile(right, (200, 1))
    candidate = base.copy()
    candidate[:40] = wrong
    np.save(tmp_path / "g.npy", np.repeat(["a", "b"], 100))
    b, c = _write(tmp_path, "base", base, labels), _write(tmp_path, "cand", candidate)
    args = [b, c, "--labels", tmp_path / "y.npy", "--input", "log-probs", "--by-file", tmp_path / "g.npy"]
    doc, code = diff_json(*args, "--max-accuracy-drop", "0.2")
    a = next(g for g in doc["groups"] if g["by"]["g"] == "a")
    assert a["accuracy"]["delta"] == pytest.approx(-0.4) and a["accuracy"]["b"] == 40
    # Wald se of a paired difference: √(b + c − (c − b)²/n)/n = √(40 − 16)/100
    assert a["accuracy"]["ci"] == pytest.approx([-0.4 - 1.959963984540054 * math.sqrt(24) / 100,
                                                 -0.4 + 1.959963984540054 * math.sqrt(24) / 100], rel=1e-9)
    gate = next(g for g in doc["gates"] if g["gate"].startswith("max-accuracy-drop by group"))
    assert code == 1 and gate["failed_groups"] == [{"g": "a"}]
    doc, code = diff_json(*args, "--max-accuracy-drop", "0.6")
    assert code == 0


def test_by_group_refused_with_clusters(tmp_path):
    pq.write_table(pa.table({"log_probs": list(_log_probs(np.ones(4))), "label": np.zeros(4, np.int64), "doc": [1, 1, 2, 2],
                             "g": ["x", "x", "y", "y"]}), tmp_path / "b.parquet")
    result = runner.invoke(app, ["diff", str(tmp_path / "b.parquet"), str(tmp_path / "b.parquet"), "--by", "g", "--cluster", "doc"])
    assert result.exit_code == 2 and "--by with clustered rows" in result.stderr


def test_diff_outputs_are_checked_before_the_run(losses_dump, tmp_path):
    (tmp_path / "r.html").write_text("keep")
    result = runner.invoke(app, ["diff", *map(str, losses_dump), "-o", str(tmp_path / "d.parquet"), "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert not (tmp_path / "d.parquet").exists() and (tmp_path / "r.html").read_text() == "keep"
    result = runner.invoke(app, ["diff", *map(str, losses_dump), "-o", str(tmp_path / "x.html"), "--report", str(tmp_path / "x.html")])
    assert result.exit_code == 2 and "-o and --report name the same file" in result.stderr


def test_c_unique_counts_equal_numpy_unique():
    """The bootstrap's cells are counted by a radix sort in C: the same distinct values and counts as
    np.unique(return_counts=True), over the whole int64 range, repeats, one value, none."""
    from native_paths import require_c_extension

    from xentcli import native

    require_c_extension()
    rng = np.random.default_rng(8)
    cases = [np.array([], np.int64), np.array([5]), np.array([3, 3, 3]), np.array([-2**63, 2**63 - 1, 0, -2**63, 7]),
             rng.integers(-2**63, 2**63 - 1, 100_000, dtype=np.int64), rng.integers(0, 5, 1000) << 40,
             rng.integers(0, 1500, 200_000) * (1 << 21) + rng.integers(0, 1500, 200_000)]
    for values in cases:
        got = native.unique_counts(values.copy())
        want = np.unique(values, return_counts=True)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_the_largest_poisson_draw_respects_the_histograms_bound():
    """The C bootstrap keeps int32 histograms when 159 × pairs < 2^31, relying on every draw for a
    cell of m pairs being at most 9·m + 150 (the largest 32-bit uniform, 1 − 2^-32)."""
    from xentcli.compare import poisson_draws

    m = np.array([1, 2, 10, 63, 64, 65, 100, 1000, 10**6, 10**9])
    k = poisson_draws(m, np.full((m.size, 1), 1 - 2**-32))[:, 0]
    assert np.all(k <= 9 * m + 150) and np.all(k >= m)


def test_bootstrap_cells_merge_in_order():
    """Bootstrap._add: distinct sorted cells merged into those held (some held already, some new,
    before, between and after them) give the sorted union with summed counts, as a dict would."""
    from collections import Counter

    from xentcli.compare import Bootstrap

    rng = np.random.default_rng(12)
    state, want = Bootstrap(10, 0), Counter()
    for _ in range(6):
        cells = np.unique(rng.integers(-50, 50, rng.integers(1, 40)))
        counts = rng.integers(1, 9, cells.size)
        state._add(cells, counts)
        want.update(dict(zip(cells.tolist(), counts.tolist())))
    assert state.cells.tolist() == sorted(want) and state.counts.tolist() == [want[c] for c in sorted(want)]


@pytest.mark.parametrize(("base_ids", "candidate_ids", "pairs"), [
    (pa.array([1, 2, 2**63 + 5], pa.uint64()), pa.array([2**63 + 5, 2, 1], pa.uint64()), 3),  # uint64: decimal text in every chunk
    (pa.array([1.0, -0.0, 2.5]), pa.array([0.0, 2.5, 1.0]), 3),  # -0.0 and 0.0 are one key
    (pa.array([1.0, 2.0, 1e300]), pa.array([1e300, 2.0, 1.0]), 3),
    (pa.array([0.1, 2.5, 7.0], pa.float32()), pa.array([7.0, 0.1, 2.5]), 3),  # float32 0.1 pairs with float64 0.1
    # binary keys (found in review: decoded with backslashreplace, b"\xff" and the four bytes "\\xff" were one key)
    (pa.array([b"\xff", b"a", b"b"]), pa.array([b"\\xff", b"a", b"b"]), 2),
    (pa.array([b"\xff", b"a", b"b"]), pa.array(["\\xff", "a", "b"]), 2),  # nor the text "\xff"
    (pa.array([b"\xff", b"a", b"b"]), pa.array(["\xff", "a", "b"]), 2),  # nor "ÿ" (the byte as Latin-1)
    (pa.array([b"\xc3\xbf", b"a", b"b"]), pa.array(["\xff", "a", "b"]), 3),  # "ÿ" in UTF-8 is the text "ÿ"
    (pa.array([b"\xff", b"\xfe", b"b"]), pa.array([b"\xfe", b"b", b"\xff"]), 3),
])
def test_numeric_keys_pair_by_value(tmp_path, base_ids, candidate_ids, pairs):
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 3, "label": [0, 0, 0], "id": base_ids}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 3, "label": [0, 0, 0], "id": candidate_ids}), tmp_path / "c.parquet")
    result = runner.invoke(app, ["diff", str(tmp_path / "b.parquet"), str(tmp_path / "c.parquet"), "--key", "id", "--json",
                                 *(["--allow-unpaired"] if pairs < 3 else [])])
    assert result.exit_code in (0, 1), (result.stderr, result.exception)
    assert json.loads(result.stdout)["pairing"]["usable_pairs"] == pairs


def test_npz_byte_string_keys_pair_by_their_bytes(tmp_path):
    """Found in review: an NPZ key array of byte strings (dtype S) was decoded as ASCII: an internal
    error (exit 3) on b"\\xff". Its keys pair as Arrow's binary keys do: by their bytes."""
    z = np.random.default_rng(0).normal(size=(4, 3))
    np.savez(tmp_path / "b.npz", logits=z, label=np.array([0, 1, 2, 0]), id=np.array([b"\xff", b"a", b"\xc3\xbf", b"c"]))
    np.savez(tmp_path / "c.npz", logits=z[::-1] + 0.5, label=np.array([0, 2, 1, 0]), id=np.array([b"c", b"\xc3\xbf", b"a", b"\xff"]))
    result = runner.invoke(app, ["diff", str(tmp_path / "b.npz"), str(tmp_path / "c.npz"), "--score-key", "logits", "--label-key", "label",
                                 "--key", "id", "--json"])
    assert result.exit_code in (0, 1), (result.stderr, result.exception)
    assert json.loads(result.stdout)["pairing"]["usable_pairs"] == 4


def test_binary_keys_are_written_and_shown_with_their_bytes_escaped(tmp_path):
    """Keys of undecodable bytes pair with themselves only; the pairs file (-o) and the examples
    show such a byte as \\xNN (a lone surrogate could not be written: an internal error)."""
    ids = pa.array([b"\xff", b"a\x80", b"ok"])
    for name, order in (("b", [0, 1, 2]), ("c", [2, 0, 1])):
        pq.write_table(pa.table({"logits": [[0.0, 1.0 + i] for i in order], "label": [0, 0, 0], "id": ids.take(order)}),
                       tmp_path / f"{name}.parquet")
    result = runner.invoke(app, ["diff", str(tmp_path / "b.parquet"), str(tmp_path / "c.parquet"), "--key", "id", "--json",
                                 "-o", str(tmp_path / "pairs.parquet")])
    assert result.exit_code in (0, 1), (result.stderr, result.exception)
    assert json.loads(result.stdout)["pairing"]["usable_pairs"] == 3
    assert pq.read_table(tmp_path / "pairs.parquet").column("key").to_pylist() == ["ok", "\\xff", "a\\x80"]  # candidate order
    pq.write_table(pa.table({"logits": [[0.0, 1.0]], "label": [0], "id": pa.array([b"\xfe"])}), tmp_path / "d.parquet")
    unpaired = runner.invoke(app, ["diff", str(tmp_path / "b.parquet"), str(tmp_path / "d.parquet"), "--key", "id", "--json",
                                   "--allow-unpaired"])
    assert unpaired.exit_code in (0, 1), (unpaired.stderr, unpaired.exception)
    assert {k: json.loads(unpaired.stdout)["pairing"][k] for k in ("usable_pairs", "only_base", "only_candidate")} == \
        {"usable_pairs": 0, "only_base": 3, "only_candidate": 1}
    refused = runner.invoke(app, ["diff", str(tmp_path / "b.parquet"), str(tmp_path / "d.parquet"), "--key", "id"])
    assert refused.exit_code == 2 and "XE501" in refused.stderr and "xfe" in refused.stderr and "xff" in refused.stderr
    # a byte shows as \xNN, the text \xNN with its backslash doubled (found in review: both showed as \\xNN)
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 2, "label": [0, 0], "id": ["\\xfe", "ok"]}), tmp_path / "t.parquet")
    shown = runner.invoke(app, ["diff", str(tmp_path / "d.parquet"), str(tmp_path / "t.parquet"), "--key", "id"]).stderr
    assert "d.parquet (e.g. \\xfe)" in shown and "t.parquet (e.g. \\\\xfe, ok)" in shown, shown
    table = runner.invoke(app, ["diff", str(tmp_path / "b.parquet"), str(tmp_path / "c.parquet"), "--key", "id"], terminal_width=160).stdout
    assert " \\xff " in table and "\\\\x" not in table, table


@pytest.mark.parametrize(("ids", "says"), [(pa.array([1.0, float("nan"), 3.0]), "holds NaN"), (pa.array([1, None, 3]), "holds nulls")])
def test_null_and_nan_keys_are_refused_naming_the_file(tmp_path, ids, says):
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 3, "label": [0, 1, 0], "id": [1.0, 2.0, 3.0]}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 3, "label": [0, 1, 0], "id": ids}), tmp_path / "c.parquet")
    result = runner.invoke(app, ["diff", str(tmp_path / "b.parquet"), str(tmp_path / "c.parquet"), "--key", "id"])
    assert result.exit_code == 2 and says in result.stderr and "c.parquet" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_uint64_keys_beyond_int64_in_small_chunks(tmp_path):
    """A uint64 key of 2^63 + 5 in one chunk made that chunk's keys text and the others' integers:
    the base index mixed them and crashed (exit 3)."""
    rng = np.random.default_rng(1)
    ids = np.arange(40, dtype=np.uint64)
    ids[-1] = 2**63 + 5
    pq.write_table(pa.table({"id": pa.array(ids, pa.uint64()), "logits": list(rng.standard_normal((40, 3))),
                             "label": rng.integers(0, 3, 40)}), tmp_path / "u.parquet")
    result = runner.invoke(app, ["diff", str(tmp_path / "u.parquet"), str(tmp_path / "u.parquet"), "--key", "id", "--chunk-rows", "7",
                                 "--json"])
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert json.loads(result.stdout)["pairing"]["usable_pairs"] == 40


def test_dictionary_encoded_keys_pair_as_their_values(tmp_path):
    """A pandas Categorical key column in Feather is dictionary<int64>: keyed by its values' type
    (integers), it pairs with the int64 keys of a Parquet file (it was text, and refused)."""
    import pyarrow.feather as feather

    ids = pa.array([3, 1, 2]).dictionary_encode()
    feather.write_feather(pa.table({"logits": [[0.0, 1.0]] * 3, "label": [0, 0, 0], "id": ids}), str(tmp_path / "b.arrow"))
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 3, "label": [0, 0, 0], "id": [2, 3, 1]}), tmp_path / "c.parquet")
    result = runner.invoke(app, ["diff", str(tmp_path / "b.arrow"), str(tmp_path / "c.parquet"), "--key", "id", "--json"])
    assert result.exit_code in (0, 1), (result.stderr, result.exception)
    assert json.loads(result.stdout)["pairing"]["usable_pairs"] == 3


def test_paired_sums_are_the_same_bits_in_any_chunk_and_the_base_is_scores_mean(tmp_path):
    """diff merged each chunk's mean of d (Chan) and summed each side's losses in float: its numbers
    moved in the last digits with --chunk-rows, and its base mean differed from `score`'s (found in
    review). They now come from the exact row blocks `score` uses; against a float64 reference
    (numpy: the mean of d, std(d, ddof=1)/√n) to 1e-12."""
    rng = np.random.default_rng(7)
    n = 1000
    a, b = rng.normal(size=(n, 4)) * 3, rng.normal(size=(n, 4)) * 3
    y = rng.integers(0, 4, n)
    for name, value in (("a.npy", a), ("b.npy", b), ("y.npy", y)):
        np.save(tmp_path / name, value)
    runs = []
    for rows in (7, 100, 1000):
        result = CliRunner().invoke(app, ["diff", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--labels", str(tmp_path / "y.npy"),
                                          "--chunk-rows", str(rows), "--json"])
        assert result.exit_code in (0, 1), result.output
        runs.append(json.loads(result.stdout)["metrics"]["loss_mean"])
    assert runs[0] == runs[1] == runs[2]
    score = CliRunner().invoke(app, ["score", str(tmp_path / "a.npy"), "--labels", str(tmp_path / "y.npy"), "--json"])
    assert runs[0]["base"] == json.loads(score.stdout)["summary"]["loss_mean"]

    def loss(z):
        m = z.max(axis=1, keepdims=True)
        return (m[:, 0] + np.log(np.exp(z - m).sum(axis=1))) - z[np.arange(n), y]

    d = loss(b) - loss(a)
    assert runs[0]["delta"] == pytest.approx(d.mean(), rel=1e-12)
    assert runs[0]["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(n), rel=1e-12)


def test_labels_stored_as_target_rows_on_one_side_pair(tmp_path):
    """Found in review: the same labels stored as class indices on one side and one-hot rows (or a
    binary head's 0/1 targets against a two-class softmax) on the other were XE503. They pair; a row
    that is not the label's one-hot (a soft one) is still XE503, and the message says which side has
    target rows."""
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(20, 3)).astype(np.float32), rng.integers(0, 3, 20)
    zb, yb = rng.normal(size=20).astype(np.float32), rng.integers(0, 2, 20)
    np.savez(tmp_path / "a.npz", logits=z, labels=y)
    np.savez(tmp_path / "b.npz", logits=z * 1.1, labels=np.eye(3, dtype=np.float32)[y])
    np.savez(tmp_path / "ba.npz", logits=zb, labels=yb)
    np.savez(tmp_path / "bb.npz", logits=np.stack([np.zeros(20, np.float32), zb * 1.1], axis=1), labels=yb)
    for base, candidate, want in (("a", "b", sparse_loss64(z * 1.1, y) - sparse_loss64(z, y)),
                                  ("ba", "bb", np.logaddexp(0, np.where(yb == 1, -1.1, 1.1) * zb) - np.logaddexp(0, np.where(yb == 1, -1, 1) * zb))):
        doc, _ = diff_json(tmp_path / f"{base}.npz", tmp_path / f"{candidate}.npz")
        assert doc["pairing"]["usable_pairs"] == 20
        assert doc["metrics"]["loss_mean"]["delta"] == pytest.approx(want.mean(), rel=1e-5, abs=1e-7)  # float32 scores
    soft = np.eye(3, dtype=np.float32)[y]
    soft[2] = [0.5, 0.5, 0.0]
    np.savez(tmp_path / "c.npz", logits=z, labels=soft)
    message = _refused(tmp_path / "a.npz", tmp_path / "c.npz", code="XE503")
    assert "1 pair has different labels" in message and "the candidate has target rows" in message


def test_multilabel_pairs_name_no_label(tmp_path):
    """Found in review: a multi-label diff showed label 0 on every regressed row and in -o. A
    multi-label row has no one label: no `label` in the rows, the table or the per-pair file."""
    rng = np.random.default_rng(2)
    z, t = rng.normal(size=(40, 3)).astype(np.float32), (rng.random((40, 3)) < 0.5).astype(np.float32)
    np.savez(tmp_path / "a.npz", logits=z, labels=t)
    np.savez(tmp_path / "b.npz", logits=z * 1.2, labels=t)
    out = tmp_path / "d.parquet"
    doc, _ = diff_json(tmp_path / "a.npz", tmp_path / "b.npz", "--head", "sigmoid", "-o", out)
    assert doc["regressed"] and all("label" not in row for row in doc["regressed"] + doc["improved"])
    assert "label" not in pq.read_table(out).column_names
    table = runner.invoke(app, ["diff", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--head", "sigmoid"], terminal_width=160).stdout
    assert " row  loss base  loss candidate" in table
    doc, _ = diff_json(tmp_path / "a.npz", tmp_path / "a.npz")  # the same logits as a softmax over 3 classes: dense targets, a label
    assert all("label" in row for row in doc["regressed"])


def test_messages_name_diffs_own_options_and_causes(tmp_path):
    """Found in review: a --cluster column missing on the base (whose values name the clusters) said
    "check --group-col" (score's option), and gates over no usable pairs (every label the ignore index) failed saying "the
    interval's lower bound is nan"."""
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(10, 3)), rng.integers(0, 3, 10)
    pq.write_table(pa.table({"logits": list(z), "label": y, "doc": np.arange(10) // 2}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"logits": list(z * 1.1), "label": y}), tmp_path / "b.parquet")
    result = runner.invoke(app, ["diff", str(tmp_path / "b.parquet"), str(tmp_path / "a.parquet"), "--cluster", "doc"])
    message = result.stderr
    assert result.exit_code == 2 and len(message.strip().splitlines()) == 1
    assert "no column 'doc'" in message and "check --cluster" in message and "--group-col" not in message
    np.savez(tmp_path / "e1.npz", logits=z, labels=np.full(10, -100))
    np.savez(tmp_path / "e2.npz", logits=z * 1.1, labels=np.full(10, -100))
    result = runner.invoke(app, ["diff", str(tmp_path / "e1.npz"), str(tmp_path / "e2.npz"), "--fail-on-regression", "0",
                                 "--require-noninferior", "0.1"])
    assert result.exit_code == 1
    assert "fail-on-regression 0 is undefined (no usable pairs)" in result.stdout and "lower bound is nan" not in result.stdout
    assert "require-noninferior 0.1 is undefined (no usable pairs)" in result.stdout


def test_a_group_gate_fails_on_a_group_it_cannot_judge(tmp_path):
    """Found in review: diff --by … --require-noninferior with --min-group 1 left a group of one pair
    (no standard error; its Δ +2.13) out of the intersection–union test and passed "every group".
    A group the gate must judge and cannot makes it fail, naming the group, for each group gate
    (as check's --max-group-gap does)."""
    rng = np.random.default_rng(14)
    g = np.array(["a"] * 50 + ["b"] * 50 + ["z"])
    n = len(g)
    zb = np.zeros((n, 3))
    zb[:, 0] = 1 + rng.normal(size=n) * 0.3
    zc = zb.copy()
    zc[:, 0] += 0.5
    zc[-1, 0] = zb[-1, 0] - 3
    for z, name in ((zb, "b.parquet"), (zc, "c.parquet")):
        pq.write_table(pa.table({"logits": list(z), "label": np.zeros(n, np.int64), "grp": list(g)}), tmp_path / name)
    for gate in (["--require-noninferior", "0.01"], ["--fail-on-regression", "5"], ["--max-accuracy-drop", "0.5"]):
        result = runner.invoke(app, ["diff", str(tmp_path / "b.parquet"), str(tmp_path / "c.parquet"), "--by", "grp", "--min-group", "1", *gate])
        assert result.exit_code == 1 and "group grp=z (1 usable pair) has no standard error" in result.stdout, (gate, result.stdout[-400:])


def test_bootstrap_intervals_need_replicates_in_their_tails(tmp_path):
    """Found in review: --bootstrap 1 gave the p50 delta a "95% CI" of zero width that did not hold
    the delta, and --confidence 0.999999 from 1,000 replicates their minimum and maximum. With fewer
    than 5 replicates beyond an end (B·(1 − c)/2 < 5) the quantiles' intervals are null."""
    rng = np.random.default_rng(36)
    z, y = rng.normal(size=(400, 3)), rng.integers(0, 3, 400)
    np.save(tmp_path / "b.npy", z)
    np.save(tmp_path / "c.npy", z * 1.1)
    np.save(tmp_path / "y.npy", y)
    args = [tmp_path / "b.npy", tmp_path / "c.npy", "--labels", tmp_path / "y.npy"]
    for extra, given in ((["--bootstrap", "1"], False), (["--bootstrap", "199"], False), (["--bootstrap", "200"], True),
                         (["--confidence", "0.999999"], False),
                         (["--confidence", "0.9", "--bootstrap", "100"], True)):  # 100 × 0.05 is 4.999999999999999 in floats
        doc, _ = diff_json(*args, *extra)
        assert all((doc["metrics"][q]["ci"] is not None) == given for q in ("loss_p50", "loss_p90", "loss_p99")), extra
    # the table says why (found in review: "—" without a word); --seed without a bootstrap is refused
    text = runner.invoke(app, ["diff", *map(str, args), "--bootstrap", "10"])
    assert "--bootstrap 200 or more at 0.95" in " ".join(text.stdout.split())
    off = runner.invoke(app, ["diff", *map(str, args), "--bootstrap", "0"])
    assert "intervals are off (--bootstrap 0)" in " ".join(off.stdout.split())
    seeded = runner.invoke(app, ["diff", *map(str, args), "--bootstrap", "0", "--seed", "3"])
    assert seeded.exit_code == 2 and "--seed does nothing here" in seeded.stderr


def test_clustered_accuracy_interval_by_hand(tmp_path):
    """With --cluster the accuracy delta's interval is clustered too (it treated the rows as
    independent). e = right in the candidate − right in the base per pair, by document:
    a [1, 1, 0], b [−1, 0], c [1, 0, 0], d [0, 1]: n = 10, delta = 0.3 (b = 1, c = 4);
    S_g − n_g·0.3 = 1.1, −1.6, 0.1, 0.4, Σ² = 3.94; se = √(4/3 · 3.94)/10;
    t_{0.975, 3} = 3.182446305284263 (scipy.stats.t.ppf(0.975, 3))."""
    e = np.array([1, 1, 0, -1, 0, 1, 0, 0, 0, 1])
    both_right = np.array([0, 0, 1, 0, 0, 0, 1, 0, 0, 0], bool)  # the other e = 0 pairs are wrong on both sides
    right, wrong = 0.1, 2.0  # two classes, label 0: right when the loss is below log 2
    base = np.where(e == 1, wrong, np.where(e == -1, right, np.where(both_right, right, wrong)))
    candidate = np.where(e == 1, right, np.where(e == -1, wrong, np.where(both_right, right, wrong)))
    docs = ["a"] * 3 + ["b"] * 2 + ["c"] * 3 + ["d"] * 2
    for name, losses in (("base", base), ("cand", candidate)):
        pq.write_table(pa.table({"log_probs": list(_log_probs(losses)), "label": np.zeros(10, np.int64), "doc": docs}),
                       tmp_path / f"{name}.parquet")
    doc, _ = diff_json(tmp_path / "base.parquet", tmp_path / "cand.parquet", "--cluster", "doc")
    accuracy = doc["metrics"]["accuracy"]
    assert (accuracy["b"], accuracy["c"], accuracy["clusters"]) == (1, 4, 4)
    se = math.sqrt(4 / 3 * 3.94) / 10
    assert accuracy["delta"] == pytest.approx(0.3, rel=1e-12) and accuracy["se"] == pytest.approx(se, rel=1e-12)
    assert accuracy["ci"] == pytest.approx([0.3 - 3.182446305284263 * se, 0.3 + 3.182446305284263 * se], rel=1e-9)
    unclustered, _ = diff_json(tmp_path / "base.parquet", tmp_path / "cand.parquet")
    half = 1.959963984540054 * math.sqrt(5 - 9 / 10) / 10  # Wald: z·√(b + c − (c − b)²/n)/n
    assert unclustered["metrics"]["accuracy"]["ci"] == pytest.approx([0.3 - half, 0.3 + half], rel=1e-9)
    assert "clusters" not in unclustered["metrics"]["accuracy"]


def test_a_flat_side_against_a_sequence_side_is_refused(tmp_path):
    """Found in review: only the base's layout decided the clustering, so a flat base against an
    [N, T, C] candidate got an unclustered interval 4x too narrow and --require-noninferior passed."""
    rng = np.random.default_rng(23)
    z = rng.normal(size=(10, 8, 4)).astype(np.float32)
    y = rng.integers(0, 4, (10, 8))
    np.savez(tmp_path / "seq.npz", logits=z, labels=y)
    np.savez(tmp_path / "flat.npz", logits=z.reshape(-1, 4), labels=y.reshape(-1))
    for pair in (("flat.npz", "seq.npz"), ("seq.npz", "flat.npz")):
        result = runner.invoke(app, ["diff", *(str(tmp_path / p) for p in pair), "--require-noninferior", "0.02"])
        assert result.exit_code == 2 and "holds rows and the other side sequences" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_binary_head_against_its_two_class_softmax_is_no_change(tmp_path):
    """Found in review: one model as a sigmoid head (logit s) and as a two-class softmax ([0, s])
    showed an accuracy change of −0.1 (McNemar p 0.02, FAIL) from ten exact ties, where the sigmoid
    head predicts 1 (p ≥ 0.5) and the softmax's argmax 0. Paired with a binary head, the softmax side
    predicts by the same rule: every delta is 0."""
    rng = np.random.default_rng(6)
    s = rng.normal(size=200).astype(np.float32)
    s[:10] = 0
    y = rng.integers(0, 2, 200)
    y[:9], y[9] = 1, 0
    pq.write_table(pa.table({"logit": s, "label": y}), tmp_path / "binary.parquet")
    pq.write_table(pa.table({"logits": pa.array([[0.0, float(v)] for v in s], pa.list_(pa.float32())), "label": y}),
                   tmp_path / "softmax.parquet")
    want = float(np.mean((s >= 0) == (y == 1)))  # the sigmoid head's accuracy at 0.5, ties to class 1
    for pair in (("binary", "softmax"), ("softmax", "binary")):
        doc, code = diff_json(*(tmp_path / f"{p}.parquet" for p in pair), "--max-accuracy-drop", "0.02")
        accuracy = doc["metrics"]["accuracy"]
        assert code == 0 and (accuracy["b"], accuracy["c"], accuracy["delta"]) == (0, 0, 0.0)
        assert accuracy["base"] == accuracy["candidate"] == pytest.approx(want, rel=1e-15)


@pytest.mark.parametrize("layout", ["zero-and-z", "halves", "probabilities"])
def test_a_binary_head_and_its_two_class_softmax_share_the_threshold(tmp_path, layout):
    """README: paired with a binary head, the two-class softmax side predicts class 1 when p_1 ≥
    --threshold. `diff --threshold 0.7` was refused there ("--threshold does nothing here": each
    side judged the option alone; found in review, 2026-12-03). Both sides now have the sigmoid
    head's accuracy at 0.7 (reference: numpy, p = 1/(1 + e^-s) in float64) and no flips; two
    softmax dumps still refuse it (one line, exit 2)."""
    rng = np.random.default_rng(9)
    s = rng.normal(size=300) * 2
    y = rng.integers(0, 2, 300)
    p = 1 / (1 + np.exp(-s))
    pq.write_table(pa.table({"logit": s, "label": y}), tmp_path / "binary.parquet")
    rows = {"zero-and-z": [[0.0, v] for v in s], "halves": [[-v / 2, v / 2] for v in s], "probabilities": [[1 - q, q] for q in p]}[layout]
    name = "probs" if layout == "probabilities" else "logits"
    pq.write_table(pa.table({name: rows, "label": y}), tmp_path / "softmax.parquet")
    want = float(np.mean((p >= 0.7) == (y == 1)))
    assert want != float(np.mean((p >= 0.5) == (y == 1)))  # the threshold shows
    for pair in (("binary", "softmax"), ("softmax", "binary")):
        doc, code = diff_json(*(tmp_path / f"{side}.parquet" for side in pair), "--threshold", "0.7")
        accuracy = doc["metrics"]["accuracy"]
        assert code == 0 and (accuracy["b"], accuracy["c"]) == (0, 0), pair
        assert accuracy["base"] == accuracy["candidate"] == pytest.approx(want, rel=1e-15)
    result = runner.invoke(app, ["diff", str(tmp_path / "softmax.parquet"), str(tmp_path / "softmax.parquet"), "--threshold", "0.7"])
    assert result.exit_code == 2 and "--threshold does nothing here" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_negative_losses_give_the_quantiles_no_bootstrap_interval(tmp_path):
    """Found in review: negative losses (log-probabilities above 0, XE110) all fell in the bootstrap's
    zero cell, so a p50 delta of 0.29 showed the interval [0, 0] and 'no clear change'. Their
    quantiles' intervals are not given (null) rather than wrong."""
    rng = np.random.default_rng(24)
    lp = rng.normal(0.3, 0.5, (400, 1))
    base = np.concatenate([lp, np.log1p(-np.minimum(np.exp(lp), 0.5))], axis=1)
    candidate = base - np.array([0.3, 0.0])
    for name, scores in (("base", base), ("cand", candidate)):
        pq.write_table(pa.table({"log_probs": list(scores), "label": np.zeros(400, np.int64)}), tmp_path / f"{name}.parquet")
    doc, _ = diff_json(tmp_path / "base.parquet", tmp_path / "cand.parquet")
    assert all(doc["metrics"][name]["ci"] is None for name in ("loss_p50", "loss_p90", "loss_p99"))
    assert doc["metrics"]["loss_p50"]["delta"] == pytest.approx(0.3, rel=0.02)


def test_a_null_key_inside_a_dictionary_is_refused(tmp_path):
    """Found in review: a null in a dictionary-encoded key column's dictionary passed the null check
    (made before decoding): exit 3 as the base key, paired as the key 'None' as the candidate's."""
    keys = pa.DictionaryArray.from_arrays(pa.array([0, 1, 2, 3]), pa.array(["k0", "k1", None, "k3"]))
    table = pa.table({"id": keys, "logits": pa.array([[0.0, 1.0]] * 4, pa.list_(pa.float32())), "label": [0, 1, 0, 1]})
    import pyarrow.ipc as ipc

    plain = table.set_column(0, "id", pa.array(["k0", "k1", "k2", "k3"]))
    for name, t in (("nulls", table), ("plain", plain)):  # Arrow IPC: Parquet cannot write a null inside a dictionary
        with ipc.new_file(str(tmp_path / f"{name}.arrow"), t.schema) as writer:
            writer.write_table(t)
    for pair in (("nulls", "plain"), ("plain", "nulls")):
        result = runner.invoke(app, ["diff", *(str(tmp_path / f"{p}.arrow") for p in pair), "--key", "id"])
        assert result.exit_code == 2 and "the key column holds nulls" in result.stderr, result.stderr


def test_identical_deltas_have_that_mean_and_no_spread(tmp_path):
    """Found in review: 50 pairs of delta exactly 0.1 had the mean 0.09999999999999998 (a block's
    float sum) and a standard error of 4e-18, so --require-noninferior 0.1 passed by 2 ulps. Every
    delta the same: the mean is that delta, the standard error 0, and the gate at 0.1 fails."""
    base = np.full(50, 1.0)
    for name, losses in (("base", base), ("cand", base + 0.1)):
        pq.write_table(pa.table({"log_probs": list(_log_probs(losses)), "label": np.zeros(50, np.int64)}), tmp_path / f"{name}.parquet")
    rows = runner.invoke(app, ["diff", str(tmp_path / "base.parquet"), str(tmp_path / "cand.parquet"), "-o", str(tmp_path / "d.parquet")])
    deltas = pq.read_table(tmp_path / "d.parquet").column("delta").to_numpy()
    assert rows.exit_code == 0 and (deltas == deltas[0]).all()  # one value, whatever float64 made of 1.1 − 1
    doc, code = diff_json(tmp_path / "base.parquet", tmp_path / "cand.parquet", "--require-noninferior", str(deltas[0]))
    loss = doc["metrics"]["loss_mean"]
    assert loss["delta"] == deltas[0] and loss["se"] == 0.0 and loss["ci"] == [deltas[0], deltas[0]] and code == 1


def test_clustered_standard_error_keeps_its_digits_for_large_close_deltas(tmp_path):
    """Found in review: with deltas near 3e4 that differ by ~1e-10, Σ_g (S_g − n_g·m)² cancelled and
    the clustered se came out 29% high. The clusters sum d − (the first delta), and the mean they are
    centred on is their own (mean − shift kept the mean's rounding at 3e4: 4.7% high, hidden by
    pytest.approx's absolute floor until tests/conftest.py removed it).
    Reference: the formula in exact rational arithmetic on the deltas as -o writes them."""
    from fractions import Fraction

    rng = np.random.default_rng(12)
    n, docs = 1000, np.repeat(np.arange(10), 100)
    base = np.ones(n)
    candidate = base + 3e4 + rng.normal(0, 1e-10, n)
    for name, losses in (("base", base), ("cand", candidate)):
        pq.write_table(pa.table({"log_probs": list(_log_probs(losses)), "label": np.zeros(n, np.int64), "doc": docs}),
                       tmp_path / f"{name}.parquet")
    runner.invoke(app, ["diff", str(tmp_path / "base.parquet"), str(tmp_path / "cand.parquet"), "--cluster", "doc",
                        "-o", str(tmp_path / "d.parquet")])
    d = [Fraction(x) for x in pq.read_table(tmp_path / "d.parquet").column("delta").to_pylist()]
    mean = sum(d) / n
    spread = sum((sum(d[i] for i in range(n) if docs[i] == g) - 100 * mean) ** 2 for g in range(10))
    want = math.sqrt(10 / 9 * float(spread)) / n
    doc, _ = diff_json(tmp_path / "base.parquet", tmp_path / "cand.parquet", "--cluster", "doc")
    assert doc["metrics"]["loss_mean"]["se"] == pytest.approx(want, rel=1e-9)


def test_without_a_gate_the_verdict_says_none_was_given(tmp_path):
    """Found in review: a clear regression (p 0.0002) ended 'PASS: loss Δ +0.0309 …' with no gate
    given, which reads as a verdict on the regression. Without a gate PASS says none was given."""
    base = np.full(40, 1.0)
    for name, losses in (("base", base), ("cand", base + np.linspace(0.05, 0.15, 40))):
        pq.write_table(pa.table({"log_probs": list(_log_probs(losses)), "label": np.zeros(40, np.int64)}), tmp_path / f"{name}.parquet")
    plain = runner.invoke(app, ["diff", str(tmp_path / "base.parquet"), str(tmp_path / "cand.parquet")])
    assert plain.exit_code == 0 and plain.stdout.strip().splitlines()[-1].startswith("PASS (no gate on the delta given: ")
    gated = runner.invoke(app, ["diff", str(tmp_path / "base.parquet"), str(tmp_path / "cand.parquet"), "--fail-on-regression", "0.5"])
    assert gated.exit_code == 0 and gated.stdout.strip().splitlines()[-1].startswith("PASS: loss Δ +0.1")


def test_diff_fails_where_a_side_has_error_level_diagnostics_by_default(tmp_path):
    """Found in review: two multi-label dumps scored as softmax (XE206, XE207 errors on both sides:
    the numbers measure nothing) ended 'PASS'. --fail-on defaults to error, as check's; never says
    the gates alone decide."""
    z = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.5]] * 20)
    multi_hot = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]] * 20)
    for name in ("base", "cand"):
        pq.write_table(pa.table({"id": np.arange(40), "logits": list(z), "targets": list(multi_hot)}), tmp_path / f"{name}.parquet")
    args = ["diff", str(tmp_path / "base.parquet"), str(tmp_path / "cand.parquet"), "--key", "id"]
    failed = runner.invoke(app, args)
    assert failed.exit_code == 1 and failed.stdout.strip().splitlines()[-1].startswith("FAIL: base: XE206")
    assert runner.invoke(app, [*args, "--fail-on", "never"]).exit_code == 0


def test_diff_verdicts_say_pass_once_and_no_nan(tmp_path):
    """Found in review: with --output-format github and no gate the verdict read 'PASS: PASS (no
    gate…', and with one pair it printed '[+nan, +nan] p nan; … power nan' where the tables say what
    is undefined."""
    np.save(tmp_path / "b.npy", np.array([[0.0, 1.0]]))
    np.save(tmp_path / "c.npy", np.array([[0.0, 2.0]]))
    np.save(tmp_path / "y.npy", np.array([1]))
    one = [str(tmp_path / n) for n in ("b.npy", "c.npy")] + ["--labels", str(tmp_path / "y.npy")]
    rng = np.random.default_rng(3)
    z = rng.standard_normal((200, 3))
    np.save(tmp_path / "zb.npy", z)
    np.save(tmp_path / "zc.npy", z * 1.5)
    np.save(tmp_path / "zy.npy", rng.integers(0, 3, 200))
    many = [str(tmp_path / n) for n in ("zb.npy", "zc.npy")] + ["--labels", str(tmp_path / "zy.npy")]
    for args in (one, many, [*many, "--fail-on-regression", "9"]):
        for fmt in ("github", "text"):
            result = runner.invoke(app, ["diff", *args, "--output-format", fmt])
            assert result.exit_code in (0, 1), (result.stderr, result.exception)
            last = result.stdout.strip().splitlines()[-1]
            assert last.count("PASS") + last.count("FAIL") == 1 and last.startswith(("PASS", "FAIL")), last
            assert "nan" not in last.lower(), last
    single = runner.invoke(app, ["diff", *one]).stdout.strip().splitlines()[-1]
    # the one pair's delta, candidate − base: log(1 + e^-2) − log(1 + e^-1) = 0.1269280 − 0.3132617 = −0.1863337
    assert "loss Δ -0.186334 (no interval)" in single, single


def test_diff_refuses_options_that_do_nothing_here(tmp_path):
    """Found in review: --allow-unpaired without --key, and --min-group or --max-groups without --by,
    were accepted and ignored (--threshold on two softmax heads was already refused)."""
    rng = np.random.default_rng(4)
    for name in ("b", "c"):
        np.save(tmp_path / f"{name}.npy", rng.standard_normal((20, 3)))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 20))
    args = [str(tmp_path / "b.npy"), str(tmp_path / "c.npy"), "--labels", str(tmp_path / "y.npy")]
    for option in (["--allow-unpaired"], ["--min-group", "5"], ["--max-groups", "5"]):
        result = runner.invoke(app, ["diff", *args, *option])
        assert result.exit_code == 2 and f"{option[0]} does nothing here" in result.stderr, (option, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    np.save(tmp_path / "g.npy", rng.integers(0, 2, 20))
    assert runner.invoke(app, ["diff", *args, "--by-file", str(tmp_path / "g.npy"), "--min-group", "5"]).exit_code in (0, 1)


def test_cluster_names_the_bases_values_the_candidate_need_not_hold_them(tmp_path):
    """Found in review: --cluster COL required COL on the candidate side ("no column"), though the
    clusters are the base's values of COL. The candidate without the column, with it, and with other
    values in it: the same clustered interval, √(G/(G−1)·Σ_g (S_g − n_g·d̄)²)/n over the base's
    G = 15 documents (the README's formula, in float64 here)."""
    from xentcli import stats

    rng = np.random.default_rng(2)
    z, y, doc = rng.normal(size=(60, 3)), rng.integers(0, 3, 60), np.arange(60) // 4
    pq.write_table(pa.table({"logits": list(z), "label": y, "doc": doc}), tmp_path / "a.parquet")
    for name, extra in (("none", {}), ("same", {"doc": doc}), ("other", {"doc": doc[::-1].copy()})):
        pq.write_table(pa.table({"logits": list(z * 1.3), "label": y, **extra}), tmp_path / f"{name}.parquet")
    d = sparse_loss64(z * 1.3, y) - sparse_loss64(z, y)
    sums = np.bincount(doc, weights=d)
    counts = np.bincount(doc)
    se = math.sqrt(15 / 14 * ((sums - counts * d.mean()) ** 2).sum()) / 60
    half = stats.t_quantile(0.975, 14) * se
    for name in ("none", "same", "other"):
        result = runner.invoke(app, ["diff", str(tmp_path / "a.parquet"), str(tmp_path / f"{name}.parquet"), "--cluster", "doc", "--json"])
        assert result.exit_code in (0, 1), (name, result.stderr)
        loss = json.loads(result.stdout)["metrics"]["loss_mean"]
        assert loss["clusters"] == 15 and loss["se"] == pytest.approx(se, rel=1e-9)
        assert loss["ci"] == pytest.approx([d.mean() - half, d.mean() + half], rel=1e-9)


def test_binary_head_against_two_class_target_rows(tmp_path):
    """Found in review: a binary head (0/1 labels or soft targets t) against a two-class softmax
    whose targets are rows [1 − t, t] was XE503 for every pair (rows of width 1 and 2 compared as
    unequal). Such rows are the same target — the two losses are equal (BCE of z against t is the
    two-class cross-entropy of [0, z] against [1 − t, t]) — and a row that is not [1 − t, t] is XE503."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=50)
    hard = rng.integers(0, 2, 50)
    soft = np.round(rng.random(50), 2)
    for t in (hard, soft):
        pq.write_table(pa.table({"logit": z, "label": t}), tmp_path / "b.parquet")
        rows = [[1.0 - float(v), float(v)] for v in t]
        pq.write_table(pa.table({"logits": [[0.0, v] for v in z], "label": rows}), tmp_path / "s.parquet")
        for pair in (["b", "s"], ["s", "b"]):
            result = runner.invoke(app, ["diff", *(str(tmp_path / f"{n}.parquet") for n in pair), "--json"])
            assert result.exit_code in (0, 1), (result.stderr, result.exception)
            doc = json.loads(result.stdout)
            assert doc["pairing"]["usable_pairs"] == 50 and abs(doc["metrics"]["loss_mean"]["delta"]) < 1e-15
            accuracy = doc["metrics"]["accuracy"]  # the same model: no change, rows of t = ½ included (positive, as a binary head)
            assert accuracy["delta"] == 0 and accuracy["base"] == accuracy["candidate"]
        # stored as float32 (found in review: the rows' sum was held to float64's ulps, and 14 of 50 pairs were XE503)
        pq.write_table(pa.table({"logit": pa.array(z, pa.float32()), "label": pa.array(t, pa.float32())}), tmp_path / "b32.parquet")
        t32 = t.astype(np.float32)
        pq.write_table(pa.table({"logits": pa.array([[0.0, v] for v in z], pa.list_(pa.float32())),
                                 "label": pa.array([[float(np.float32(1) - v), float(v)] for v in t32], pa.list_(pa.float32()))}),
                       tmp_path / "s32.parquet")
        result = runner.invoke(app, ["diff", str(tmp_path / "b32.parquet"), str(tmp_path / "s32.parquet"), "--json"])
        assert result.exit_code in (0, 1) and json.loads(result.stdout)["pairing"]["usable_pairs"] == 50, result.stderr
        # a NaN target on both sides: a non-finite pair (XE505), as for targets of one width (it was XE503)
        nan_t = t.astype(np.float64)
        nan_t[5] = np.nan
        nan_rows = [[1.0 - float(v), float(v)] for v in nan_t]
        pq.write_table(pa.table({"logit": z, "label": nan_t}), tmp_path / "bn.parquet")
        pq.write_table(pa.table({"logits": [[0.0, v] for v in z], "label": nan_rows}), tmp_path / "sn.parquet")
        result = runner.invoke(app, ["diff", str(tmp_path / "bn.parquet"), str(tmp_path / "sn.parquet"), "--json"])
        assert result.exit_code in (0, 1), result.stderr
        assert {k: json.loads(result.stdout)["pairing"][k] for k in ("usable_pairs", "nonfinite_pairs")} == {"usable_pairs": 49, "nonfinite_pairs": 1}
        rows[7] = [0.6, rows[7][1]] if rows[7][1] != 0.4 else [0.5, 0.4]  # not [1 − t, t]
        pq.write_table(pa.table({"logits": [[0.0, v] for v in z], "label": rows}), tmp_path / "s.parquet")
        result = runner.invoke(app, ["diff", str(tmp_path / "b.parquet"), str(tmp_path / "s.parquet")])
        assert result.exit_code == 2 and "[XE503] 1 pair has different labels" in result.stderr and "7/7" in result.stderr


@pytest.mark.parametrize("narrow", [np.float32, np.float16])
def test_the_same_numbers_stored_narrower_are_no_change(tmp_path, narrow):
    """Found in review: logits stored as float64 on one side and as float32 (the same values) on the
    other gave Δ +2.39e-9 [+1.85e-9, +2.92e-9], p 3e-18 — a failed --fail-on-regression 0 — from the
    float32 kernel's own error. Sides stored unlike are both scored in float64: Δ is exactly 0, and
    each side's mean equals the float64 loss of the stored values."""
    rng = np.random.default_rng(0)
    z = (rng.normal(size=(20000, 10)) * 2).astype(narrow)
    y = rng.integers(0, 10, 20000)
    np.save(tmp_path / "narrow.npy", z)
    np.save(tmp_path / "wide.npy", z.astype(np.float64))
    np.save(tmp_path / "y.npy", y)
    want = sparse_loss64(z.astype(np.float64), y).mean()
    for pair in (("wide", "narrow"), ("narrow", "wide")):
        args = ["diff", *(str(tmp_path / f"{n}.npy") for n in pair), "--labels", str(tmp_path / "y.npy")]
        result = runner.invoke(app, [*args, "--json", "--fail-on-regression", "0"])
        assert result.exit_code == 0, (result.stderr, result.stdout[-400:])
        loss = json.loads(result.stdout)["metrics"]["loss_mean"]
        assert loss["delta"] == 0 and loss["ci"] == [0, 0]
        assert loss["base"] == pytest.approx(want, rel=1e-13) and loss["candidate"] == pytest.approx(want, rel=1e-13)
        assert runner.invoke(app, [*args, "--fail-on-regression", "-1e-9"]).exit_code == 1  # no improvement either
    # both sides of shards in float32 and float64, laid out differently (found in review: "float32+float64" on both sides
    # was taken for one type, and the same values showed Δ ±2.4e-9, p 3e-18)
    if narrow is np.float32:
        for side, types in (("b", (np.float64, narrow)), ("c", (narrow, np.float64))):
            (tmp_path / side).mkdir()
            for i, (rows, dtype) in enumerate(zip((slice(0, 19990), slice(19990, None)), types)):
                pq.write_table(pa.table({"logits": pa.array(list(z[rows].astype(dtype)), pa.list_(pa.from_numpy_dtype(dtype))),
                                         "label": y[rows]}), tmp_path / side / f"p{i}.parquet")
        result = runner.invoke(app, ["diff", str(tmp_path / "b"), str(tmp_path / "c"), "--json", "--fail-on-regression", "0"])
        assert result.exit_code == 0 and json.loads(result.stdout)["metrics"]["loss_mean"]["ci"] == [0, 0], result.stderr


def test_diff_pooled_groups_are_said_and_told_apart(tmp_path):
    """Found in review: diff --max-groups pooled the other groups into "(other)" without XE701 (score
    says it), shown exactly as a group whose value is the text "(other)", in the table and the HTML
    page alike. The pool is "(other: N groups)" everywhere it is shown, and XE701 names the count."""
    rng = np.random.default_rng(5)
    z, y = rng.normal(size=(300, 3)), rng.integers(0, 3, 300)
    group = np.array(["a", "b", "c", "(other)", "e"])[np.arange(300) % 5]
    pq.write_table(pa.table({"logits": list(z), "label": y, "grp": group}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"logits": list(z * 1.2), "label": y, "grp": group}), tmp_path / "b.parquet")
    args = ["diff", str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet"), "--by", "grp", "--max-groups", "2"]
    doc = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    xe701 = [d for d in doc["diagnostics"] if d["code"] == "XE701"]
    assert len(xe701) == 1 and xe701[0]["message"].startswith("3 groups beyond --max-groups")
    assert sorted(g["pooled_groups"] for g in doc["groups"]) == [0, 0, 3]
    table = runner.invoke(app, args, terminal_width=200).stdout
    assert "(other: 3 groups)" in table and '"(other)"' in table  # the pool, and the value (quoted as text of its own)
    result = runner.invoke(app, [*args, "--report", str(tmp_path / "r.html")])
    assert result.exit_code in (0, 1), result.stderr
    page = (tmp_path / "r.html").read_text()
    assert "(other: 3 groups)" in page and "(other)&quot;" in page


def test_quantile_intervals_hold_their_deltas(tmp_path):
    """Found in review: the point quantile is its sketch bucket's representative (as score reports
    it) while the replicates' are interpolated within their buckets, so losses spread inside one
    bucket gave intervals that missed their own delta (1,000 pairs: p90 Δ -0.4012 in [-0.404,
    -0.404]). The interval is moved by the two rules' difference on the pairs themselves. Here the
    base losses are two values inside one bucket of the 1% sketch (γ = 1.005/0.995), the candidate's
    all 0.3; then random pairs."""
    gamma = 1.005 / 0.995
    k = math.ceil(math.log(0.7) / math.log(gamma))
    a, b = gamma ** (k - 1) * 1.0005, gamma ** k * 0.9995
    rng = np.random.default_rng(7)
    cases = {"two": (np.array([a, b]), np.full(2, 0.3)), "thousand": (np.tile([a, b], 500), np.full(1000, 0.3)),
             "random": (rng.gamma(2.0, 0.5, 3000), rng.gamma(2.0, 0.45, 3000))}
    for name, (base, candidate) in cases.items():
        for side, losses in (("b", base), ("c", candidate)):  # probabilities whose loss (−log p of class 1) is each value
            p = np.exp(-losses)
            np.save(tmp_path / f"{name}_{side}.npy", np.stack([1 - p, p], axis=1))
        np.save(tmp_path / f"{name}_y.npy", np.ones(base.size, np.int64))
        result = runner.invoke(app, ["diff", *(str(tmp_path / f"{name}_{s}.npy") for s in ("b", "c")), "--labels",
                                     str(tmp_path / f"{name}_y.npy"), "--input", "probs", "--json"])
        assert result.exit_code in (0, 1), result.stderr
        metrics = json.loads(result.stdout)["metrics"]
        for q in ("loss_p50", "loss_p90", "loss_p99"):
            low, high = metrics[q]["ci"]
            assert low <= metrics[q]["delta"] <= high, (name, q, metrics[q])


def test_one_pairs_quantile_interval_is_its_delta(tmp_path):
    """Found in review: with one pair the p50 delta was 0.08836 and its bootstrap interval
    [0.0901, 0.0901] — the replicates' quantiles were interpolated within their sketch bucket while
    the point is kept within the exact min and max. Every replicate of one pair is that pair: the
    interval is the delta itself (here of the exact losses log(1 + e) and log(1 + e²))."""
    np.save(tmp_path / "b.npy", np.array([[0.0, 1.0]]))
    np.save(tmp_path / "c.npy", np.array([[0.0, 2.0]]))
    np.save(tmp_path / "y.npy", np.array([0]))
    result = runner.invoke(app, ["diff", str(tmp_path / "b.npy"), str(tmp_path / "c.npy"), "--labels", str(tmp_path / "y.npy"), "--json"])
    metrics = json.loads(result.stdout)["metrics"]
    delta = math.log1p(math.exp(2)) - math.log1p(math.exp(1))  # 2.1269280110 − 1.3132616875
    for name in ("loss_p50", "loss_p90", "loss_p99"):
        assert metrics[name]["delta"] == pytest.approx(delta, rel=1e-15) and metrics[name]["ci"] == [metrics[name]["delta"]] * 2
