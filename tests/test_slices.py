"""Slices (--by): per-group numbers against a float64 groupby written here, "(other)" beyond
--max-groups, small groups, --by-file for arrays, chunk invariance, and the Holm-corrected gate."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from reference import sparse_loss64
from xentcli import stats
from xentcli.accumulate import wilson
from xentcli.cli import app

runner = CliRunner()


def _dump(tmp_path, rows=600, shift=0.0, seed=3):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((rows, 4)) * 2
    y = rng.integers(0, 4, rows)
    region = rng.choice(["north", "south", "east"], rows)
    device = rng.integers(0, 2, rows)
    z[region == "east", y[region == "east"]] -= shift  # a worse slice
    pq.write_table(pa.table({"logits": list(z), "label": y, "region": region, "device": device}), tmp_path / "d.parquet")
    return z, y, region, device


def _run(*args):
    result = runner.invoke(app, [*map(str, args), "--json"])
    assert result.exit_code in (0, 1), result.stderr
    return json.loads(result.stdout), result.exit_code


@pytest.mark.parametrize("chunk_rows", ["17", "100000"])
def test_groups_equal_a_float64_groupby(tmp_path, chunk_rows):
    z, y, region, device = _dump(tmp_path)
    doc, _ = _run("score", tmp_path / "d.parquet", "--by", "region", "--by", "device", "--chunk-rows", chunk_rows)
    loss = sparse_loss64(z, y)
    correct = z.argmax(axis=1) == y
    groups = {(g["by"]["region"], g["by"]["device"]): g for g in doc["groups"]}
    assert len(groups) == 6
    for (r, d), group in groups.items():
        rows = (region == r) & (device == d)
        n = int(rows.sum())
        mean = loss[rows].mean()
        half = stats.t_quantile(0.975, n - 1) * loss[rows].std(ddof=1) / math.sqrt(n)
        assert group["counted"] == group["rows"] == n
        assert group["share"] == pytest.approx(n / 600, rel=1e-12)
        assert group["loss_mean"] == pytest.approx(mean, rel=1e-12)
        assert group["loss_ci"] == pytest.approx([mean - half, mean + half], rel=1e-9)
        assert group["accuracy"] == pytest.approx(correct[rows].mean(), rel=1e-12)
        assert group["accuracy_ci"] == pytest.approx(wilson(int(correct[rows].sum()), n, 0.95), rel=1e-12)
        assert group["delta_loss"] == pytest.approx(mean - loss.mean(), rel=1e-9, abs=1e-12)
        assert set(group) == {"by", "rows", "counted", "share", "loss_mean", "loss_ci", "accuracy", "accuracy_ci", "ece",
                              "delta_loss", "small", "merged_groups"} and group["merged_groups"] == 0
    means = [g["loss_mean"] for g in doc["groups"] if not g["small"]]
    assert means == sorted(means, reverse=True)


def test_group_ece_equals_a_direct_ece_of_each_groups_rows(tmp_path):
    """Each group's ECE (--by with --calibration) against ECE written directly on the group's rows
    (test_calibration._ece_reference: bins (lo, hi], the first closed), 15 bins; found in review to
    be checked nowhere (dropping the |·| of the gaps passed every test)."""
    from test_calibration import _ece_reference

    z, y, region, _ = _dump(tmp_path)
    doc, _ = _run("score", tmp_path / "d.parquet", "--by", "region", "--calibration", "--min-group", "1")
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    confidence, correct = p.max(axis=1), p.argmax(axis=1) == y
    for group in doc["groups"]:
        rows = region == group["by"]["region"]
        assert group["ece"] == pytest.approx(_ece_reference(confidence[rows], correct[rows], 15), rel=1e-9)


def test_other_group_small_groups_and_xe701(tmp_path):
    rng = np.random.default_rng(1)
    z = rng.standard_normal((300, 3))
    y = rng.integers(0, 3, 300)
    user = np.array([f"u{i % 40:02d}" if i < 280 else "rare" for i in range(300)])
    pq.write_table(pa.table({"logits": list(z), "label": y, "user": user}), tmp_path / "d.parquet")
    doc, _ = _run("score", tmp_path / "d.parquet", "--by", "user", "--max-groups", "5", "--min-group", "10")
    names = [g["by"]["user"] for g in doc["groups"]]
    assert len(names) == 6 and "(other)" in names and "rare" in names  # "rare" has 20 rows: the most
    assert sum(g["rows"] for g in doc["groups"]) == 300
    other = next(g for g in doc["groups"] if g["by"]["user"] == "(other)")
    kept = set(names) - {"(other)"}
    rows = ~np.isin(user, list(kept))
    loss = sparse_loss64(z, y)[rows]
    half = stats.t_quantile(0.975, rows.sum() - 1) * loss.std(ddof=1) / math.sqrt(rows.sum())
    assert other["counted"] == rows.sum() and other["loss_mean"] == pytest.approx(loss.mean(), rel=1e-12)
    assert other["loss_ci"] == pytest.approx([loss.mean() - half, loss.mean() + half], rel=1e-9)
    assert "XE701" in {d["code"] for d in doc["diagnostics"]}
    small, _ = _run("score", tmp_path / "d.parquet", "--by", "user", "--min-group", "10")
    flags = {g["by"]["user"]: g["small"] for g in small["groups"]}
    assert flags["rare"] is False and flags["u00"] is True  # u00 has 7 rows


def test_groups_from_a_file_for_arrays(tmp_path):
    rng = np.random.default_rng(2)
    z = rng.standard_normal((50, 3))
    y = rng.integers(0, 3, 50)
    groups = np.array(["a", "b"])[np.arange(50) % 2]
    for name, array in (("z", z), ("y", y), ("site", groups)):
        np.save(tmp_path / f"{name}.npy", array)
    doc, _ = _run("score", tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--by-file", tmp_path / "site.npy")
    loss = sparse_loss64(z, y)
    found = {g["by"]["site"]: g["loss_mean"] for g in doc["groups"]}
    assert found == {"a": pytest.approx(loss[::2].mean(), rel=1e-12), "b": pytest.approx(loss[1::2].mean(), rel=1e-12)}
    result = runner.invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--by", "site"])
    assert result.exit_code == 2 and "--by-file" in result.stderr


def test_group_gap_gate_with_holm(tmp_path):
    _dump(tmp_path, rows=3000, shift=3.0)  # east is far worse
    failing, code = _run("check", tmp_path / "d.parquet", "--by", "region", "--max-group-gap", "0.1", "--fail-on", "never")
    assert code == 1 and any("region=east" in reason for reason in failing["reasons"])
    passing, code = _run("check", tmp_path / "d.parquet", "--by", "region", "--max-group-gap", "50", "--fail-on", "never")
    assert code == 0
    result = runner.invoke(app, ["check", str(tmp_path / "d.parquet"), "--max-group-gap", "0.1"])
    assert result.exit_code == 2 and "--max-group-gap needs groups" in result.stderr


def test_holm_step_down_by_hand():
    from xentcli.slices import holm_failures

    # three groups, one-sided p-values from t: the smallest must be ≤ α/3, the next ≤ α/2, …
    groups = [{"by": {"g": name}, "small": False, "loss_mean": mean, "delta_loss": mean - 1.0, "se": 0.1, "df": 1000,
               "merged_groups": 0} for name, mean in (("a", 1.35), ("b", 1.30), ("c", 1.10))]
    alpha = 0.025
    p = {g["by"]["g"]: stats.t_two_sided_p((g["loss_mean"] - 1.0) / 0.1, 1000) / 2 for g in groups}
    found, bound, untestable = holm_failures(groups, 0.0, 0.95)
    assert untestable == []
    failed = {g["by"]["g"] for g in found}
    expected = set()
    for i, name in enumerate(sorted(p, key=p.get)):
        if p[name] > alpha / (3 - i):
            break
        expected.add(name)
    assert failed == expected == {"a", "b"}
    # Holm-adjusted p: 3·p_a, then max(3·p_a, 2·p_b)
    assert [g["p_value"] for g in found] == pytest.approx([3 * p["a"], max(3 * p["a"], 2 * p["b"])], rel=1e-12)
    # the figure shown: the largest gap's lower bound at level α/3 (group a: 0.35 − t(1 − α/3, 1000)·0.1)
    assert bound == pytest.approx(0.35 - stats.t_quantile(1 - alpha / 3, 1000) * 0.1, rel=1e-12)


def test_holm_figure_agrees_with_the_verdict():
    """The gate's figure exceeds the gap exactly when Holm rejects a group, on either side of the edge."""
    from xentcli.slices import holm_failures

    for mean in np.linspace(1.1, 1.4, 61):
        groups = [{"by": {"g": "a"}, "small": False, "loss_mean": float(mean), "delta_loss": float(mean) - 1.0, "se": 0.05,
                   "df": 50, "merged_groups": 0},
                  {"by": {"g": "b"}, "small": False, "loss_mean": 1.0, "delta_loss": 0.0, "se": 0.05, "df": 50, "merged_groups": 0}]
        failed, bound, _ = holm_failures(groups, 0.1, 0.95)
        assert bool(failed) == (bound > 0.1)


def _gap_dump(tmp_path, worst_name, uniform):
    """Two groups of 200 rows; the group `worst_name` is far worse, its rows all uniform (SE 0) if `uniform`."""
    rng = np.random.default_rng(5)
    z = rng.standard_normal((400, 4)) * 3
    y = np.argmax(z, axis=1)
    z[:200] = 0.0 if uniform else z[:200]
    if not uniform:
        z[np.arange(200), y[:200]] -= 6.0
    pq.write_table(pa.table({"logits": list(z), "label": y, "g": [worst_name] * 200 + ["fine"] * 200}), tmp_path / "d.parquet")


@pytest.mark.parametrize("worst_name,uniform", [("bad", True), ("(other)", False), ("(other)", True)])
def test_group_gap_tests_every_real_group(tmp_path, worst_name, uniform):
    """A group of equal losses (log 4 each: SE 0) and a group whose value is the text "(other)" are tested too."""
    _gap_dump(tmp_path, worst_name, uniform)
    doc, code = _run("check", tmp_path / "d.parquet", "--by", "g", "--max-group-gap", "0.5", "--fail-on", "never")
    shown = f'"{worst_name}"' if worst_name.startswith("(other") else worst_name  # a text that reads as the pool's label is quoted
    assert code == 1 and any(f"g={shown}" in reason for reason in doc["reasons"])


def test_group_gap_undefined_or_unbounded(tmp_path):
    _dump(tmp_path, rows=60)
    doc, code = _run("check", tmp_path / "d.parquet", "--by", "region", "--max-group-gap", "0.1", "--min-group", "1000", "--fail-on", "never")
    assert code == 1 and any("undefined" in reason for reason in doc["reasons"])  # every group small: nothing can vouch
    for limit in ("inf", "nan", "-1"):
        result = runner.invoke(app, ["check", str(tmp_path / "d.parquet"), "--by", "region", "--max-group-gap", limit])
        assert result.exit_code == 2 and "--max-group-gap" in result.stderr


def test_a_group_whose_float_m2_cannot_be_trusted_has_no_interval(tmp_path):
    """Losses written exactly as log-probabilities: a group 1e300 … 1.7e308 (its M2 overflows) and
    one ~1e-160 apart (its deviations' squares fall below the normal floats: the interval came out
    3.4e-4 off, found in review, 2026-12-03) have no interval (null) rather than a wrong one, and a
    --max-group-gap gate that must test them cannot pass; an ordinary group keeps its t-interval
    (reference: numpy float64, t(0.975, 4) = 2.7764451051977987 by scipy.stats.t.ppf)."""
    groups = {"h": [1e300, 3e300, 5e300, 1.7e308, 2e300], "t": [1e-160, 3e-160, 2.5e-160, 7e-161, 1.5e-160],
              "o": [0.5, 1.0, 1.5, 2.0, 4.0]}
    losses = np.array([v for g in groups.values() for v in g])
    lp = np.zeros((losses.size, 2))
    lp[:, 0] = -losses
    with np.errstate(divide="ignore"):
        lp[:, 1] = np.log(-np.expm1(-losses))
    pq.write_table(pa.table({"log_probs": list(lp), "label": np.zeros(losses.size, np.int64),
                             "g": [g for g, values in groups.items() for _ in values]}), tmp_path / "d.parquet")
    doc, _ = _run("score", tmp_path / "d.parquet", "--by", "g", "--min-group", "2")
    by = {g["by"]["g"]: g for g in doc["groups"]}
    assert by["h"]["loss_ci"] == [None, None] and by["t"]["loss_ci"] == [None, None]
    o = np.array(groups["o"])
    half = 2.7764451051977987 * o.std(ddof=1) / math.sqrt(5)
    assert by["o"]["loss_ci"] == pytest.approx([o.mean() - half, o.mean() + half], rel=1e-12)
    doc, code = _run("check", tmp_path / "d.parquet", "--by", "g", "--min-group", "2", "--max-group-gap", "1e308", "--fail-on", "never")
    assert code == 1, doc


@pytest.mark.parametrize("chunk_rows", ["13", "100000"])
def test_confusions_equal_a_count_of_error_pairs(tmp_path, chunk_rows):
    z, y, _, _ = _dump(tmp_path, rows=2000)
    doc, _ = _run("score", tmp_path / "d.parquet", "--confusions", "5", "--chunk-rows", chunk_rows)
    pred = z.argmax(axis=1)
    pairs = {}
    for label, guess in zip(y.tolist(), pred.tolist()):
        if label != guess:
            pairs[(label, guess)] = pairs.get((label, guess), 0) + 1
    expected = sorted(pairs.items(), key=lambda item: (-item[1], item[0]))[:5]
    assert [(c["label"], c["pred"], c["count"]) for c in doc["confusions"]] == [(l, p, n) for (l, p), n in expected]


def test_confusions_beyond_the_limit_are_approximate(monkeypatch):
    from xentcli import confusions

    monkeypatch.setattr(confusions, "MAX_PAIRS", 8)
    state = confusions.Confusions(100)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 100, 5000)
    preds = np.where(rng.random(5000) < 0.5, (labels + 1) % 100, rng.integers(0, 100, 5000))
    heavy = np.full(500, 3)  # one pair far more frequent than any other: Misra–Gries keeps it
    state.update(np.r_[labels, heavy], np.r_[preds, np.full(500, 7)])
    top = state.top(1)
    assert state.exact is False and (top[0]["label"], top[0]["pred"]) == (3, 7)


def test_group_values_equal_as_plain_values_keep_their_rows(tmp_path):
    """NaN and null (both null in JSON), 0.0 and -0.0: one group each, no row lost, whatever the chunking."""
    rng = np.random.default_rng(8)
    z, y = rng.standard_normal((500, 3)), rng.integers(0, 3, 500)
    g = np.array([np.nan, 0.0, -0.0, 2.5, 1.5])[np.arange(500) % 5]
    nullable = [None if i % 5 == 3 else float(v) for i, v in enumerate(g)]  # null where 2.5 was
    pq.write_table(pa.table({"logits": list(z), "label": y, "g": nullable}), tmp_path / "d.parquet")
    loss = sparse_loss64(z, y)
    for chunk_rows in ("7", "100000"):
        doc, _ = _run("score", tmp_path / "d.parquet", "--by", "g", "--chunk-rows", chunk_rows)
        found = {g["by"]["g"]: (g["rows"], g["loss_mean"]) for g in doc["groups"]}
        missing = (np.arange(500) % 5 == 0) | (np.arange(500) % 5 == 3)
        zero = (np.arange(500) % 5 == 1) | (np.arange(500) % 5 == 2)
        assert found == {None: (200, pytest.approx(loss[missing].mean(), rel=1e-12)), 0.0: (200, pytest.approx(loss[zero].mean(), rel=1e-12)),
                         1.5: (100, pytest.approx(loss[np.arange(500) % 5 == 4].mean(), rel=1e-12))}


@pytest.mark.parametrize("values", [np.array([-128, 127, 0, 5])[np.arange(60) % 4].astype(np.int8), (np.arange(60) % 3).astype(np.uint64) + np.uint64(2**63)])
def test_group_files_of_narrow_and_wide_integers(tmp_path, values):
    rng = np.random.default_rng(9)
    np.save(tmp_path / "z.npy", rng.standard_normal((60, 3)))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 60))
    np.save(tmp_path / "g.npy", values)
    doc, _ = _run("score", tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--by-file", tmp_path / "g.npy")
    expected = {int(v): int((values == v).sum()) for v in np.unique(values)}
    assert {g["by"]["g"]: g["rows"] for g in doc["groups"]} == expected


def test_many_high_cardinality_columns(tmp_path):
    """Eight columns of 500 distinct values: their combined codes pass 2^62 and are renumbered; every group is real."""
    rng = np.random.default_rng(10)
    columns = {name: rng.permutation(500) for name in "abcdefgh"}
    pq.write_table(pa.table({"logits": list(rng.standard_normal((500, 3))), "label": rng.integers(0, 3, 500), **columns}), tmp_path / "d.parquet")
    doc, _ = _run("score", tmp_path / "d.parquet", *sum((["--by", name] for name in "abcdefgh"), []))
    real = set(zip(*[columns[name].tolist() for name in "abcdefgh"]))
    assert len(doc["groups"]) == 500 and {tuple(g["by"][name] for name in "abcdefgh") for g in doc["groups"]} == real


def test_infinite_group_values_are_named_not_null(tmp_path):
    """A group of value ±inf is written "inf"/"-inf" in the JSON; null stays the group of missing values."""
    z, y = np.zeros((6, 2)), np.zeros(6, np.int64)
    pq.write_table(pa.table({"logits": list(z), "label": y, "g": [np.inf, -np.inf, None, np.inf, 1.0, None]}), tmp_path / "d.parquet")
    doc, _ = _run("score", tmp_path / "d.parquet", "--by", "g")
    assert sorted((str(g["by"]["g"]), g["rows"]) for g in doc["groups"]) == [("-inf", 1), ("1.0", 1), ("None", 2), ("inf", 2)]


@pytest.mark.parametrize("chunk_rows", ["1", "13", "100000"])
def test_integer_groups_take_the_fast_path_and_agree_with_text_groups(tmp_path, chunk_rows):
    """An integer --by column (values spread to the int64 extremes) groups as the same values as text do."""
    rng = np.random.default_rng(21)
    z, y = rng.standard_normal((300, 3)), rng.integers(0, 3, 300)
    values = np.array([-2**63, 2**63 - 1, 0, 7, -5])[rng.integers(0, 5, 300)]
    pq.write_table(pa.table({"logits": list(z), "label": y, "g": values, "t": [str(v) for v in values]}), tmp_path / "d.parquet")
    by_int, _ = _run("score", tmp_path / "d.parquet", "--by", "g", "--chunk-rows", chunk_rows)
    by_text, _ = _run("score", tmp_path / "d.parquet", "--by", "t")
    ints = {g["by"]["g"]: (g["rows"], g["loss_mean"]) for g in by_int["groups"]}
    texts = {int(g["by"]["t"]): (g["rows"], g["loss_mean"]) for g in by_text["groups"]}
    assert ints.keys() == texts.keys() == {-2**63, 2**63 - 1, 0, 7, -5}
    for key, (rows, mean) in ints.items():
        assert rows == texts[key][0] and mean == pytest.approx(texts[key][1], rel=1e-12)


def test_c_group_sums_equal_the_numpy_reference(monkeypatch):
    """native.group_sums (two C passes) against the numpy bincounts, bins included: the same sums in the same order."""
    from native_paths import require_c_extension

    from xentcli import native
    from xentcli.slices import _sums_by

    require_c_extension()
    rng = np.random.default_rng(5)
    n, k, m = 5000, 37, 15
    inverse = rng.integers(0, k, n)
    loss = rng.gamma(2.0, 0.5, n)
    counted = rng.random(n) < 0.9
    loss[~counted] = np.nan
    correct = rng.random(n) < 0.6
    cells = np.where(rng.random(n) < 0.95, rng.integers(0, 3600, n), -1)
    # hit flags as bytes 0, 1, 2 and 255 seen as booleans: any byte but 0 is a hit (the C loop counts it without a branch)
    hits = np.where(rng.random(n) < 0.3, rng.choice(np.array([1, 2, 255], np.uint8), n), np.uint8(0)).view(np.bool_)
    calibration = (cells, 3600 // m, rng.random(n), hits, m)
    with_c = _sums_by(inverse, k, loss, counted, correct, calibration, None)
    # the values themselves as groups (an integer --by column of a narrow range): value − low indexes the sums
    low = -1_000_003
    by_value = native.group_sums(inverse + low, k, loss, counted, correct, calibration, offset=low)
    # values with gaps (every other one unused), compacted: the groups with rows only, and their indices
    *compact, present = native.group_sums(inverse * 2 + low, 2 * k, loss, counted, correct, calibration, offset=low, compact=True)
    assert np.array_equal(present, np.arange(k) * 2)
    monkeypatch.setattr(native, "has_tally", lambda: False)
    with_numpy = _sums_by(inverse, k, loss, counted, correct, calibration, None)
    for got, value, packed in zip(with_c[:6], by_value, compact):
        assert np.array_equal(packed, got)
    for got, value, want in zip(with_c[:6], by_value, with_numpy[:6]):
        np.testing.assert_allclose(got, want, rtol=1e-13)
        assert np.array_equal(value, got)
    # the bins against a hand loop: bin = cell // (3600 / m), hit counted as 1.0
    hand = np.zeros((3, k, m))
    for i in np.flatnonzero(cells >= 0):
        hand[:, inverse[i], cells[i] // (3600 // m)] += (1.0, calibration[2][i], 1.0 if hits.view(np.uint8)[i] else 0.0)
    np.testing.assert_allclose(with_c[5], hand, rtol=1e-12)


def test_long_lists_are_written_one_item_per_line_and_parse_back():
    """The JSON of 1,000 groups: each on a line of its own (the C encoder), the same document parsed back,
    whatever the data holds (a value equal to the internal marker included)."""
    import json

    from xentcli.render.json_doc import dumps

    mark = "\x00xent-list:groups"
    doc = {"summary": {"x": 1.5}, "groups": [{"by": {"g": mark if i == 3 else i}, "loss_ci": [0.1, 0.2]} for i in range(1000)],
           "diagnostics": [{"message": mark}]}
    text = dumps(doc)
    assert json.loads(text) == doc
    assert text.count("\n") < 1020  # one line per group, not one per field
    # a NaN or inf anywhere (a group's interval, the summary) is null, the layout kept: found by the encoder's refusal
    doc["groups"][7]["loss_ci"] = [float("nan"), float("inf")]
    doc["summary"]["x"] = float("-inf")
    text = dumps(doc)
    back = json.loads(text)
    assert back["groups"][7]["loss_ci"] == [None, None] and back["summary"]["x"] is None
    assert back["groups"][6] == doc["groups"][6] and text.count("\n") < 1020
    assert doc["groups"][7]["loss_ci"][1] == float("inf")  # the document itself is left as it was


def test_c_group_merge_equals_the_numpy_merge_bit_for_bit(monkeypatch):
    """GroupTotals._add_ids in C (native.group_merge) against its numpy twin: chunks of overlapping
    integer groups, some new, some empty of counted rows, with calibration bins, merged in order; every
    array equal to the last bit, and the pooled mean and M2 equal to a float64 formula."""
    from native_paths import require_c_extension

    from xentcli import native
    from xentcli.slices import GroupTotals

    require_c_extension()
    rng = np.random.default_rng(11)
    chunks = []
    for _ in range(6):
        n = 3000
        groups = rng.integers(0, 40, n) + rng.integers(0, 3) * 20 - 7
        loss = rng.gamma(2.0, 0.5, n)
        counted = rng.random(n) < 0.8
        counted[groups == groups[0]] = False  # a group without counted rows in this chunk
        correct = rng.random(n) < 0.5
        cells = np.where(rng.random(n) < 0.9, rng.integers(0, 3600, n), -1)
        chunks.append((groups, loss, counted, correct, (cells, 240, rng.random(n), correct, 15)))

    def merged() -> GroupTotals:
        totals = GroupTotals()
        for groups, loss, counted, correct, calibration in chunks:
            totals.merge(GroupTotals.of_chunk([groups], loss, counted, correct, calibration))
        return totals

    with_c = merged()
    monkeypatch.setattr(native, "has_tally", lambda: False)
    with_numpy = merged()
    assert with_c.keys == with_numpy.keys
    for name in ("rows", "counted", "mean", "m2", "correct", "bins"):
        assert np.array_equal(getattr(with_c, name), getattr(with_numpy, name)), name
    every = np.concatenate([c[0] for c in chunks])
    losses = np.concatenate([c[1] for c in chunks])
    kept = np.concatenate([c[2] for c in chunks])
    for i, (value,) in enumerate(with_c.keys):
        x = losses[(every == value) & kept]
        assert with_c.counted[i] == x.size
        if x.size:
            assert with_c.mean[i] == pytest.approx(x.mean(), rel=1e-12)
            assert with_c.m2[i] == pytest.approx(((x - x.mean()) ** 2).sum(), rel=1e-9, abs=1e-12)


def test_confusions_from_every_row_equal_the_wrong_rows_counted():
    """Confusions.update_rows (one count of all pairs, the diagonal dropped, when every row counts)
    against counting the wrong rows alone (np.unique of their pairs), with and without rows left out."""
    from xentcli.confusions import Confusions

    rng = np.random.default_rng(9)
    label, pred = rng.integers(0, 7, 5000), rng.integers(0, 7, 5000)
    for counted in (np.ones(5000, bool), rng.random(5000) < 0.8):
        fast = Confusions(7)
        fast.update_rows(label, pred, counted)
        wrong = counted & (label != pred)
        codes, counts = np.unique(label[wrong] * 7 + pred[wrong], return_counts=True)
        assert np.array_equal(fast.codes, codes) and np.array_equal(fast.counts, counts)


@pytest.mark.parametrize("index_type, size", [(pa.int8(), 128), (pa.uint8(), 256), (pa.int16(), 300)])
def test_a_dictionary_column_whose_indices_are_full_with_a_null(tmp_path, index_type, size):
    """--by on a dictionary column whose dictionary fills its index type (int8 indices of 128 values)
    and a null: the null's group code is the dictionary's size, which the index type cannot hold, so
    the codes are made in int64 (this once crashed)."""
    n = size + 1
    values = [f"s{i}" for i in range(size)] + [None]
    site = pa.DictionaryArray.from_arrays(pa.array(list(range(size)) + [None], index_type), pa.array([f"s{i}" for i in range(size)]))
    z = np.zeros((n, 2))
    pq.write_table(pa.table({"logits": list(z), "label": [0] * n, "site": site}), tmp_path / "d.parquet")
    doc = json.loads(runner.invoke(app, ["score", str(tmp_path / "d.parquet"), "--by", "site", "--json", "--max-groups", "1000"]).stdout)
    assert sorted((str(g["by"]["site"]), g["rows"]) for g in doc["groups"]) == sorted((str(v), 1) for v in values)


@pytest.mark.parametrize("case", ["one-row group", "infinite spread"])
def test_a_group_without_a_standard_error_fails_the_group_gap_gate(tmp_path, case):
    """A group the gate must test (of --min-group rows or more) but cannot (no standard error: one
    row, or losses whose spread overflows) makes the gate undefined: it fails, naming the group
    (it was skipped, and the gate passed)."""
    rng = np.random.default_rng(11)
    z = rng.standard_normal((300, 2))
    y = rng.integers(0, 2, 300)
    g = ["ok"] * 300
    if case == "one-row group":
        z, y, g, extra = np.vstack([z, [[30.0, 0.0]]]), np.r_[y, 1], g + ["solo"], ["--min-group", "1"]
    else:  # group "bad": 30 rows of logits ~±1e155 against their label, losses ~1e155 whose squares overflow
        z[:30] = np.where(np.arange(2) == y[:30, None], -1.0, 1.0) * 10 ** rng.uniform(155, 156, (30, 1))
        g[:30], extra = ["bad"] * 30, []
    pq.write_table(pa.table({"logits": list(z), "label": y, "g": g}), tmp_path / "d.parquet")
    result = runner.invoke(app, ["check", str(tmp_path / "d.parquet"), "--by", "g", "--max-group-gap", "0.1",
                                 "--fail-on", "never", *extra])
    assert result.exit_code == 1, result.stdout
    name = "solo" if case == "one-row group" else "bad"
    assert f"group gap (Holm lower bound) is undefined: group g={name}" in " ".join(result.stdout.split())


def test_the_other_pool_is_told_apart_from_a_group_named_other(tmp_path):
    """--max-groups 1 with a real group value "(other)": JSON's merged_groups is 0 for it and the
    number of pooled groups for the pool; the table shows the pool as "(other: N groups)"."""
    rng = np.random.default_rng(4)
    z = rng.standard_normal((300, 3))
    names = ["(other)"] * 200 + ["a"] * 60 + ["b"] * 40
    pq.write_table(pa.table({"logits": list(z), "label": rng.integers(0, 3, 300), "g": names}), tmp_path / "d.parquet")
    args = ["score", str(tmp_path / "d.parquet"), "--by", "g", "--max-groups", "1"]
    groups = json.loads(runner.invoke(app, [*args, "--json"]).stdout)["groups"]
    assert sorted((g["by"]["g"], g["counted"], g["merged_groups"]) for g in groups) == [("(other)", 100, 2), ("(other)", 200, 0)]
    table = runner.invoke(app, args, env={"COLUMNS": "160"}).stdout
    assert "(other: 2 groups)" in table


@pytest.mark.parametrize("command", ["score", "check"])
def test_by_refused_on_clustered_rows(tmp_path, command):
    """Found in review: on a sequence dump the groups' intervals were not clustered (6.5x too narrow).
    Until they are, --by with clustered rows is refused: one line, exit 2."""
    rng = np.random.default_rng(15)
    np.save(tmp_path / "qz.npy", rng.normal(size=(4, 10, 3)))
    np.save(tmp_path / "qy.npy", rng.integers(0, 3, (4, 10)))
    np.save(tmp_path / "qg.npy", np.arange(4) % 2)
    pq.write_table(pa.table({"logits": list(rng.normal(size=(40, 3))), "label": rng.integers(0, 3, 40), "doc": np.arange(40) // 4,
                             "g": np.arange(40) % 2}), tmp_path / "d.parquet")
    for args in ([tmp_path / "qz.npy", "--labels", tmp_path / "qy.npy", "--by-file", tmp_path / "qg.npy"],
                 [tmp_path / "d.parquet", "--group-col", "doc", "--by", "g"]):
        result = runner.invoke(app, [command, *map(str, args), *(["--max-group-gap", "0.5"] if command == "check" else ["--json"])])
        assert result.exit_code == 2 and "--by with clustered rows" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert runner.invoke(app, ["score", str(tmp_path / "d.parquet"), "--by", "g", "--json"]).exit_code == 0


def _weighted_group(loss, y_weight, rows, confidence=0.95):
    """The ratio estimator Σy/Σx of `rows` and its linearised interval, float64 by hand (README: Error
    bars): y = x·ℓ, se = √Σ(y − m·x)²/Σx, t with (rows of weight > 0) − 1 degrees of freedom (the t
    quantile itself is held against scipy's in test_stats.py)."""
    x = y_weight[rows]
    y = x * loss[rows]
    m = y.sum() / x.sum()
    k = int((x > 0).sum())
    se = math.sqrt(((y - m * x) ** 2).sum() * k / (k - 1)) / x.sum()  # HC1: weights of 1 give the unweighted SE
    half = stats.t_quantile((1 + confidence) / 2, k - 1) * se
    return m, [m - half, m + half]


def _weighted_dump(groups: int):
    """The review's data: 2,000 rows in `groups` groups by row number, weights that pull group 0's
    mean down (10 on its losses below 0.8) and group 1's up (3 on its losses above 1.5)."""
    rng = np.random.default_rng(15)
    n = 2000
    z, y = rng.normal(size=(n, 3)), rng.integers(0, 3, n)
    loss = sparse_loss64(z, y)
    g = np.arange(n) % groups
    w = np.ones(n)
    w[(g == 0) & (loss < 0.8)] = 10.0
    w[(g == 1) & (loss > 1.5)] = 3.0
    return n, z, y, loss, g, w


@pytest.mark.parametrize("chunk_rows", ["7", "100000"])
def test_weighted_groups_are_the_summarys_estimator_per_group(tmp_path, chunk_rows):
    """Found in review: with sample weights the groups' means were unweighted beside a weighted
    summary, and a --max-group-gap gate passed a weighted gap of +0.64 over 0.5. Each group is now
    the summary's ratio estimator over its rows (sample and class weights, rows of weight 0 too), its
    delta against the weighted mean; a group holding every row has the summary's interval; the
    "(other)" pool is the estimator over the pooled rows; string and integer groups alike."""
    n, z, y, loss, g, w = _weighted_dump(3)
    w[::17] = 0.0
    class_weights = np.array([1.0, 2.0, 0.5])
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "g.npy", g)
    np.save(tmp_path / "all.npy", np.zeros(n, np.int64))
    pq.write_table(pa.table({"logits": list(z), "label": y, "w": w, "g": np.array(["a", "b", "c"])[g]}), tmp_path / "d.parquet")
    for args, x in (([tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--sample-weights", tmp_path / "w.npy", "--by-file", tmp_path / "g.npy"], w),
                    ([tmp_path / "d.parquet", "--weight-col", "w", "--by", "g"], w),
                    ([tmp_path / "d.parquet", "--by", "g", "--class-weights", "1,2,0.5"], class_weights[y])):
        doc = json.loads(runner.invoke(app, ["score", *map(str, args), "--chunk-rows", chunk_rows, "--json"]).stdout)
        overall = (x * loss).sum() / x.sum()
        assert doc["summary"]["loss_mean"] == pytest.approx(overall, rel=1e-12)
        for group in doc["groups"]:
            value = group["by"]["g"]
            rows = g == (value if isinstance(value, int) else "abc".index(value))
            mean, ci = _weighted_group(loss, x, rows)
            assert group["loss_mean"] == pytest.approx(mean, rel=1e-12) and group["loss_ci"] == pytest.approx(ci, rel=1e-9)
            assert group["delta_loss"] == pytest.approx(mean - overall, rel=1e-9, abs=1e-12)
    base = [tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--sample-weights", tmp_path / "w.npy", "--chunk-rows", chunk_rows]
    doc = json.loads(runner.invoke(app, ["score", *map(str, base), "--by-file", str(tmp_path / "all.npy"), "--json"]).stdout)
    assert doc["groups"][0]["loss_ci"] == pytest.approx(doc["summary"]["loss_ci"], rel=1e-12)
    doc = json.loads(runner.invoke(app, ["score", *map(str, base), "--by-file", str(tmp_path / "g.npy"), "--max-groups", "1",
                                         "--json"]).stdout)
    pooled = next(group for group in doc["groups"] if group["merged_groups"])
    mean, ci = _weighted_group(loss, w, g != 0)  # group 0 has the most counted rows (667 of 2000): kept; 1 and 2 pooled
    assert pooled["loss_mean"] == pytest.approx(mean, rel=1e-12) and pooled["loss_ci"] == pytest.approx(ci, rel=1e-9)


def test_weighted_group_gap_gate_and_partials(tmp_path):
    """The review's case: groups of even and odd rows, weights that make group 1's weighted mean
    1.76278 against the overall 1.11819 (float64 by hand): the gap gate at 0.5 fails, naming it; two
    partials merge to the one run."""
    n, z, y, loss, g, w = _weighted_dump(2)
    for folder, rows in (("all", slice(0, n)), ("n0", slice(0, 700)), ("n1", slice(700, n))):
        (tmp_path / folder).mkdir()
        for name, values in (("z", z), ("y", y), ("w", w), ("g", g)):
            np.save(tmp_path / folder / f"{name}.npy", values[rows])

    def args(folder):
        f = tmp_path / folder
        return [str(f / "z.npy"), "--labels", str(f / "y.npy"), "--sample-weights", str(f / "w.npy"), "--by-file", str(f / "g.npy")]

    result = runner.invoke(app, ["check", *args("all"), "--max-group-gap", "0.5", "--ignore", "XE402"])
    assert result.exit_code == 1 and "group g=1: mean loss 1.76278 exceeds the overall 1.11819 by more than 0.5" in result.stdout
    whole = json.loads(runner.invoke(app, ["score", *args("all"), "--json"]).stdout)
    for folder in ("n0", "n1"):
        assert runner.invoke(app, ["score", *args(folder), "--save-partial", str(tmp_path / f"{folder}.xpart"), "-q"]).exit_code == 0
    merged = json.loads(runner.invoke(app, ["merge", str(tmp_path / "n0.xpart"), str(tmp_path / "n1.xpart"), "--json"]).stdout)
    for a, b in zip(whole["groups"], merged["groups"]):
        assert a["by"] == b["by"] and a["loss_mean"] == pytest.approx(b["loss_mean"], rel=1e-12)
        assert a["loss_ci"] == pytest.approx(b["loss_ci"], rel=1e-12)


def test_group_columns_of_other_kinds_across_shards_and_partials_are_refused(tmp_path):
    """Found in review: a bool shard beside an int one merged True with 1 (one group of both), and
    an int shard beside a text one gave groups 1 and "1" shown alike. The kinds of the group values
    (integer, float, text, bool, time, bytes) must agree between shards and between merged partials;
    int32 and int64, or text and dictionary-encoded text, are one kind."""
    rng = np.random.default_rng(0)

    def dump(name, values):
        n = len(values)
        pq.write_table(pa.table({"logits": pa.array(list(rng.normal(size=(n, 3))), pa.list_(pa.float64())),
                                 "label": rng.integers(0, 3, n), "k": values}), tmp_path / name)
        return tmp_path / name

    b, i = dump("b.parquet", pa.array([True, False] * 20)), dump("i.parquet", pa.array([1, 0] * 20))
    s, i32 = dump("s.parquet", pa.array(["1", "0"] * 20)), dump("i32.parquet", pa.array([1, 0] * 20, pa.int32()))
    d = dump("d.parquet", pa.array(["1", "0"] * 20).dictionary_encode())
    for first, second, said in ((b, i, "integer, but"), (i, s, "text, but")):
        result = runner.invoke(app, ["score", str(first), str(second), "--by", "k", "--json"])
        assert result.exit_code == 2 and f"group types is {said}" in result.stderr, result.stderr
        parts = [str(path) + f".{said[:4]}.xpart" for path in (first, second)]
        for path, part in zip((first, second), parts):
            assert runner.invoke(app, ["score", str(path), "--by", "k", "--save-partial", part, "-q"]).exit_code == 0
        result = runner.invoke(app, ["merge", *parts])
        assert result.exit_code == 2 and f"group types is {said}" in result.stderr, result.stderr
    for first, second in ((i, i32), (s, d)):
        doc = json.loads(runner.invoke(app, ["score", str(first), str(second), "--by", "k", "--min-group", "1", "--json"]).stdout)
        assert sorted(g["rows"] for g in doc["groups"]) == [40, 40]


def test_a_null_group_and_the_text_null_are_told_apart(tmp_path):
    """Found in review: a null group and the text "null" were printed alike in the tables and the
    verdicts. A null shows as (null); text that reads as one of xent's labels ("(null)", "(other…)")
    is quoted; JSON keeps null and text apart as ever."""
    n = 200
    z = np.zeros((n, 3))
    z[150:, 0] = 6.0  # the last group is sure of class 0 and wrong: its loss is far above the rest
    g = pa.array(["null"] * 50 + [None] * 50 + ["(null)"] * 50 + ["(other: 3 groups)"] * 50)
    pq.write_table(pa.table({"logits": list(z), "label": np.ones(n, np.int64), "g": g}), tmp_path / "g.parquet")
    result = runner.invoke(app, ["score", str(tmp_path / "g.parquet"), "--by", "g", "--min-group", "1"], terminal_width=200)
    rows = [line.split()[0] for line in result.stdout.splitlines() if line.strip().startswith(("null", "(null)", '"(null)"', '"(other'))]
    assert sorted(rows) == sorted(['null', '(null)', '"(null)"', '"(other:']), result.stdout
    doc = json.loads(runner.invoke(app, ["score", str(tmp_path / "g.parquet"), "--by", "g", "--min-group", "1", "--json"]).stdout)
    assert sorted(str(group["by"]["g"]) for group in doc["groups"]) == sorted(["null", "None", "(null)", "(other: 3 groups)"])
    result = runner.invoke(app, ["check", str(tmp_path / "g.parquet"), "--by", "g", "--min-group", "1", "--max-group-gap", "0.1"])
    assert result.exit_code == 1 and 'group g="(other: 3 groups)": mean loss' in result.stdout, result.stdout


def test_max_groups_breaks_ties_by_value_not_text(tmp_path):
    """Found in review: of groups with as many rows, --max-groups kept user 1072 before user 17 —
    ties were broken by the values' text. By value, as the README says: 17 and 300 stay."""
    rng = np.random.default_rng(1)
    users = np.repeat([1072, 17, 300], 5)
    z = rng.standard_normal((15, 3))
    pq.write_table(pa.table({"logits": list(z), "label": rng.integers(0, 3, 15), "user": users}), tmp_path / "d.parquet")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "d.parquet"), "--by", "user", "--max-groups", "2", "--min-group", "1", "--json"])
    assert result.exit_code == 0, result.stderr
    kept = {g["by"]["user"] for g in json.loads(result.stdout)["groups"]}
    assert kept == {17, 300, "(other)"}


def test_a_passing_group_gap_names_the_small_groups_it_did_not_test(tmp_path):
    """Found in review: `check --max-group-gap` passed without a word on the groups under --min-group."""
    rng = np.random.default_rng(2)
    sizes = {"big": 80, "mid": 60, "tiny": 5, "wee": 3}
    g = np.concatenate([[name] * n for name, n in sizes.items()])
    z = rng.standard_normal((g.size, 3))
    pq.write_table(pa.table({"logits": list(z), "label": rng.integers(0, 3, g.size), "g": g}), tmp_path / "d.parquet")
    result = runner.invoke(app, ["check", str(tmp_path / "d.parquet"), "--by", "g", "--max-group-gap", "10", "--json"])
    assert result.exit_code == 0, result.stderr
    gate, = [c for c in json.loads(result.stdout)["gates"] if c["gate"].startswith("group gap")]
    assert gate["untested_groups"] == 2 and gate["passed"]
    text = runner.invoke(app, ["check", str(tmp_path / "d.parquet"), "--by", "g", "--max-group-gap", "10"])
    assert text.stdout.strip().splitlines()[-1].endswith("(2 small groups under --min-group not tested)")
