"""Error bars on the headline numbers: the t-interval of the mean loss against scipy (recorded
once: scipy 1.17.1 ttest_1samp(...).confidence_interval), Wilson's interval against statsmodels
0.15.0 proportion_confint(method="wilson"), clustered and weighted standard errors against direct
formulas written here, and --gate-on upper."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from reference import sparse_loss64
from xentcli.accumulate import ClusterRuns, wilson
from xentcli.cli import app

runner = CliRunner()
SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"


def score(*args):
    result = runner.invoke(app, ["score", *map(str, args), "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["summary"]


def test_loss_interval_is_the_t_interval():
    """The sample's float32 logits: xent's losses are within 1e-6 of the float64 ones scipy saw."""
    s = score(SAMPLES / "cifar10_val.parquet")
    assert s["loss_se"] == pytest.approx(0.04645435102816474, rel=1e-6)
    assert s["loss_ci"] == pytest.approx([0.41618032308364244, 0.5987207806922312], rel=1e-6)
    assert s["perplexity_ci"] == pytest.approx([math.exp(0.41618032308364244), math.exp(0.5987207806922312)], rel=1e-6)
    assert s["accuracy_ci"] == pytest.approx([0.826833135055546, 0.8876773398121365], rel=1e-9)
    assert s["confidence"] == 0.95 and s["se_clustered"] is False
    s90 = score(SAMPLES / "cifar10_val.parquet", "--confidence", "0.9")
    assert s90["loss_ci"] == pytest.approx([0.4308978236625565, 0.5840032801133171], rel=1e-6)


@pytest.mark.parametrize("successes,n,confidence,want", [
    (430, 500, 0.95, [0.826833135055546, 0.8876773398121365]),
    (0, 20, 0.95, [0.0, 0.1611251580528194]),
    (20, 20, 0.9, [0.8808421626390355, 1.0]),
    (7, 13, 0.99, [0.2353831251240346, 0.815546605768869]),
])
def test_wilson(successes, n, confidence, want):
    assert wilson(successes, n, confidence) == pytest.approx(want, rel=1e-9, abs=1e-12)


def _clustered_reference(loss: np.ndarray, sequence: np.ndarray) -> tuple[float, int]:
    """se = √(G/(G−1)·Σ_g (S_g − n_g·m)²)/n, written directly over the sequences."""
    mean = loss.mean()
    groups = [loss[sequence == g] for g in np.unique(sequence)]
    spread = sum((g.sum() - g.size * mean) ** 2 for g in groups)
    return math.sqrt(len(groups) / (len(groups) - 1) * spread) / loss.size, len(groups)


@pytest.mark.parametrize("chunk_rows", ["7", "50", "100000"])
def test_sequences_are_clustered(tmp_path, chunk_rows):
    rng = np.random.default_rng(8)
    z = rng.standard_normal((30, 12, 5)) * 2
    y = rng.integers(0, 5, (30, 12))
    y[:, 9:] = -100  # padding
    y[4] = -100  # a sequence with no counted token: no cluster
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    s = score(tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--chunk-rows", chunk_rows)
    flat = sparse_loss64(z.reshape(-1, 5), np.where(y.reshape(-1) < 0, 0, y.reshape(-1)))
    counted = y.reshape(-1) >= 0
    se, groups = _clustered_reference(flat[counted], np.repeat(np.arange(30), 12)[counted])
    assert groups == 29 and s["se_clustered"] is True
    assert s["loss_se"] == pytest.approx(se, rel=1e-9)
    from xentcli import stats

    half = stats.t_quantile(0.975, groups - 1) * se
    assert s["loss_ci"] == pytest.approx([flat[counted].mean() - half, flat[counted].mean() + half], rel=1e-9)
    # the accuracy's interval is clustered too (found in review: Wilson's took the tokens for independent,
    # and --gate-on upper passed on it): the same formula on the tokens' 1/0 correctness, t with G − 1 df
    right = (z.reshape(-1, 5).argmax(axis=1) == y.reshape(-1)).astype(np.float64)[counted]
    se_acc, _ = _clustered_reference(right, np.repeat(np.arange(30), 12)[counted])
    half = stats.t_quantile(0.975, groups - 1) * se_acc
    assert s["accuracy_ci"] == pytest.approx([right.mean() - half, right.mean() + half], rel=1e-9)


def test_cluster_runs_merge_in_any_tree():
    """Sequences split between partials, merged left to right or pairwise (each part about its own
    shift), give the float64 reference's spread."""
    rng = np.random.default_rng(3)
    for _ in range(100):
        n = int(rng.integers(1, 80))
        sample = np.sort(rng.integers(0, 10, n))
        counted = rng.random(n) < 0.8
        loss = rng.random(n)
        cuts = sorted(set(rng.integers(0, n, int(rng.integers(0, 8))).tolist()))
        parts = []
        for index in np.split(np.arange(n), cuts):
            if index.size:
                part = ClusterRuns()
                part.update(sample[index], counted[index], loss[index])
                parts.append(part)
        while len(parts) > 1:  # pairwise, as a tree of merges would
            merged = []
            for left, right in zip(parts[::2], parts[1::2]):
                left.merge(right)
                merged.append(left)
            parts = merged + ([parts[-1]] if len(parts) % 2 else [])
        whole = ClusterRuns()
        whole.update(sample, counted, loss)
        # the float64 reference: Σ_g (S_g − n_g·m)² about the counted rows' mean, over the sequences with one
        s_g = np.bincount(sample, weights=np.where(counted, loss, 0.0), minlength=10)
        n_g = np.bincount(sample, weights=counted, minlength=10)
        used = n_g > 0
        spread = float(((s_g - n_g * s_g.sum() / n_g.sum()) ** 2)[used].sum()) if used.any() else math.nan
        for got in (parts[0].spread(), whole.spread()):
            assert got[0] == int(used.sum())
            assert got[1] == pytest.approx(spread, rel=1e-12, abs=1e-24, nan_ok=True)


@pytest.mark.parametrize("chunk_rows", ["7", "100000"])
@pytest.mark.parametrize("layout", ["sorted", "interleaved"])
@pytest.mark.parametrize("ids", ["text", "int"])
def test_group_col_rows_of_a_sequence_may_come_apart(tmp_path, chunk_rows, layout, ids):
    """--group-col: 4 documents of 50 rows, in runs or interleaved (a, b, c, d, a, …): 4 clusters either
    way (runs counted as clusters gave 200 and an interval 9x too narrow), with a null document."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(11)
    docs = np.repeat(np.arange(4), 50) if layout == "sorted" else np.tile(np.arange(4), 50)
    z = rng.standard_normal((200, 3)) + docs[:, None] * np.array([1.5, 0.0, 0.0])  # documents of different difficulty
    y = rng.integers(0, 3, 200)
    names = [None if d == 3 else f"doc{d}" for d in docs] if ids == "text" else docs * 7 + 1
    pq.write_table(pa.table({"logits": list(z), "label": y, "doc": names}), tmp_path / "d.parquet")
    s = score(tmp_path / "d.parquet", "--group-col", "doc", "--chunk-rows", chunk_rows)
    loss = sparse_loss64(z, y)
    se, groups = _clustered_reference(loss, docs)
    assert groups == 4 and s["se_clustered"] is True
    assert s["loss_se"] == pytest.approx(se, rel=1e-9)
    right = (z.argmax(axis=1) == y).astype(np.float64)
    se_acc, _ = _clustered_reference(right, docs)
    from xentcli import stats

    half = stats.t_quantile(0.975, 3) * se_acc
    assert s["accuracy_ci"] == pytest.approx([max(0, right.mean() - half), min(1, right.mean() + half)], rel=1e-9)


def test_weighted_mean_uses_the_ratio_estimator(tmp_path):
    rng = np.random.default_rng(4)
    z = rng.standard_normal((400, 6)) * 2
    y = rng.integers(0, 6, 400)
    w = rng.uniform(0, 3, 400)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "w.npy", w)
    s = score(tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--sample-weights", tmp_path / "w.npy", "--chunk-rows", "33")
    loss = sparse_loss64(z, y)
    ratio = (w * loss).sum() / w.sum()
    n = int((w > 0).sum())  # linearised: residuals y − R·x over Σx, with n/(n − 1) (HC1) as the unweighted SE has
    se = math.sqrt(((w * loss - ratio * w) ** 2).sum() * n / (n - 1)) / w.sum()
    assert s["loss_mean"] == pytest.approx(ratio, rel=1e-12)
    assert s["loss_se"] == pytest.approx(se, rel=1e-9)


def test_rows_of_weight_zero_add_no_degrees_of_freedom(tmp_path):
    """3 rows of weight 1 among 400: the interval is the 3-row one (t with 2 degrees of freedom), not t with 399."""
    rng = np.random.default_rng(6)
    z, y = rng.standard_normal((400, 4)) * 2, rng.integers(0, 4, 400)
    w = np.zeros(400)
    w[[5, 100, 300]] = 1.0
    for name, array in (("z", z), ("y", y), ("w", w)):
        np.save(tmp_path / f"{name}.npy", array)
    s = score(tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--sample-weights", tmp_path / "w.npy", "--chunk-rows", "50")
    loss = sparse_loss64(z, y)[[5, 100, 300]]
    se = math.sqrt(((loss - loss.mean()) ** 2).sum() / 2) / 3 * math.sqrt(3)  # the 3 rows' own SE: s/√3 (weights of 1 change nothing)
    half = 4.302652729911275 * se  # scipy.stats.t.ppf(0.975, 2)
    assert s["loss_se"] == pytest.approx(se, rel=1e-9)
    assert s["loss_ci"] == pytest.approx([loss.mean() - half, loss.mean() + half], rel=1e-9)


@pytest.mark.parametrize("limit,passes", [("0.6", True), ("0.55", False)])
def test_gate_on_the_upper_bound(limit, passes):
    args = ["check", str(SAMPLES / "cifar10_val.parquet"), "--max-loss", limit, "--fail-on", "never", "--json"]
    point = runner.invoke(app, args)
    upper = runner.invoke(app, [*args, "--gate-on", "upper"])
    assert point.exit_code == 0  # the point 0.507 is under both limits
    assert upper.exit_code == (0 if passes else 1)  # the upper bound 0.5987 is under 0.6, over 0.55
    assert json.loads(upper.stdout)["gates"][0]["value"] == pytest.approx(0.5987207806922312, rel=1e-6)


def test_an_undefined_upper_bound_says_why(tmp_path):
    """Found in review: --gate-on upper without an interval said "an infinite spread" whatever the
    cause; one sequence (its standard error clustered by sequence) and one row of weight above 0 are
    named as such. The gate fails either way."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "sz.npy", rng.normal(size=(1, 50, 4)))
    np.save(tmp_path / "sy.npy", rng.integers(0, 4, (1, 50)))
    np.save(tmp_path / "z.npy", rng.normal(size=(5, 3)))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 5))
    np.save(tmp_path / "w.npy", np.array([0, 0, 0, 0, 1.0]))
    for args, said in (([tmp_path / "sz.npy", "--labels", tmp_path / "sy.npy"], "clustered by sequence, it needs two sequences or more"),
                       ([tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--sample-weights", tmp_path / "w.npy"],
                        "weighted, it needs two rows of weight above 0 or more")):
        result = runner.invoke(app, ["check", *map(str, args), "--max-loss", "5", "--gate-on", "upper"])
        assert result.exit_code == 1 and said in result.stdout and "infinite spread" not in result.stdout, result.stdout


def test_error_bars_of_losses_whose_spread_squared_is_beyond_float64(tmp_path):
    """float64 logits of 1e300 … 5e300 on a wrong class: each loss is its logit, M2 ~ 1e601
    overflows and the standard error 1.9e299 does not. xent printed "3e+300 ± inf", wrote null
    and failed `--gate-on upper` at 4e300 on an infinite bound; now the interval is the t-interval
    (found in review, 2026-12-03). Reference: exact fractions, the root by decimal; t(0.975, 39)
    = 2.0226909200367595 (scipy.stats.t.ppf). The paired delta of the same losses doubled has it too."""
    from decimal import Decimal, localcontext
    from fractions import Fraction

    x = np.linspace(1e300, 5e300, 40)
    z = np.zeros((40, 3))
    z[:, 0] = x
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "z2.npy", z * 2)
    np.save(tmp_path / "y.npy", np.ones(40, np.int64))
    exact = [Fraction(v) for v in x.tolist()]
    mean = sum(exact) / 40
    with localcontext() as context:
        context.prec = 80
        ratio = sum((v - mean) ** 2 for v in exact) / (40 * 39)
        se = float((Decimal(ratio.numerator) / Decimal(ratio.denominator)).sqrt())
    assert se == 1.8958182062238322e299
    s = score(tmp_path / "z.npy", "--labels", tmp_path / "y.npy")
    assert (s["loss_mean"], s["loss_se"]) == (3e300, se)
    assert s["loss_ci"] == pytest.approx([3e300 - 2.0226909200367595 * se, 3e300 + 2.0226909200367595 * se], rel=1e-15)
    table = runner.invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy")])
    assert "3e+300 ± 3.83e+299 (95%)" in table.stdout and "± inf" not in table.stdout, table.stdout
    gate = runner.invoke(app, ["check", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--max-loss", "4e300",
                               "--gate-on", "upper", "--fail-on", "never"])
    assert gate.exit_code == 0, gate.stdout
    diff = runner.invoke(app, ["diff", str(tmp_path / "z.npy"), str(tmp_path / "z2.npy"), "--labels", str(tmp_path / "y.npy"), "--json"])
    assert diff.exit_code == 0, diff.stderr
    assert json.loads(diff.stdout)["metrics"]["loss_mean"]["se"] == se


def test_per_class_precision_recall_f1_equal_scikit_learn():
    """scikit-learn 1.9.1 precision_recall_fscore_support(y, argmax, labels=range(10)) on the sample dump."""
    result = runner.invoke(app, ["score", str(SAMPLES / "cifar10_val.parquet"), "--per-class", "--json"])
    rows = json.loads(result.stdout)["per_class"]
    precision = [0.7758620689655172, 0.8571428571428571, 0.9649122807017544, 0.75, 0.8541666666666666, 0.8936170212765957,
                 0.84, 0.9090909090909091, 0.8813559322033898, 0.8541666666666666]
    recall = [0.8823529411764706, 0.8571428571428571, 0.8461538461538461, 0.8823529411764706, 0.8367346938775511,
              0.8571428571428571, 0.9130434782608695, 0.8333333333333334, 0.8666666666666667, 0.8367346938775511]
    f1 = [0.8256880733944955, 0.8571428571428571, 0.9016393442622951, 0.8108108108108109, 0.845360824742268, 0.875, 0.875,
          0.8695652173913043, 0.8739495798319328, 0.845360824742268]
    assert [row["support"] for row in rows] == [51, 49, 65, 34, 49, 49, 46, 48, 60, 49]
    assert [row["precision"] for row in rows] == pytest.approx(precision, rel=1e-12)
    assert [row["recall"] for row in rows] == pytest.approx(recall, rel=1e-12)
    assert [row["f1"] for row in rows] == pytest.approx(f1, rel=1e-12)


def test_per_class_f1_of_a_class_never_right(tmp_path):
    """A class predicted but never right: precision 0, recall 0, F1 0 (as scikit-learn); never
    predicted nor a target: all undefined (null)."""
    z = np.array([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", np.array([1, 0, 1]))
    rows = json.loads(runner.invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--per-class",
                                          "--json"]).stdout)["per_class"]
    assert (rows[0]["precision"], rows[0]["recall"], rows[0]["f1"]) == (0.5, 1.0, pytest.approx(2 / 3))
    assert (rows[1]["precision"], rows[1]["recall"], rows[1]["f1"]) == (1.0, 0.5, pytest.approx(2 / 3))
    assert (rows[2]["precision"], rows[2]["recall"], rows[2]["f1"]) == (None, None, None)


@pytest.mark.parametrize("confidence", ["0", "1", "1.5", "-0.5", "nan", "0.9999999999999999"])
@pytest.mark.parametrize("command", ["score", "check", "diff"])
def test_a_confidence_without_a_two_sided_level_is_refused(command, confidence):
    """(1 + c)/2 must stay below 1 in float64: 0.9999999999999999 makes it 1.0 (it crashed)."""
    dump = str(SAMPLES / "cifar10_val.parquet")
    args = [command, dump, *([dump] if command == "diff" else []), "--confidence", confidence]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.stdout, result.exception)
    said = "is too close to 1" if confidence == "0.9999999999999999" else "--confidence must lie in (0, 1)"
    assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_weights_keep_the_clustering_and_weights_of_one_change_nothing(tmp_path):
    """Found in review: weights on a sequence dump dropped the clustering by sequence (SE 0.0577 on
    399 degrees of freedom where the clustered one is 0.3158 on 7), and the weighted SE lacked the
    n/(n − 1) of the unweighted one (weights of 1 narrowed the interval). Weights of 1 now give the
    unweighted numbers, clustered or not; other weights give the clustered ratio estimator
    √(G/(G−1)·Σ_g (Y_g − m·X_g)²)/ΣX with G − 1 degrees of freedom (float64 by hand)."""
    rng = np.random.default_rng(1)
    n, t, c = 8, 50, 4
    z = rng.normal(size=(n, t, c))
    y = rng.integers(0, c, (n, t))
    z[np.arange(n)[:, None], np.arange(t)[None, :], y] += rng.normal(size=n)[:, None] * 2  # each sequence its own difficulty
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "ones.npy", np.ones(n))
    w = rng.uniform(0.2, 3.0, n)
    np.save(tmp_path / "w.npy", w)
    base = [tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--chunk-rows", "37"]
    plain = score(*base)
    for extra in (["--sample-weights", tmp_path / "ones.npy"], ["--class-weights", "1,1,1,1"]):
        weighted = score(*base, *extra)
        assert weighted["se_clustered"] and weighted["loss_se"] == pytest.approx(plain["loss_se"], rel=1e-12)
        assert weighted["loss_ci"] == pytest.approx(plain["loss_ci"], rel=1e-12)
    got = score(*base, "--sample-weights", tmp_path / "w.npy")
    loss = sparse_loss64(z.reshape(-1, c), y.reshape(-1)).reshape(n, t)
    x = np.repeat(w[:, None], t, axis=1)
    m = (x * loss).sum() / x.sum()
    per = (x * loss).sum(axis=1) - m * x.sum(axis=1)
    se = math.sqrt(n / (n - 1) * (per**2).sum()) / x.sum()
    assert got["se_clustered"] and got["loss_mean"] == pytest.approx(m, rel=1e-12) and got["loss_se"] == pytest.approx(se, rel=1e-12)
    assert got["loss_ci"][1] - m == pytest.approx(2.3646242515927849 * se, rel=1e-9)  # scipy.stats.t.ppf(0.975, 7)


@pytest.mark.parametrize("layout", ["npz", "group-col"])
@pytest.mark.parametrize(("centre", "spread"), [(3e4, 1e-10), (1000.0, 1e-6), (math.log(50257), 1e-5)])
def test_the_clustered_se_keeps_its_digits_for_nearly_equal_losses(tmp_path, layout, centre, spread):
    """Found in review: score's clustered standard error came from Σ S² − 2m·Σ S·n + m²·Σ n² of raw
    sums: 0.0 for losses of 1000 ± 1e-6 (an interval of width 0 that --gate-on upper passes), 8.9e7
    times too large at 3e4 ± 1e-10, 17% low for a near-uniform 50,257-word model (± 1e-5). The sums
    are now taken about a shift. Reference: the formula in exact rational arithmetic on the losses
    as -o writes them: √(G/(G−1)·Σ_g (S_g − n_g·m)²)/n."""
    from fractions import Fraction

    rng = np.random.default_rng(12)
    sequences, tokens = 10, 100
    losses = centre + rng.normal(0, spread, (sequences, tokens))
    log_probs = np.stack([-losses, np.log(-np.expm1(-losses))], axis=-1)  # two classes; label 0's loss is `losses`
    labels = np.zeros((sequences, tokens), np.int64)
    if layout == "npz":
        np.savez(tmp_path / "d.npz", log_probs=log_probs, labels=labels)
        args = [str(tmp_path / "d.npz")]
    else:
        pq.write_table(pa.table({"doc": np.repeat(np.arange(sequences), tokens), "log_probs": list(log_probs.reshape(-1, 2)),
                                 "label": labels.reshape(-1)}), tmp_path / "d.parquet")
        args = [str(tmp_path / "d.parquet"), "--group-col", "doc"]
    result = CliRunner().invoke(app, ["score", *args, "--json", "-o", str(tmp_path / "rows.parquet")])
    assert result.exit_code == 0, result.stderr
    written = [Fraction(x) for x in pq.read_table(tmp_path / "rows.parquet").column("loss").to_pylist()]
    n = len(written)
    mean = sum(written) / n
    s_g = [sum(written[g * tokens:(g + 1) * tokens]) for g in range(sequences)]
    want = math.sqrt(sequences / (sequences - 1) * float(sum((s - tokens * mean) ** 2 for s in s_g))) / n
    summary = json.loads(result.stdout)["summary"]
    assert summary["se_clustered"] and summary["loss_se"] == pytest.approx(want, rel=1e-9)
