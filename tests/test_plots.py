"""`--plot`: text charts from the accumulators — the bins' counts add up, edges are the sketch's
log-spaced bucket bounds, the bytes do not depend on the chunking, and --ascii is plain ASCII."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from xentcli.cli import app
from xentcli.histogram import log_histogram
from xentcli.sketch import QuantileSketch

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def plot(*args) -> str:
    result = runner.invoke(app, [*map(str, args), "--plot", "--quiet"], env={"COLUMNS": "100"})
    assert result.exit_code in (0, 1), result.stderr
    start = min(result.stdout.find(title) for title in ("Loss histogram", "Δloss", "Delta loss") if title in result.stdout)
    return result.stdout[start:]


def test_histogram_bins_hold_each_value_in_its_bucket_range():
    rng = np.random.default_rng(1)
    values = np.r_[np.exp(rng.normal(-2, 3, 5000)), np.zeros(7), -np.exp(rng.normal(0, 1, 300))]
    sketch = QuantileSketch()
    sketch.update(values)
    bins = log_histogram(sketch)
    assert sum(b["count"] for b in bins) == values.size
    assert [b["lo"] for b in bins] == sorted(b["lo"] for b in bins)
    gamma = (1 + 0.005) / (1 - 0.005)
    for b in bins:  # a value x > 0 lies in (γ^(k−1), γ^k] for k = ceil(log_γ x): count independently
        if b["lo"] == b["hi"] == 0:
            assert b["count"] == 7
            continue
        if b["hi"] > 0:
            k_lo, k_hi = round(math.log(b["lo"]) / math.log(gamma)) + 1, round(math.log(b["hi"]) / math.log(gamma))
            keys = np.ceil(np.log(values[values > 0]) / math.log(gamma))
        else:
            k_lo, k_hi = round(math.log(-b["hi"]) / math.log(gamma)) + 1, round(math.log(-b["lo"]) / math.log(gamma))
            keys = np.ceil(np.log(-values[values < 0]) / math.log(gamma))
        assert b["count"] == int(((keys >= k_lo) & (keys <= k_hi)).sum())


def test_plot_is_the_same_for_any_chunking_and_adds_up():
    whole = plot("score", SAMPLE / "cifar10_val.parquet", "--calibration")
    assert plot("score", SAMPLE / "cifar10_val.parquet", "--calibration", "--chunk-rows", "7", "--threads", "3") == whole
    counts = [int(m.group(1).replace(",", "")) for m in re.finditer(r" ([\d,]+) +\d+\.\d%$", whole.split("\n\n")[0], re.M)]
    assert sum(counts) == 500 and "Reliability" in whole


def test_ascii_and_zero_losses(tmp_path):
    with np.errstate(divide="ignore"):
        lp = np.log(np.array([[1.0, 0.0], [0.5, 0.5], [0.9, 0.1]]))
    np.save(tmp_path / "lp.npy", lp)
    np.save(tmp_path / "y.npy", np.array([0, 0, 0]))
    text = plot("score", tmp_path / "lp.npy", "--labels", tmp_path / "y.npy", "--input", "log-probs", "--ascii")
    assert text.isascii() and "#" in text
    assert re.search(r"^ +0 \|#+ +1 +33\.3%$", text, re.M)  # the exact zero in a bin of its own


def test_diff_plots_the_signed_deltas():
    text = plot("diff", SAMPLE / "cifar10_val.parquet", SAMPLE / "cifar10_val_candidate.parquet", "--key", "id")
    counts = [int(m.group(1).replace(",", "")) for m in re.finditer(r" ([\d,]+) +\d+\.\d%$", text, re.M)]
    assert sum(counts) == 500 and re.search(r"^ +-", text, re.M)  # negative deltas on their own side


@pytest.mark.parametrize("fmt", [["--json"], ["--output-format", "github"]])
def test_plot_is_text_only(fmt):
    result = runner.invoke(app, ["score", str(SAMPLE / "cifar10_val.parquet"), "--plot", *fmt])
    assert result.exit_code == 2


@pytest.mark.parametrize("ascii_only", [False, True])
def test_golden_plot_at_a_fixed_width(ascii_only):
    """The sample dump's charts at 100 columns, byte for byte (XENT_UPDATE_GOLDEN=1 rewrites them)."""
    import os

    text = plot("score", SAMPLE / "cifar10_val.parquet", "--calibration", *(["--ascii"] if ascii_only else []))
    path = Path(__file__).resolve().parent / "golden" / f"plot{'_ascii' if ascii_only else ''}.txt"
    if os.environ.get("XENT_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), "the plot changed (XENT_UPDATE_GOLDEN=1 rewrites it)"
