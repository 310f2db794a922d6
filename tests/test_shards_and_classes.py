"""Shards read as one dataset, and string labels mapped to classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dumps import write_dump
from reference import sparse_loss64
from xentcli.cli import app

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"
CLASSES = (SAMPLES / "classes.txt").read_text().split()
runner = CliRunner()


def score_json(*args):
    result = runner.invoke(app, ["score", *map(str, args), "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(21)
    z = rng.standard_normal((250, 6)) * 3
    y = rng.integers(0, 6, 250)
    return z, y


@pytest.mark.parametrize("layout", ["parquet-list", "csv", "npz", "arrow-file"])
def test_shards_equal_one_file(tmp_path, data, layout):
    z, y = data
    whole = score_json(*write_dump(tmp_path / "whole", layout, z, y), "--worst", "3")
    folder = tmp_path / "shards"
    for i, (start, stop) in enumerate([(0, 90), (90, 91), (91, 250)]):
        write_dump(folder / f"part-{i}", layout, z[start:stop], y[start:stop], ids=[f"r{j}" for j in range(start, stop)])
    for args in ([folder], [str(folder / "part-*" / "*")]):
        sharded = score_json(*args, "--worst", "3")
        assert sharded["input"]["shards"] == 3
        for key, value in whole["summary"].items():
            assert sharded["summary"][key] == pytest.approx(value, rel=1e-12), key
        assert [w["row"] for w in sharded["worst"]] == [w["row"] for w in whole["worst"]]
    assert whole["summary"]["loss_mean"] == pytest.approx(sparse_loss64(z, y).mean(), rel=1e-12)


def test_shards_must_agree(tmp_path, data):
    z, y = data
    write_dump(tmp_path / "a", "parquet-list", z[:10], y[:10])
    write_dump(tmp_path / "b", "parquet-list", z[10:20, :5], np.minimum(y[10:20], 4))
    result = runner.invoke(app, ["score", str(tmp_path)])
    assert result.exit_code == 2 and "num classes is 5" in result.stderr and "same layout" in result.stderr


def test_glob_matching_nothing(tmp_path):
    result = runner.invoke(app, ["score", str(tmp_path / "*.parquet")])
    assert result.exit_code == 2 and "matches no file" in result.stderr


def test_string_labels_with_classes_file(tmp_path):
    z = np.load(SAMPLES / "cifar10_val_logits.npy")
    y = np.load(SAMPLES / "cifar10_val_labels.npy")
    names = [CLASSES[v] for v in y]
    names[7] = "zebra"  # not a class: an unusable label, reported, not an error
    pq.write_table(pa.table({"logits": pa.array(z.tolist(), pa.list_(pa.float32())), "label": names}), tmp_path / "s.parquet")
    doc = score_json(tmp_path / "s.parquet", "--classes", SAMPLES / "classes.txt", "--per-class")
    ok = np.arange(500) != 7
    assert doc["summary"]["nonfinite"] == 1
    assert doc["summary"]["loss_mean"] == pytest.approx(sparse_loss64(z, y)[ok].mean(), rel=1e-6)
    assert doc["per_class"][3]["name"] == "cat"
    inline = score_json(tmp_path / "s.parquet", "--classes", ",".join(CLASSES))
    assert inline["summary"]["loss_mean"] == doc["summary"]["loss_mean"]
    # a file saved with a byte-order mark (Windows editors): the mark is not part of the first name (found in review:
    # 'airplane' read as '\ufeffairplane', its rows unusable)
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(CLASSES).encode())
    bom = score_json(tmp_path / "s.parquet", "--classes", tmp_path / "bom.txt", "--per-class")
    assert bom["summary"] == doc["summary"] and bom["per_class"][0]["name"] == CLASSES[0]


def test_class_named_score_columns(tmp_path):
    z = np.load(SAMPLES / "cifar10_val_logits.npy")
    y = np.load(SAMPLES / "cifar10_val_labels.npy")
    columns = {f"score_{name}": pa.array(z[:, i]) for i, name in enumerate(CLASSES)}
    columns["label"] = [CLASSES[v] for v in y]
    pa_csv.write_csv(pa.table(columns), tmp_path / "named.csv")
    doc = score_json(tmp_path / "named.csv")
    assert doc["input"]["classes"] == CLASSES
    assert doc["summary"]["loss_mean"] == pytest.approx(sparse_loss64(z, y).mean(), rel=1e-6)


def test_classes_count_must_match():
    result = runner.invoke(app, ["score", str(SAMPLES / "cifar10_val.parquet"), "--classes", "a,b,c"])
    assert result.exit_code == 2 and "--classes names 3 classes but the scores have 10" in result.stderr


@pytest.mark.parametrize("nested_first", [False, True])
@pytest.mark.parametrize("extra", [[], ["-o", "out.parquet"], ["--per-sequence"]])
def test_flat_and_sequence_shards_do_not_mix(tmp_path, nested_first, extra):
    """A shard of flat rows and a shard of nested sequences: refused whatever their order (scored
    silently, per-sequence and -o crashed with exit 3)."""
    folder = tmp_path / "mix"
    folder.mkdir()
    flat = pa.table({"logits": [[0.1, 0.2, 0.3]] * 4, "label": [0, 1, 2, 0]})
    nested = pa.table({"logits": [[[0.1, 0.2, 0.3]] * 2], "label": [[1, 2]]})
    pq.write_table(nested if nested_first else flat, folder / "a.parquet")
    pq.write_table(flat if nested_first else nested, folder / "b.parquet")
    args = [str(tmp_path / a) if a.endswith(".parquet") else a for a in extra]
    result = runner.invoke(app, ["score", str(folder), *args])
    assert result.exit_code == 2, (result.stdout, result.exception)
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "b.parquet" in line and "flat rows" in line and "sequences" in line


def test_hidden_and_temporary_folders_are_not_shards(tmp_path):
    """Found in review: a folder's walk skipped hidden files but went into hidden folders, so
    Jupyter's .ipynb_checkpoints copy of a dump counted twice (20 rows, mean 3.935, and check
    passed). Every path beginning with "." or "_" below the folder is left out — hidden files and
    folders, Spark's _temporary — as pyarrow.dataset leaves them, with a note saying how many."""
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(10, 4)) * 2, rng.integers(0, 4, 10)
    stale = z.copy()
    stale[:, 0] += 5
    for name, scores in (("preds.parquet", z), (".ipynb_checkpoints/preds-checkpoint.parquet", stale), ("_temporary/0/p.parquet", stale),
                         (".p.parquet", stale), ("_p.parquet", stale), ("sub/more.parquet", z)):
        (tmp_path / "d" / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"logits": list(scores), "label": y}), tmp_path / "d" / name)
    result = runner.invoke(app, ["score", str(tmp_path / "d"), "--json"])
    doc = json.loads(result.stdout)
    assert doc["summary"]["rows"] == 20 and doc["summary"]["loss_mean"] == pytest.approx(sparse_loss64(z, y).mean(), rel=1e-12)
    assert any("left out 4 files under names beginning with '.' or '_'" in note for note in doc["input"]["notes"])


def test_csv_text_is_kept_as_written(tmp_path):
    """Found in review: CSV cells reading NA, null, N/A, nan, #N/A or nothing became null in text
    columns, so the groups NA (North America), "null" and "" merged into one, ids NA lost their
    text, and a class named NA was no class. Text columns (ids, --by, class-name labels) keep their
    text; number columns still read those spellings as missing (NaN)."""
    spellings = ["NA", "null", "N/A", "nan", "#N/A", ""]
    lines = ["id,region,logit_NA,logit_EU,label"]
    for i in range(60):
        lines.append(f"{spellings[i % 6]}{i},{spellings[i % 6]},{i % 3}.5,1.0,{['NA', 'EU'][i % 2]}")
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    doc = json.loads(runner.invoke(app, ["score", str(tmp_path / "t.csv"), "--id-col", "id", "--by", "region", "--min-group", "1",
                                         "--worst", "60", "--json"]).stdout)
    assert sorted(g["by"]["region"] for g in doc["groups"]) == sorted(spellings)
    assert doc["summary"]["counted"] == 60 and not any(d["code"] == "XE204" for d in doc["diagnostics"])  # NA is a class
    assert sorted(row["id"] for row in doc["worst"]) == sorted(f"{spellings[i % 6]}{i}" for i in range(60))
    table = runner.invoke(app, ["score", str(tmp_path / "t.csv"), "--by", "region", "--min-group", "1"], terminal_width=200).stdout
    assert ' ""  ' in table  # the empty text, quoted: not a blank cell
    (tmp_path / "n.csv").write_text("logit_0,logit_1,label\n1,2,1\nNA,0,0\n")
    doc = json.loads(runner.invoke(app, ["score", str(tmp_path / "n.csv"), "--json"]).stdout)
    assert [d["code"] for d in doc["diagnostics"]][:1] == ["XE101"]  # a score spelled NA is a missing number (NaN)
