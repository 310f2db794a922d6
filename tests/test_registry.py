"""Every rule of the registry has a bad fixture that raises it and passes no other check, a good
fixture that raises none, and gives the same finding however the rows are chunked; a rule that
needs no C path is one declaration."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from xentcli.cli import app
from xentcli.diagnostics import RULES, RowMasks
from xentcli.diagnostics.registry import Rule, declare

runner = CliRunner()
N, C = 60, 4


def _clean(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(N) % C  # every class a target
    z = rng.standard_normal((N, C)).astype(np.float32)
    z[np.arange(N), y] += 2.0
    return z, y


def _npy(folder: Path, z, y, *args) -> list[str]:
    np.save(folder / "z.npy", np.asarray(z))
    np.save(folder / "y.npy", np.asarray(y))
    return [str(folder / "z.npy"), "--labels", str(folder / "y.npy"), *args]


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _bad(code: str) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        z, y = _clean()
        z, y = z.copy(), y.copy().astype(np.int64)
        if code == "XE101":
            z[5, 1] = np.nan
        elif code == "XE102":
            z[5, 1] = np.inf
        elif code == "XE103":
            z[5, 1] = 100.0
        elif code == "XE104":
            return _npy(folder, _softmax(z.astype(np.float64)), y)
        elif code == "XE105":
            return _npy(folder, z, y, "--input", "probs")
        elif code == "XE106":
            return _npy(folder, np.log(_softmax(z.astype(np.float64))), y)
        elif code == "XE107":
            z[5] = 0.5
        elif code == "XE108":
            p = _softmax(z.astype(np.float64))
            p[5] = [1.0, 0.0, 0.0, 0.0]
            y[5] = 2
            return _npy(folder, p, y, "--input", "probs")
        elif code == "XE109":
            return _npy(folder, z.astype(np.float16), y)
        elif code == "XE110":
            return _npy(folder, z, y, "--input", "log-probs")
        elif code == "XE111":
            z[5, (y[5] + 1) % C] = -np.inf
        elif code == "XE112":  # one score per row read as a softmax
            return _npy(folder, z[:, :1], np.ones(N), "--head", "softmax")
        elif code == "XE113":  # a binary head's logits read as probabilities
            return _npy(folder, z[:, 0], y % 2, "--input", "probs")
        elif code == "XE114":  # a binary head's probabilities read as logits
            return _npy(folder, 1 / (1 + np.exp(-z[:, 0])), y % 2)
        elif code == "XE115":  # a multi-label head's targets outside [0, 1]
            t = (z > 0).astype(np.float64)
            t[5, 1] = -1.0
            return _npy(folder, z, t, "--head", "sigmoid")
        elif code == "XE116":  # a sigmoid head's logits written as two classes
            return _npy(folder, np.stack([np.zeros(N), z[:, 0]], axis=1), y % 2)
        elif code == "XE201":
            y[5] = C
        elif code == "XE202":
            y = y + 1
        elif code == "XE203":
            return _npy(folder, z, np.where(np.arange(N) == 5, 1.5, y))
        elif code == "XE204":
            labels = [f"c{v}" for v in y]
            labels[5] = "zebra"
            pq.write_table(pa.table({"logits": list(z), "label": labels}), folder / "d.parquet")
            return [str(folder / "d.parquet"), "--classes", "c0,c1,c2,c3"]
        elif code in ("XE205", "XE206", "XE207"):
            t = np.eye(C)[y] if code == "XE205" else np.full((N, C), 0.25)
            if code == "XE206":
                t[5] = [1, 1, 0, 0]
            if code == "XE207":
                t[5] = [0.5, 0.2, 0.1, 0.1]
            return _npy(folder, z, t)
        elif code == "XE208":
            y[5] = -100
        elif code == "XE209":
            y[y == 3] = 0
        elif code == "XE301":
            pq.write_table(pa.table({"logits": [list(row) for row in z[:5]] + [[0.0, 1.0]], "label": y[:6]}), folder / "d.parquet")
            return [str(folder / "d.parquet")]
        elif code == "XE302":
            return _npy(folder, z, y[:-1])
        elif code == "XE303":
            return _npy(folder, z, np.zeros((N, C + 1)))
        elif code == "XE304":
            return _npy(folder, z[:0], y[:0])
        elif code == "XE305":
            rng = np.random.default_rng(3)
            return _npy(folder, rng.standard_normal((6, 20, 7)).astype(np.float32), rng.integers(0, 20, (6, 7)))
        elif code in ("XE501", "XE502", "XE503", "XE504", "XE505"):  # diff: pairing two dumps
            other = z.copy()
            if code == "XE501":
                other = other[:-1]
            elif code == "XE504":
                other = np.zeros((N, C + 1), np.float32)
            elif code == "XE505":
                other[5, 0] = np.nan
            np.save(folder / "z2.npy", other)
            labels = y.copy()
            if code == "XE503":
                np.save(folder / "y2.npy", (y + 1) % C)
            if code == "XE502":
                pq.write_table(pa.table({"logits": list(z), "label": y, "id": np.arange(N) // 2}), folder / "b.parquet")
                pq.write_table(pa.table({"logits": list(z), "label": y, "id": np.arange(N)}), folder / "c.parquet")
                return ["diff", str(folder / "b.parquet"), str(folder / "c.parquet"), "--key", "id"]
            if code == "XE503":
                pq.write_table(pa.table({"logits": list(z), "label": y}), folder / "b.parquet")
                pq.write_table(pa.table({"logits": list(z), "label": (y + 1) % C}), folder / "c.parquet")
                return ["diff", str(folder / "b.parquet"), str(folder / "c.parquet")]
            np.save(folder / "y.npy", labels)
            np.save(folder / "z.npy", z)
            if code == "XE501":
                pq.write_table(pa.table({"logits": list(z), "label": y}), folder / "b.parquet")
                pq.write_table(pa.table({"logits": list(z[:-1]), "label": y[:-1]}), folder / "c.parquet")
                return ["diff", str(folder / "b.parquet"), str(folder / "c.parquet")]
            return ["diff", str(folder / "z.npy"), str(folder / "z2.npy"), "--labels", str(folder / "y.npy")]
        elif code == "XE601":  # confident and often wrong: over-confident
            z = (z * 6).astype(np.float32)
            y = (y + np.arange(N) % 2) % C
            return _npy(folder, z, y, "--calibration")
        elif code == "XE602":  # right but hesitant: under-confident
            z = (z * 0.15).astype(np.float32)
            return _npy(folder, z, y, "--calibration")
        elif code == "XE603":
            p = _softmax(z.astype(np.float64))
            p[5] = 0.0
            p[5, (y[5] + 1) % C] = 1.0
            return _npy(folder, p, y, "--input", "probs", "--calibration")
        elif code == "XE701":
            pq.write_table(pa.table({"logits": list(z), "label": y, "user": np.arange(N) % 7}), folder / "d.parquet")
            return [str(folder / "d.parquet"), "--by", "user", "--max-groups", "3"]
        elif code == "XE401":
            z[5, 1] = np.nan
        elif code == "XE402":
            z[5, y[5]] = -30.0
        elif code == "XE405":
            y[:] = -100
        elif code == "XE403":
            z = np.zeros((N, C), np.float32)
            z[:, 0] = 5.0
        elif code == "XE404":
            z[5] = 0.0
            z[5, (y[5] + 1) % C] = 20.0
        return _npy(folder, z, y)
    return make


# What each bad fixture raises besides its rule (a NaN score is also a NaN loss, and so on).
ALSO = {"XE101": {"XE401"}, "XE102": {"XE401"}, "XE108": {"XE401"}, "XE201": {"XE401"}, "XE202": {"XE201", "XE401"},
        "XE203": {"XE401"}, "XE204": {"XE401"}, "XE206": {"XE207"}, "XE401": {"XE101"}, "XE403": {"XE107", "XE209", "XE104", "XE402"},
        "XE404": {"XE402"}, "XE104": set(), "XE110": {"XE402", "XE404"}, "XE105": {"XE401", "XE402", "XE404"},
        "XE209": {"XE402"}, "XE505": {"XE101", "XE401"}, "XE601": {"XE402", "XE404", "XE103"},
        "XE603": {"XE108", "XE401", "XE404", "XE402", "XE602"}, "XE113": {"XE401", "XE402", "XE404"}, "XE114": {"XE403"}, "XE115": {"XE401"}, "XE116": {"XE402"}}
ALSO["XE202"] = ALSO["XE202"] | {"XE402"}
INFO = {code for code, rule in RULES.items() if rule.severity == "info"}


def _run(args: list[str], *extra: str):
    command = ["diff", *args[1:]] if args[0] == "diff" else ["check", *args]
    result = runner.invoke(app, [*command, "--json", *extra])
    return result, json.loads(result.stdout)


@pytest.mark.parametrize("code", sorted(RULES))
def test_bad_fixture_raises_its_rule(tmp_path, code):
    result, doc = _run(_bad(code)(tmp_path))
    if "error" in doc:  # a shape error ends the run with its code
        assert result.exit_code == 2 and doc["error"]["code"] == code or f"[{code}]" in doc["error"]["message"]
        return
    found = {d["code"] for d in doc["diagnostics"]}
    assert code in found, found
    assert found - {code} <= ALSO.get(code, set()) | INFO, found
    assert result.exit_code == (1 if any(RULES[c].severity == "error" for c in found) else 0)


def _calibrated(folder: Path) -> list[str]:
    """Labels drawn from the model's own probabilities: calibrated by construction (ECE ~0.01)."""
    rng = np.random.default_rng(11)
    z = rng.standard_normal((20_000, C)) * 1.5
    p = _softmax(z)
    y = (rng.random((20_000, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return _npy(folder, z, y, "--calibration", "--select", "XE6")  # a natural loss tail would raise XE402


GOOD: dict[str, Callable[[Path], list[str]]] = {
    "calibrated": _calibrated,
    "logits": lambda folder: _npy(folder, *_clean()),
    "probs": lambda folder: _npy(folder, _softmax(_clean()[0].astype(np.float64)), _clean()[1], "--input", "probs"),
    "log-probs": lambda folder: _npy(folder, np.log(_softmax(_clean()[0].astype(np.float64))), _clean()[1], "--input", "log-probs"),
    "soft targets": lambda folder: _npy(folder, _clean()[0], 0.1 + 0.6 * np.eye(C)[_clean()[1]]),
    "sequences": lambda folder: _npy(folder, *(lambda z, y: (z.reshape(6, 10, C), y.reshape(6, 10)))(*_clean())),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_fixtures_raise_nothing(tmp_path, name):
    result, doc = _run(GOOD[name](tmp_path))
    assert result.exit_code == 0 and doc["diagnostics"] == [], doc["diagnostics"]


PER_ROW = sorted(code for code, rule in RULES.items() if rule.mask is not None or rule.chunk is not None)


@pytest.mark.parametrize("code", PER_ROW)
def test_findings_merge_across_chunks(tmp_path, code):
    args = _bad(code)(tmp_path)
    _, whole = _run(args, "--chunk-rows", "1000", "--threads", "1")
    for rows, threads in (("1", "1"), ("7", "2"), ("13", "2")):
        _, chunked = _run(args, "--chunk-rows", rows, "--threads", threads)
        _same(chunked["diagnostics"], whole["diagnostics"], f"chunks of {rows}")


def _same(got, want, where: str) -> None:
    """Equal, floats to 1e-12 relative (float64 sums of other chunkings round differently)."""
    if isinstance(want, float) and isinstance(got, float):
        assert got == pytest.approx(want, rel=1e-12, nan_ok=True), where
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), where
        for key in want:
            _same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, f"{where}[{i}]")
    else:
        assert got == want, where


def test_a_rule_is_one_declaration(tmp_path, monkeypatch):
    """A new per-row rule (no C path) declared once is found per chunk, merged, reported and explained."""
    monkeypatch.setattr("xentcli.diagnostics.registry.RULES", dict(RULES))
    from xentcli.diagnostics import registry, run

    monkeypatch.setattr(run, "RULES", registry.RULES)
    monkeypatch.setattr("xentcli.diagnostics.view.RULES", registry.RULES)
    declare(Rule("XE999", "negative-first-score", "warning", "Rows whose first score is negative.", "why", "fix", "example",
                 hint="a test rule", message=lambda f, t: f"{f.rows} rows start below 0", mask=lambda m: m.view.scores[:, 0] < 0,
                 columns=lambda m, rows: {"first": m.view.scores[:, 0]}))
    z, y = _clean()
    expected = np.flatnonzero(z[:, 0] < 0)
    result, doc = _run(_npy(tmp_path, z, y), "--chunk-rows", "9")
    found = {d["code"]: d for d in doc["diagnostics"]}["XE999"]
    assert found["rows"] == expected.size and [e["row"] for e in found["examples"]] == expected[:5].tolist()
    assert found["examples"][0]["first"] == pytest.approx(float(z[expected[0], 0]))
    assert isinstance(RowMasks, type)
