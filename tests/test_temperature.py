"""`--temperature-scan` against scipy's minimiser (numbers recorded once, source next to them),
identities a temperature must respect, and the sample's independence from chunking and threads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from xentcli.cli import app
from xentcli.temperature import SAMPLE_ROWS, TemperatureSample, capacity, row_hashes

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def temperature(*args) -> dict:
    result = runner.invoke(app, ["score", *map(str, args), "--temperature-scan", "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    return doc["calibration"]["temperature"] | {"loss_mean": doc["summary"]["loss_mean"]}


def test_sample_dump_against_scipy():
    t = temperature(SAMPLE / "cifar10_val.parquet")
    # scipy 1.17.1: minimize_scalar(lambda T: mean(logsumexp(z/T, axis=1) - z[i, y]/T), bounds=(0.05, 20),
    # method='bounded', options={'xatol': 1e-12}) on the float64 logits: x 0.8348470175732784 (Brent in T is
    # only good to ~1e-8 there: the loss is flat at its minimum), f(x) 0.4959003101953698, f(1) 0.5074505518879368
    assert t["temperature"] == pytest.approx(0.8348470175732784, rel=1e-7)
    assert t["loss_at_temperature"] == pytest.approx(0.4959003101953698, rel=1e-12)
    assert t["loss"] == pytest.approx(0.5074505518879368, rel=1e-12)
    assert t["miscalibration_share"] == pytest.approx((0.5074505518879368 - 0.4959003101953698) / 0.5074505518879368, rel=1e-9)
    assert (t["sample_rows"], t["rows"], t["at_bound"]) == (500, 500, False)


def _dump(tmp_path, n: int = 3000, c: int = 6, scale: float = 3.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    z = rng.normal(size=(n, c))
    z[np.arange(n), y] += 1.0
    z *= scale  # over-confident logits: T* > 1
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    return z, y


def test_probabilities_and_log_probabilities_give_the_logits_temperature(tmp_path):
    """softmax(β·log softmax(z)) = softmax(β·z): the same T* from logits, probabilities and log-probabilities."""
    z, y = _dump(tmp_path)
    logits = temperature(tmp_path / "z.npy", "--labels", tmp_path / "y.npy")
    log_p = z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)
    np.save(tmp_path / "lp.npy", log_p)
    np.save(tmp_path / "p.npy", np.exp(log_p))
    for name, kind in (("lp.npy", "log-probs"), ("p.npy", "probs")):
        other = temperature(tmp_path / name, "--labels", tmp_path / "y.npy", "--input", kind)
        assert other["temperature"] == pytest.approx(logits["temperature"], rel=1e-9)
        assert other["loss_at_temperature"] == pytest.approx(logits["loss_at_temperature"], rel=1e-9)
    assert logits["temperature"] > 1.5  # the logits were scaled up 3x


def test_one_hot_targets_equal_labels(tmp_path):
    z, y = _dump(tmp_path)
    np.save(tmp_path / "t.npy", np.eye(6)[y])
    sparse = temperature(tmp_path / "z.npy", "--labels", tmp_path / "y.npy")
    dense = temperature(tmp_path / "z.npy", "--labels", tmp_path / "t.npy")
    assert dense["temperature"] == pytest.approx(sparse["temperature"], rel=1e-12)


def test_the_minimum_is_a_stationary_point_of_a_float64_reference(tmp_path):
    z, y = _dump(tmp_path, scale=0.4)  # under-confident: T* < 1
    t = temperature(tmp_path / "z.npy", "--labels", tmp_path / "y.npy")

    def loss(temp: float) -> float:
        s = z / temp
        top = s.max(1)
        return float(np.mean(top + np.log(np.exp(s - top[:, None]).sum(1)) - s[np.arange(y.size), y]))

    best = t["temperature"]
    assert best < 1
    assert t["loss_at_temperature"] == pytest.approx(loss(best), rel=1e-12)
    assert loss(best * 0.999) > loss(best) < loss(best * 1.001)
    assert t["loss"] == pytest.approx(t["loss_mean"], rel=1e-12)  # every row sampled: the dump's loss


def test_separable_data_ends_at_the_bound(tmp_path):
    z = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, -1.0]])
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", np.array([0, 1, 0]))
    t = temperature(tmp_path / "z.npy", "--labels", tmp_path / "y.npy")
    assert t["at_bound"] and t["temperature"] < 0.05  # the slope underflows to 0 near T = 0.04
    assert t["miscalibration_share"] == pytest.approx(1.0)  # the loss falls to 0 as T → 0


def test_the_sample_is_the_same_for_any_chunking_and_threads(tmp_path):
    rng = np.random.default_rng(4)
    n = SAMPLE_ROWS + 20_011
    y = rng.integers(0, 3, n)
    z = rng.normal(size=(n, 3)).astype(np.float32) * 2
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    runs = [temperature(tmp_path / "z.npy", "--labels", tmp_path / "y.npy", *extra)
            for extra in ([], ["--chunk-rows", "7919", "--threads", "1"], ["--chunk-rows", "50000", "--threads", "3"])]
    assert runs[0]["sample_rows"] == SAMPLE_ROWS and runs[0]["rows"] == n
    for run in runs[1:]:
        assert run["temperature"] == runs[0]["temperature"] and run["loss"] == runs[0]["loss"]


def test_bottom_k_keeps_the_smallest_hashes():
    """The kept rows are the `capacity` rows with the smallest hash, whatever the order of the offers."""
    rows = np.arange(1000)
    scores = np.random.default_rng(0).normal(size=(1000, 4))
    labels = np.zeros(1000, np.int64)
    expected = np.sort(rows[np.argsort(row_hashes(rows), kind="stable")[:50]])
    for pieces in ([1000], [3, 400, 597], [100] * 10):
        total = TemperatureSample(50)
        start = 0
        for size in reversed(pieces):  # offered out of order
            part = TemperatureSample(50)
            part.offer(start, np.arange(size), scores[start:start + size], "logits", labels, None)
            total.merge(part)
            start += size
        assert total.seen == 1000
        total._compact()
        kept = np.sort(total.kept.rows)
        np.testing.assert_array_equal(kept, expected)
        np.testing.assert_array_equal(total.kept.z[np.argsort(total.kept.rows)], scores[kept])


def test_capacity_bounds_the_memory():
    assert capacity(10) == SAMPLE_ROWS
    assert capacity(1000) * 1000 * 8 <= 32 * 2**20


def test_masked_classes_weigh_nothing(tmp_path):
    """A class masked with −inf in every row changes no softmax(z/T): the same T* as without it."""
    z, y = _dump(tmp_path)
    np.save(tmp_path / "masked.npy", np.c_[z, np.full(len(z), -np.inf)])
    plain = temperature(tmp_path / "z.npy", "--labels", tmp_path / "y.npy")
    masked = temperature(tmp_path / "masked.npy", "--labels", tmp_path / "y.npy")
    assert masked["temperature"] == pytest.approx(plain["temperature"], rel=1e-12)


def test_anti_correlated_scores_end_at_the_upper_bound(tmp_path):
    np.save(tmp_path / "z.npy", np.array([[0.0, 2.0], [3.0, 0.0], [0.0, 1.0]]))
    np.save(tmp_path / "y.npy", np.array([0, 1, 0]))
    t = temperature(tmp_path / "z.npy", "--labels", tmp_path / "y.npy")
    assert t["at_bound"] and t["temperature"] == pytest.approx(1000.0)


def test_shards_of_float32_and_float64_give_the_float64_result(tmp_path):
    """The sample keeps float32 logits as they are and float64 ones as float64; a dump whose first
    shard is float32 and second float64 (values no float32 holds) scans to the same numbers as one
    float64 file of the same values: the sample is widened, never the second shard rounded."""
    rng = np.random.default_rng(4)
    y = rng.integers(0, 5, 3000)
    z = rng.normal(size=(3000, 5))
    z[np.arange(3000), y] += 1.0
    z = (z * 3).astype(np.float32)
    (tmp_path / "d").mkdir()
    np.savez(tmp_path / "d" / "a.npz", logits=z[:1500], labels=y[:1500])
    wide = z.astype(np.float64)
    wide[1500:] += 1e-7 * rng.random((1500, 5))  # below float32's resolution at these magnitudes
    np.savez(tmp_path / "d" / "b.npz", logits=wide[1500:], labels=y[1500:])
    np.savez(tmp_path / "all.npz", logits=wide, labels=y)
    mixed = temperature(tmp_path / "d", "--chunk-rows", 500)
    whole = temperature(tmp_path / "all.npz")
    assert not whole["at_bound"] and whole["temperature"] > 1
    for key in ("temperature", "loss", "loss_at_temperature", "sample_rows"):
        assert mixed[key] == pytest.approx(whole[key], rel=1e-12), key


def test_c_row_hashes_equal_splitmix64():
    """xent_row_hashes (where the chunk is scored) against the numpy splitmix64 and two values of the
    reference sequence: splitmix64 seeded with 0 gives 0xE220A8397B1DCDAF, then 0x6E789E6AA1B965F4
    (Vigna's splitmix64.c; row r hashes the state 0x9E3779B97F4A7C15·1 + r)."""
    from native_paths import require_c_extension

    from xentcli import native

    require_c_extension()
    positions = np.array([0, 1, 5, 2**40, 2**62 - 1], np.int64)
    for offset in (0, 7, 2**62):
        assert np.array_equal(native.row_hashes(offset, positions), row_hashes(offset + positions))
    assert row_hashes(np.array([0]))[0] == np.uint64(0xE220A8397B1DCDAF)
    assert row_hashes(np.array([0x9E3779B97F4A7C15], np.uint64).astype(np.int64))[0] == np.uint64(0x6E789E6AA1B965F4)
