"""Partial files (--save-partial) and `xent merge`: merging the partials of an input's pieces, in
order, reports what one run over the whole input reports; other options, layouts and hostile files
are refused with one line (exit 2)."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from xentcli.cli import app
from xentcli.partial_file import VERSION

runner = CliRunner()


def xent(*args, code=0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def doc(*args, code=0):
    return json.loads(xent(*args, "--json", code=code).stdout)


def without_paths(document):
    """The report less what names the files: the input's path, shards and labels file."""
    for key in ("path", "labels_path", "shards"):
        document["input"].pop(key, None)
    return document


def log_softmax(z):
    z = z.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


@pytest.fixture
def pieces(tmp_path):
    """A dump of 7,000 rows with a NaN row, an overflowing row, an ignored and an out-of-range
    label, cut into 7 pieces of unequal size; and the whole dump."""
    rng = np.random.default_rng(18)
    n = 7000
    z = (rng.standard_normal((n, 12)) * 2.5).astype(np.float32)
    y = rng.integers(0, 12, n)
    z[1234, 5] = np.nan
    y[4321] = -100
    y[5555] = 12
    groups = rng.integers(0, 5, n)
    cuts = [0, 900, 1000, 2500, 2501, 4000, 6100, n]
    files = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        (tmp_path / f"node{i}").mkdir()
        np.save(tmp_path / f"z{i}.npy", z[a:b])
        np.save(tmp_path / f"y{i}.npy", y[a:b])
        np.save(tmp_path / f"node{i}" / "g.npy", groups[a:b])  # one name: the groups' name is the file's stem
        files.append(i)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "g.npy", groups)
    return tmp_path, z, y, files


OPTIONS = ["--worst", "6", "--per-class", "--calibration", "--confusions", "5", "--top-k", "3", "--chunk-rows", "100"]


def _partials(folder, indices, extra=()):
    out = []
    for i in indices:
        path = folder / f"part{i}.xpart"
        xent("score", folder / f"z{i}.npy", "--labels", folder / f"y{i}.npy", "--by-file", folder / f"node{i}" / "g.npy", *OPTIONS, *extra,
             "--save-partial", path, "-q", "--json")
        out.append(path)
    return out


def test_seven_partials_merge_to_the_one_run(pieces):
    folder, z, y, files = pieces
    whole = doc("score", folder / "z.npy", "--labels", folder / "y.npy", "--by-file", folder / "g.npy", *OPTIONS)
    merged = doc("merge", *_partials(folder, files))
    # rows are numbered across the partials in order: the worst rows and the examples point into the whole dump
    assert [row["row"] for row in merged["worst"]] == [row["row"] for row in whole["worst"]]
    by_code = {d["code"]: d for d in merged["diagnostics"]}
    assert by_code["XE101"]["examples"][0]["row"] == 1234
    assert by_code["XE201"]["examples"][0]["row"] == 5555
    # chunks of 100 rows start on the pieces' boundaries (all multiples of 100 but 2501): sums agree to rounding
    whole, merged = without_paths(whole), without_paths(merged)
    assert merged["summary"]["rows"] == 7000 and merged["summary"]["ignored"] == 1
    assert merged["summary"]["loss_mean"] == pytest.approx(whole["summary"]["loss_mean"], rel=1e-15)
    for key in ("rows", "counted", "nonfinite", "loss_p50", "loss_p90", "loss_p99", "loss_min", "loss_max", "accuracy",
                "top_k_accuracy", "accuracy_ci"):
        assert merged["summary"][key] == whole["summary"][key], key
    assert merged["diagnostics"] == whole["diagnostics"]
    assert merged["confusions"] == whole["confusions"]
    assert [g["counted"] for g in merged["groups"]] == [g["counted"] for g in whole["groups"]]
    assert merged["calibration"]["ece"] == pytest.approx(whole["calibration"]["ece"], rel=1e-13)
    # the mean loss from its float64 formula over the counted rows (the NaN row and labels -100 and 12 left out)
    keep = np.ones(7000, bool)
    keep[[1234, 4321, 5555]] = False
    expected = -log_softmax(z[keep])[np.arange(keep.sum()), y[keep]].mean()
    assert merged["summary"]["loss_mean"] == pytest.approx(expected, rel=1e-6)  # float32 scores: the kernel's 1e-6 guarantee


@pytest.mark.parametrize("count", [1, 2])
def test_one_and_two_partials(pieces, count):
    folder, _, _, _ = pieces
    parts = _partials(folder, range(count))
    merged = doc("merge", *parts)
    alone = doc("score", *[folder / f"z{i}.npy" for i in range(count)][:1], "--labels", folder / "y0.npy",
                "--by-file", folder / "node0" / "g.npy", *OPTIONS) if count == 1 else None
    if alone is not None:
        assert without_paths(merged) == without_paths(alone)  # one partial: exactly its run
    else:
        assert merged["summary"]["rows"] == 1000 and merged["input"]["shards"] == 2


def test_order_is_the_input_order(pieces):
    folder, _, _, _ = pieces
    a, b = _partials(folder, [0, 1])
    forward, backward = doc("merge", a, b), doc("merge", b, a)
    assert forward["summary"]["loss_sum"] == pytest.approx(backward["summary"]["loss_sum"], rel=1e-15)
    # piece 1 has 100 rows: first, its rows are 0-99; second, 900-999
    rows_b_first = {r["row"] for r in backward["worst"]}
    rows_a_first = {r["row"] for r in forward["worst"]}
    assert {r - 900 if r >= 900 else r + 100 for r in rows_a_first} == rows_b_first


def test_gates_apply_to_the_merged_run(pieces):
    folder, _, _, _ = pieces
    parts = _partials(folder, [0, 1])
    assert xent("merge", *parts).exit_code == 0  # no gate: a report, as score
    result = xent("merge", *parts, "--max-loss", "0.1", code=1)
    assert "FAIL" in result.stdout
    checked = json.loads(xent("merge", *parts, "--fail-on", "never", "--max-nonfinite", "5", "--json").stdout)
    assert checked["passed"] is True and checked["summary"]["rows"] == 1000


def test_other_options_are_refused(pieces):
    folder, _, _, _ = pieces
    a = _partials(folder, [0])[0]
    other = folder / "other.xpart"
    xent("score", folder / "z1.npy", "--labels", folder / "y1.npy", "--by-file", folder / "node1" / "g.npy", *OPTIONS, "--label-smoothing",
         "0.1", "--save-partial", other, "-q", "--json")
    result = xent("merge", a, other, code=2)
    assert "label-smoothing 0.0 vs 0.1" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_options_that_differ_are_named_as_a_user_writes_them(tmp_path):
    """Found in review: "by ('region',) vs (); calibration True vs False" showed Python values."""
    sample = Path(__file__).resolve().parents[1] / "sample_data" / "cifar10_val.parquet"
    xent("score", sample, "--by", "label", "--save-partial", tmp_path / "a.xpart", "-q", "--json")
    xent("score", sample, "--calibration", "--save-partial", tmp_path / "b.xpart", "-q", "--json")
    result = runner.invoke(app, ["merge", str(tmp_path / "a.xpart"), str(tmp_path / "b.xpart")])
    assert result.exit_code == 2 and "by 'label' vs none; calibration off vs on" in result.stderr


def test_other_classes_are_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 3), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((4, 5), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(4, np.int64))
    for name in "ab":
        xent("score", tmp_path / f"{name}.npy", "--labels", tmp_path / "y.npy", "--save-partial", tmp_path / f"{name}.xpart", "-q")
    result = xent("merge", tmp_path / "a.xpart", tmp_path / "b.xpart", code=2)
    assert "num classes is 5, but" in result.stderr


def test_save_partial_never_overwrites(pieces):
    folder, _, _, _ = pieces
    (target := folder / "exists.xpart").write_text("keep")
    result = xent("score", folder / "z0.npy", "--labels", folder / "y0.npy", "--save-partial", target, code=2)
    assert "already exists" in result.stderr and target.read_text() == "keep"
    result = xent("score", folder / "z0.npy", "--labels", folder / "y0.npy", "--save-partial", folder / "y0.npy", code=2)
    assert "is one of the inputs" in result.stderr
    result = xent("score", folder / "z0.npy", "--labels", folder / "y0.npy", "--temperature-scan", "--save-partial", folder / "t.xpart", code=2)
    assert "not supported yet" in result.stderr and not (folder / "t.xpart").exists()


def _hostile(good: str):
    """Variants of a good partial file that must be refused, never run."""
    document = json.loads(good)
    state = json.loads(document["state"])

    def with_state(tree):
        import hashlib

        text = json.dumps(tree)
        return json.dumps({**document, "state": text, "sha256": hashlib.sha256(text.encode()).hexdigest()})

    pickle_like = base64.b64encode(b"\x80\x04cos\nsystem\n").decode()
    yield "empty", ""
    yield "not json", "{not json"
    yield "binary", "\x00\xff\xfe"
    yield "a list", "[1, 2, 3]"
    yield "other format", json.dumps({**document, "format": "pickle"})
    yield "future version", json.dumps({**document, "version": 99})
    yield "edited state", json.dumps({**document, "state": document["state"].replace('"rows":', '"rows": 1 ,"x":', 1)})
    yield "cut short", good[: len(good) // 2]
    yield "NaN constant", good.replace(f'"version": {VERSION}', '"version": NaN')

    def edited(part, field, value):  # the options and the input lie outside the digest: each field is checked
        return json.dumps({**document, part: {**document[part], "v": {**document[part]["v"], field: value}}})

    yield "input path as a number", edited("input", "path", 5)
    yield "input dtype as a number", edited("input", "score_dtype", 5)
    yield "input rows below 0", edited("input", "rows", -5)
    yield "input classes as text", edited("input", "num_classes", "10")
    yield "options confidence 0", edited("options", "confidence", 0.0)
    yield "options top-k below 1", edited("options", "top_k", -3)
    yield "options worst below 0", edited("options", "worst", -1)
    yield "options threshold as text", edited("options", "threshold", "0.5")
    yield "options loss options as a list", edited("options", "loss", [1, 2])
    yield "options 7 bins", edited("options", "bins", 7)
    loss_options = document["options"]["v"]["loss"]
    yield "options smoothing 2", edited("options", "loss", {**loss_options, "v": {**loss_options["v"], "label_smoothing": 2.0}})
    yield "options a preset of no framework", edited("options", "loss", {**loss_options, "v": {**loss_options["v"], "like": "caffe"}})
    yield "unknown class", with_state({"$": "Popen", "v": {"args": ["rm", "-rf", "/"]}})
    yield "a class's method", with_state({"$": "__reduce__", "v": {}})
    yield "object dtype bytes", with_state({"$a": "|O", "shape": [1], "b64": pickle_like})
    yield "wrong shape", with_state({**state, "v": {**state["v"], "samples": {"$a": "<i8", "shape": [3], "b64": "AAAA"}}})
    yield "missing attribute", with_state({**state, "v": {k: v for k, v in state["v"].items() if k != "findings"}})
    yield "extra attribute", with_state({**state, "v": {**state["v"], "__class__": "x"}})
    summary = state["v"]["summary"]
    yield "negative count", with_state({**state, "v": {**state["v"], "summary": {**summary, "v": {**summary["v"], "rows": -5}}}})
    yield "count as text", with_state({**state, "v": {**state["v"], "summary": {**summary, "v": {**summary["v"], "counted": "7"}}}})
    yield "deep nesting", with_state(json.loads("[" * 50 + "]" * 50))
    yield "a tag of the wrong type", with_state({"$t": 5})
    yield "a NaN key", with_state({**state, "v": {**state["v"], "findings": {"$d": [[{"$f": "nan"}, 1]]}}})
    def finding_rows(rows):  # a finding whose count is not one a run can make (found in review: it passed a gate)
        return with_state({**state, "v": {**state["v"], "findings": {"$d": [["XE104", {
            "$": "Finding", "v": {"code": "XE104", "rows": rows, "facts": {"$d": []}, "merge_rules": {"$d": []}, "examples": [],
                                  "rank_by": None}}]]}}})

    yield "a finding of -1 rows", finding_rows(-1)
    yield "a finding of 2.5 rows", finding_rows(2.5)
    yield "a finding of more rows than the input", finding_rows(10**9)
    rows = summary["v"]["rows"]
    yield "more rows than the input's", with_state({**state, "v": {**state["v"], "summary": {**summary, "v": {**summary["v"], "rows": rows + 996}}}})
    yield "a NaN smallest loss", with_state({**state, "v": {**state["v"], "summary": {**summary, "v": {**summary["v"], "loss_min": {"$f": "nan"}}}}})
    yield "top-k of 0", with_state({**state, "v": {**state["v"], "summary": {**summary, "v": {**summary["v"], "top_k": 0}}}})
    for key in ("loss", "label", "pred", "p_true", "row"):  # found in review: a worst row without its loss was a traceback
        if f'["{key}",' in document["state"]:
            yield f"a worst row without its {key}", with_state(json.loads(document["state"].replace(f'["{key}",', f'["{key.upper()}",', 1)))
    yield "an example keyed by a number", with_state({**state, "v": {**state["v"], "findings": {"$d": [["XE101", {
        "$": "Finding", "v": {"code": "XE101", "rows": 1, "facts": {"$d": []}, "merge_rules": {"$d": []},
                              "examples": [{"$d": [[5, 1]]}], "rank_by": None}}]]}}})


def test_hostile_partial_files_are_refused(pieces, tmp_path):
    folder, _, _, _ = pieces
    good = _partials(folder, [1])[0]
    text = Path(good).read_text()
    for name, content in _hostile(text):
        path = tmp_path / "hostile.xpart"
        path.write_bytes(content.encode("utf-8", "surrogateescape") if name != "binary" else b"\x00\xff\xfe")
        result = runner.invoke(app, ["merge", str(good), str(path)])
        assert result.exit_code == 2, (name, result.stdout, result.stderr, result.exception)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "hostile.xpart" in lines[0], (name, lines)
    result = xent("merge", folder / "nothing.xpart", code=2)
    assert "no such file" in result.stderr
    result = xent("merge", folder, code=2)
    assert "is a folder" in result.stderr


def test_a_partial_round_trips_every_accumulator(tmp_path):
    """Sequences (clustered errors, per-sequence rows), frameworks, weights and groups survive the file."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal((6, 5, 4)).astype(np.float32)
    y = rng.integers(0, 4, (6, 5))
    w = rng.uniform(0.5, 2, 6)
    for name, sl in (("a", slice(0, 4)), ("b", slice(4, 6)), ("all", slice(0, 6))):
        np.save(tmp_path / f"z{name}.npy", z[sl])
        np.save(tmp_path / f"y{name}.npy", y[sl])
        np.save(tmp_path / f"w{name}.npy", w[sl])
    options = ["--per-sequence", "--compare-frameworks", "--worst", "3"]
    for name in "ab":
        xent("score", tmp_path / f"z{name}.npy", "--labels", tmp_path / f"y{name}.npy", "--sample-weights", tmp_path / f"w{name}.npy",
             *options, "--save-partial", tmp_path / f"{name}.xpart", "-q")
    whole = without_paths(doc("score", tmp_path / "zall.npy", "--labels", tmp_path / "yall.npy", "--sample-weights", tmp_path / "wall.npy",
                              *options))
    merged = without_paths(doc("merge", tmp_path / "a.xpart", tmp_path / "b.xpart"))
    assert [s["sequence"] for s in merged["per_sequence"]] == list(range(6))  # b's sequences numbered after a's
    for mine, theirs in zip(merged["per_sequence"], whole["per_sequence"], strict=True):
        assert {k: v for k, v in mine.items() if k != "loss_sum" and k != "loss_mean" and k != "perplexity"} == \
            {k: v for k, v in theirs.items() if k != "loss_sum" and k != "loss_mean" and k != "perplexity"}
        assert mine["loss_sum"] == pytest.approx(theirs["loss_sum"], rel=1e-15)
    assert merged["summary"]["loss_mean"] == pytest.approx(whole["summary"]["loss_mean"], rel=1e-15)
    assert merged["summary"]["loss_se"] == pytest.approx(whole["summary"]["loss_se"], rel=1e-13)
    assert [c["loss"] for c in merged["compare"]["frameworks"]] == pytest.approx([c["loss"] for c in whole["compare"]["frameworks"]], rel=1e-15)
    assert merged["worst"] == whole["worst"]
    # the weighted mean from its formula: Σ w·ℓ / Σ w over every token (each sequence's weight on its 5 tokens)
    lp = log_softmax(z.reshape(-1, 4))
    loss = -lp[np.arange(30), y.reshape(-1)]
    weights = np.repeat(w, 5)
    assert merged["summary"]["loss_mean"] == pytest.approx(float((weights * loss).sum() / weights.sum()), rel=1e-6)
    assert not math.isnan(merged["summary"]["loss_se"])


def test_partials_of_the_wrong_types_are_refused(pieces, tmp_path):
    """A digest recomputed over a state whose values have other types than xent's: refused, never a traceback."""
    import hashlib

    folder, _, _, _ = pieces
    good_path = _partials(folder, [1])[0]
    good = Path(good_path).read_text()
    document = json.loads(good)
    state = json.loads(document["state"])
    summary = state["v"]["summary"]["v"]
    float_array = {"$a": "<f8", "shape": [3], "b64": base64.b64encode(np.zeros(3).tobytes()).decode()}
    variants = {
        "worst rows as floats": {**summary, "worst": {**summary["worst"], "v": {**summary["worst"]["v"], "rows": float_array}}},
        "worst rows as int8": {**summary, "worst": {**summary["worst"], "v": {  # wrapped to negatives when renumbered (found in review)
            **summary["worst"]["v"], "rows": {**summary["worst"]["v"]["rows"], "$a": "|i1", "b64": base64.b64encode(
                np.frombuffer(base64.b64decode(summary["worst"]["v"]["rows"]["b64"]), "<i8").astype(np.int8).tobytes()).decode()}}}},
        "worst losses as float32": {**summary, "worst": {**summary["worst"], "v": {
            **summary["worst"]["v"], "loss": {**summary["worst"]["v"]["loss"], "$a": "<f4", "b64": base64.b64encode(
                np.frombuffer(base64.b64decode(summary["worst"]["v"]["loss"]["b64"]), "<f8").astype(np.float32).tobytes()).decode()}}}},
        "sketch as a list": {**summary, "sketch": [1, 2]},
        "loss sum as text": {**summary, "moments": {**summary["moments"], "v": {**summary["moments"]["v"], "total": "0.5"}}},
        "loss sum as a float": {**summary, "moments": {**summary["moments"], "v": {**summary["moments"]["v"], "total": 0.5}}},
        "a negative M2": {**summary, "moments": {**summary["moments"], "v": {**summary["moments"]["v"], "m2": -1}}},
        "a sum of 5,000 digits": {**summary, "moments": {**summary["moments"], "v": {**summary["moments"]["v"], "total": "$huge"}}},
        "more losses than counted rows": {**summary, "moments": {**summary["moments"], "v": {
            **summary["moments"]["v"], "n": summary["moments"]["v"]["n"] + 1}}},
        "a pending piece outside its block": {**summary, "moments": {**summary["moments"], "v": {
            **summary["moments"]["v"], "pending": {"$d": [[3, [[0, 5, {"$a": "<f8", "shape": [1, 0], "b64": ""}]]]]}}}},
        "a pending piece of more losses than rows": {**summary, "moments": {**summary["moments"], "v": {
            **summary["moments"]["v"], "pending": {"$d": [[0, [[0, 2, {**float_array, "shape": [1, 3]}]]]]}}}},
        "weighted without weights": {**summary, "weighted": True},
        "a special sum of 5": {**summary, "moments": {**summary["moments"], "v": {**summary["moments"]["v"], "special": 5.0}}},
        "pending rows that do not add up": {**summary, "moments": {**summary["moments"], "v": {
            **summary["moments"]["v"], "covered": {"$d": [[0, 5]]}}}},
        "a pending piece of text": {**summary, "moments": {**summary["moments"], "v": {
            **summary["moments"]["v"], "pending": {"$d": [[0, "piece"]]}}}},
        "per-class support as floats": {**summary, "per_class": {**summary["per_class"], "v": {**summary["per_class"]["v"],
                                                                                                "support": float_array}}},
        "calibration of another class": {**summary, "calibration": summary["moments"]},
        "moments n as a float": {**summary, "moments": {**summary["moments"], "v": {**summary["moments"]["v"], "n": 1.5}}},
        "per-class sums of two classes": {**summary, "per_class": {**summary["per_class"], "v": {
            **summary["per_class"]["v"], "loss_sum": {"$a": "<f8", "shape": [2], "b64": base64.b64encode(np.zeros(2).tobytes()).decode()}}}},
        "worst losses shorter than their rows": {**summary, "worst": {**summary["worst"], "v": {
            **summary["worst"]["v"], "loss": {"$a": "<f8", "shape": [0], "b64": ""}}}},
        "another sketch accuracy": {**summary, "sketch": {**summary["sketch"], "v": {**summary["sketch"]["v"], "relative_accuracy": 0.01}}},
        "a bucket far away": {**summary, "sketch": {**summary["sketch"], "v": {**summary["sketch"]["v"], "positive": {
            **summary["sketch"]["v"]["positive"], "v": {**summary["sketch"]["v"]["positive"]["v"], "low": 10**30}}}}},
    }
    worst = summary["worst"]["v"]
    n = len(np.frombuffer(base64.b64decode(worst["rows"]["b64"]), "<i8"))
    assert n == 6 and [key for key, _ in worst["columns"]["$d"]] == ["id", "label", "pred", "p_true"]

    def worst_columns(**changed):
        pairs = [[key, changed.pop(key, value)] for key, value in worst["columns"]["$d"]] + [[key, value] for key, value in changed.items()]
        return {**summary, "worst": {**summary["worst"], "v": {**worst, "columns": {"$d": [pair for pair in pairs if pair[1] is not None]}}}}

    floats = {"$a": "<f8", "shape": [n], "b64": base64.b64encode(np.zeros(n).tobytes()).decode()}
    kept_rows = np.frombuffer(base64.b64decode(worst["rows"]["b64"]), "<i8")
    kept_loss = np.frombuffer(base64.b64decode(worst["loss"]["b64"]), "<f8")

    def array(values, dtype):
        base = kept_rows if dtype == "<i8" else kept_loss
        values = base if values is None else base[::-1] if values == "reversed" else np.r_[np.nan, base[1:]] if values == "nan" else values
        return {"$a": dtype, "shape": [n], "b64": base64.b64encode(np.asarray(values, dtype).tobytes()).decode()}

    objects = lambda *values: {"$o": list(values), "shape": [len(values)]}  # noqa: E731
    variants.update({  # the worst rows' columns (kept as columns since partial version 6)
        "worst labels as floats": worst_columns(label=floats),
        "worst probabilities as integers": worst_columns(p_true={**floats, "$a": "<i8"}),
        "worst rows without their predictions": worst_columns(pred=None),
        "worst rows with a column of their own": worst_columns(extra=floats),
        "worst ids one short": worst_columns(id=objects(*[1] * (n - 1))),
        "a worst id of a list": worst_columns(id=objects(*[1] * (n - 1), {"$t": [1, 2]})),
        "worst sequences without positions": worst_columns(sample=objects(*[0] * n)),
        "a worst position of a float": worst_columns(sample=objects(*[0] * n), position=objects(*[0] * (n - 1), 1.5)),
        "worst rows naming sequences of a flat dump": worst_columns(sample=objects(*[0] * n), position=objects(*[0] * n)),
        **{f"worst rows {what}": {**summary, "worst": {**summary["worst"], "v": {**worst, "rows": array(rows, "<i8"), "loss": array(loss, "<f8")}}}
           for what, rows, loss in (  # found in review: each merged silently
               ("negative", [-1, 1, 2, 3, 4, 5], None), ("beyond the input", [0, 1, 2, 3, 4, 10**9], None),
               ("repeated", [0, 1, 2, 3, 4, 0], None), ("out of order", None, "reversed"), ("with a NaN loss", None, "nan"))},
        "worst rows kept for k = 10^30": {**summary, "worst": {**summary["worst"], "v": {**worst, "k": 10**30}}},
        "worst columns for no rows": {**summary, "worst": {**summary["worst"], "v": {
            **worst, "rows": {"$a": "<i8", "shape": [0], "b64": ""}, "loss": {"$a": "<f8", "shape": [0], "b64": ""}}}},
    })
    for name, changed in variants.items():
        tree = {**state, "v": {**state["v"], "summary": {**state["v"]["summary"], "v": changed}}}
        text = json.dumps(tree).replace('"$huge"', "9" * 5000)  # beyond Python's 4,300 digits of int("…")
        path = tmp_path / "typed.xpart"
        path.write_text(json.dumps({**document, "state": text, "sha256": hashlib.sha256(text.encode()).hexdigest()}))
        for pair in ([str(path)], [str(path), str(good_path)], [str(good_path), str(path)]):
            result = runner.invoke(app, ["merge", *pair, "--json"])
            assert result.exit_code == 2, (name, pair, result.stdout, result.exception)
            assert "typed.xpart" in json.loads(result.stdout)["error"]["message"], name


def test_string_and_several_group_columns_merge(tmp_path):
    """GroupTotals of text keys (no integer index) and of two --by columns survive the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(4)
    n = 600
    z = rng.standard_normal((n, 4)).astype(np.float32)
    table = pa.table({"logits": pa.FixedSizeListArray.from_arrays(pa.array(z.ravel()), 4), "label": rng.integers(0, 4, n),
                      "lang": rng.choice(["en", "de", "fr"], n), "split": rng.integers(0, 2, n)})
    pq.write_table(table, tmp_path / "all.parquet")
    pq.write_table(table.slice(0, 250), tmp_path / "a.parquet")
    pq.write_table(table.slice(250), tmp_path / "b.parquet")
    for by in (["--by", "lang"], ["--by", "lang", "--by", "split"]):
        for name in "ab":
            xent("score", tmp_path / f"{name}.parquet", *by, "--save-partial", tmp_path / f"{name}.xpart", "--force", "-q")
        merged = doc("merge", tmp_path / "a.xpart", tmp_path / "b.xpart")
        whole = doc("score", tmp_path / "all.parquet", *by)
        assert [(g["by"], g["counted"]) for g in merged["groups"]] == [(g["by"], g["counted"]) for g in whole["groups"]]
        for mine, theirs in zip(merged["groups"], whole["groups"]):
            assert mine["loss_mean"] == pytest.approx(theirs["loss_mean"], rel=1e-14)


def test_the_merged_input_describes_every_partial(tmp_path):
    rng = np.random.default_rng(8)
    for name, n in (("a", 20), ("b", 33)):
        np.save(tmp_path / f"z{name}.npy", rng.standard_normal((n, 3, 5)).astype(np.float32))
        np.save(tmp_path / f"y{name}.npy", rng.integers(0, 5, (n, 3)))
        xent("score", tmp_path / f"z{name}.npy", "--labels", tmp_path / f"y{name}.npy", "--save-partial", tmp_path / f"{name}.xpart", "-q")
    merged = doc("merge", tmp_path / "a.xpart", tmp_path / "b.xpart")["input"]
    assert merged["samples"] == 53 and merged["rows"] == 159
    assert "20 sequences" in merged["sequences"] and "33 sequences" in merged["sequences"]
    assert "[20, 3, 5]" in merged["scores"] and "[33, 3, 5]" in merged["scores"]


def test_outputs_are_checked_before_the_run(pieces):
    folder, _, _, _ = pieces
    args = ["score", folder / "z0.npy", "--labels", folder / "y0.npy", "-q"]
    result = xent(*args, "-o", folder / "x.parquet", "--save-partial", folder / "x.parquet", "--force", code=2)
    assert "-o and --save-partial name the same file" in result.stderr and not (folder / "x.parquet").exists()
    (folder / "r.html").write_text("keep")
    result = xent(*args, "-o", folder / "rows.parquet", "--save-partial", folder / "p.xpart", "--report", folder / "r.html", code=2)
    assert "already exists" in result.stderr
    assert not (folder / "rows.parquet").exists() and not (folder / "p.xpart").exists() and (folder / "r.html").read_text() == "keep"
    result = xent(*args, "--save-partial", folder / "q.xpart", "--report", folder / "missing" / "r.html", code=2)
    assert not (folder / "q.xpart").exists()


def test_a_part_whose_weights_are_all_zero_saves_its_partial(tmp_path):
    """Its own report is undefined (exit 2), its totals merge: the whole dump's weighted mean."""
    rng = np.random.default_rng(6)
    z = rng.standard_normal((40, 3)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    w = np.r_[np.zeros(15), rng.uniform(0.5, 2, 25)]
    for name, sl in (("a", slice(0, 15)), ("b", slice(15, 40)), ("all", slice(0, 40))):
        np.save(tmp_path / f"z{name}.npy", z[sl])
        np.save(tmp_path / f"y{name}.npy", y[sl])
        np.save(tmp_path / f"w{name}.npy", w[sl])
    result = xent("score", tmp_path / "za.npy", "--labels", tmp_path / "ya.npy", "--sample-weights", tmp_path / "wa.npy",
                  "--save-partial", tmp_path / "a.xpart", code=2)
    assert "every sample weight is 0" in result.stderr and "partial totals were written" in result.stderr
    xent("score", tmp_path / "zb.npy", "--labels", tmp_path / "yb.npy", "--sample-weights", tmp_path / "wb.npy",
         "--save-partial", tmp_path / "b.xpart", "-q")
    merged = doc("merge", tmp_path / "a.xpart", tmp_path / "b.xpart")
    whole = doc("score", tmp_path / "zall.npy", "--labels", tmp_path / "yall.npy", "--sample-weights", tmp_path / "wall.npy")
    assert merged["summary"]["loss_mean"] == pytest.approx(whole["summary"]["loss_mean"], rel=1e-15)


def test_group_bins_of_another_bin_count_are_refused(pieces, tmp_path):
    """A partial whose groups' calibration bins have another count than its --bins (a crafted file:
    xent writes them with one): refused in one line before any merge writes into the totals."""
    import hashlib

    folder, _, _, _ = pieces
    good = _partials(folder, [1])[0]
    document = json.loads(Path(good).read_text())
    text = document["state"]
    state = json.loads(text)

    def widen(node):  # the groups' bins [3, G, M] become [3, G, M + 1]
        if isinstance(node, dict):
            if node.get("$") == "GroupTotals" and isinstance(node["v"].get("bins"), dict):
                bins = node["v"]["bins"]
                shape = [bins["shape"][0], bins["shape"][1], bins["shape"][2] + 1]
                node["v"]["bins"] = {**bins, "shape": shape, "b64": base64.b64encode(np.zeros(shape).tobytes()).decode()}
                return True
            return any(widen(v) for v in node.values())
        if isinstance(node, list):
            return any(widen(v) for v in node)
        return False

    assert widen(state)  # the partial holds calibrated groups
    text = json.dumps(state)
    crafted = tmp_path / "crafted.xpart"
    crafted.write_text(json.dumps({**document, "state": text, "sha256": hashlib.sha256(text.encode()).hexdigest()}))
    result = runner.invoke(app, ["merge", str(good), str(crafted)])
    assert result.exit_code == 2 and result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "crafted.xpart" in lines[0] and "bins" in lines[0], lines


def test_a_partial_whose_class_names_do_not_name_its_classes_is_refused(tmp_path):
    """Found in review: an edited partial whose class names were fewer than its classes was refused
    with 'IndexError: tuple index out of range'; it is refused for what it is."""
    np.save(tmp_path / "z.npy", np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]], np.float32))
    np.save(tmp_path / "y.npy", np.array([2, 0]))
    (tmp_path / "classes.txt").write_text("cat\ndog\nfox\n")
    path = tmp_path / "p.xpart"
    xent("score", tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--classes", tmp_path / "classes.txt", "--per-class",
         "--save-partial", path, "-q")
    document = json.loads(path.read_text())
    text = json.dumps(document["input"])
    assert '"cat", "dog", "fox"' in text
    path.write_text(json.dumps({**document, "input": json.loads(text.replace('"cat", "dog", "fox"', '"cat", "dog"'))}))
    result = runner.invoke(app, ["merge", str(path)])
    assert result.exit_code == 2 and "class names (2) do not name its 3 classes" in result.stderr, result.stderr


def test_a_partial_merged_twice_is_refused_and_gates_name_what_the_partials_lack(tmp_path):
    """Found in a new-user review: `merge a.xpart a.xpart` counted the rows twice without a word;
    `merge --max-ece` said 'add --calibration' and `--max-group-gap` failed as 'undefined' (exit 1),
    where the partials lacked the sums. The same file or a copy is refused; the gates say how to save
    partials that hold what they need (exit 2)."""
    import shutil

    sample = Path(__file__).resolve().parent.parent / "sample_data" / "cifar10_val.parquet"
    a = tmp_path / "a.xpart"
    xent("score", sample, "--save-partial", a, "-q")
    shutil.copy(a, tmp_path / "b.xpart")
    for pair, says in (([a, a], "is named twice"), ([a, tmp_path / "b.xpart"], "is a copy of")):
        result = runner.invoke(app, ["merge", *map(str, pair)])
        assert result.exit_code == 2 and says in result.stderr and "count twice" in result.stderr
    for gate, says in ((["--max-ece", "0.1"], "xent score --calibration --save-partial"),
                       (["--max-group-gap", "0.1"], "xent score --by COL --save-partial")):
        result = runner.invoke(app, ["merge", str(a), *gate])
        assert result.exit_code == 2 and says in result.stderr, result.stderr
    assert runner.invoke(app, ["merge", str(a), "--max-loss", "5"]).exit_code == 0


@pytest.mark.parametrize("sizes", [(1, 5), (1, 1, 4), (2, 1, 3), (5, 1), (1, 1, 1, 1, 1, 1)])
def test_sequence_partials_of_one_sequence_merge_as_the_whole_run(tmp_path, sizes):
    """A sequence dump ([N, T, C], ignored positions) cut into files with a part of one sequence:
    the merged partials give the whole run's clustered intervals. A partial of one sequence had its
    first and last runs written as two lists, and the merge closed that sequence twice (loss_se
    0.42 for 0.36; found in review, 2026-12-03)."""
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(6, 5, 7)), rng.integers(0, 7, (6, 5))
    y[rng.random((6, 5)) < 0.3] = -100
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    whole = runner.invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--json"])
    paths, start = [], 0
    for i, size in enumerate(sizes):
        np.save(tmp_path / f"z{i}.npy", z[start:start + size])
        np.save(tmp_path / f"y{i}.npy", y[start:start + size])
        start += size
        paths.append(str(tmp_path / f"p{i}.xpart"))
        result = runner.invoke(app, ["score", str(tmp_path / f"z{i}.npy"), "--labels", str(tmp_path / f"y{i}.npy"),
                                     "--save-partial", paths[-1], "--json"])
        assert result.exit_code == 0, result.output
    merged = runner.invoke(app, ["merge", *paths, "--json"])
    assert merged.exit_code == 0, merged.output
    a, b = json.loads(whole.stdout)["summary"], json.loads(merged.stdout)["summary"]
    assert a["se_clustered"] and b["se_clustered"]
    for key in ("loss_mean", "loss_se", "loss_ci", "accuracy_ci", "perplexity_ci"):
        assert b[key] == pytest.approx(a[key], rel=1e-13), key
