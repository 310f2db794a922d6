"""`--report out.html`: one self-contained page — structure, escaping, size bound, bars that draw
their numbers, atomic writing — and opened in a real browser (Debian's headless Chromium, which
`make test` installs): a screenshot that is not blank and a DOM that holds the charts and tables."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from dumps import random_npy
from xentcli.cli import app
from xentcli.render.html import CHART_H

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def report(tmp_path: Path, *args, name: str = "r.html") -> str:
    out = tmp_path / name
    result = runner.invoke(app, [*map(str, args), "--report", str(out), "--quiet"])
    assert result.exit_code in (0, 1), result.stderr
    return out.read_text(encoding="utf-8")


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parsed(page: str) -> list[tuple[str, dict[str, str]]]:
    parser = Elements()
    parser.feed(page)
    return parser.tags


def test_self_contained_and_bars_draw_their_numbers(tmp_path):
    page = report(tmp_path, "score", SAMPLE / "cifar10_val.parquet", "--calibration", "--per-class", "--worst", "5")
    tags = parsed(page)
    assert "<script" not in page.lower() and not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)
    assert not any(tag in ("link", "img", "iframe", "object") for tag, _ in tags)
    svgs = [attrs for tag, attrs in tags if tag == "svg"]
    assert len(svgs) == 3  # histogram, reliability, per class
    # each chart's bars: height = |value| / the chart's largest × its height
    charts = page.split("<svg")[1:]
    for chart in (charts[0], charts[2]):
        bars = [dict(parsed("<svg>" + rect)[-1][1]) for rect in re.findall(r'<rect class="bar"[^>]*>', chart)]
        values = [float(b["data-value"]) for b in bars]
        top = max(abs(v) for v in values)
        for b, v in zip(bars, values):
            assert float(b["height"]) == round(abs(v) / top * CHART_H, 2)
    histogram = [float(v) for v in re.findall(r'data-value="([^"]+)"', charts[0])]
    assert sum(histogram) == 500  # the counted rows


def test_charts_have_value_axes_whose_ticks_match_the_bars(tmp_path):
    """Found in review (2026-12-03): the charts had no axes — a bar's value only in its tooltip. Each
    bar chart has a titled value axis with round ticks (1, 2, 2.5 or 5 × 10^k) from 0, drawn where
    a bar of that value would end (the sample: 500 rows, the tallest histogram bin 88 → ticks 0 … 80
    by 20), and names its bars where they fit; the reliability diagram has 0 … 1 on both axes."""
    from xentcli.render.html import LEFT, TOP, nice_ticks

    assert nice_ticks(88) == [0, 20, 40, 60, 80] and nice_ticks(0.7421) == [0, 0.2, 0.4, 0.6000000000000001]
    assert nice_ticks(2.0) == [0, 0.5, 1.0, 1.5, 2.0] and nice_ticks(1e-300)[-1] <= 1e-300 and nice_ticks(0.0) == [0.0]
    page = report(tmp_path, "score", SAMPLE / "cifar10_val.parquet", "--calibration", "--per-class", "--classes",
                  "plane,car,bird,cat,deer,dog,frog,horse,ship,truck")
    histogram, reliability, per_class = page.split("<svg")[1:]
    for chart, title in ((histogram, "rows"), (per_class, "mean loss")):
        assert f">{title}</text>" in chart
        values = [float(v) for v in re.findall(r'data-value="([^"]+)"', chart)]
        top = max(values)
        ticks = re.findall(r'<text x="[^"]+" y="([^"]+)"[^>]*class="tick">([^<]+)</text>', chart)
        assert [float(label) for _, label in ticks] == [float(f"{t:.4g}") for t in nice_ticks(top)]
        for (y, _), tick in zip(ticks, nice_ticks(top)):  # 4 px below the line of its value (the baseline of 11px text)
            assert float(y) == round(round(TOP + CHART_H - tick / top * CHART_H, 2) + 4, 2)
    assert max(float(v) for v in re.findall(r'data-value="([^"]+)"', histogram)) == 88  # the sample's tallest bin
    assert all(f">{name}</text>" in per_class for name in ("plane", "car", "truck"))
    assert [label for _, label in re.findall(r'y="([^"]+)"[^>]*class="tick">([^<]+)<', reliability)] == \
        ["0", "0", "0.25", "0.25", "0.5", "0.5", "0.75", "0.75", "1", "1"]
    assert ">confidence</text>" in reliability and ">accuracy</text>" in reliability
    assert f'translate({LEFT},{TOP})' in histogram


def test_size_is_bounded_for_a_thousand_classes_and_groups(tmp_path):
    random_npy(tmp_path, 3000, 1000, seed=0)
    np.save(tmp_path / "g.npy", np.arange(3000) % 1500)
    page = report(tmp_path, "score", tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--per-class", "--by-file", tmp_path / "g.npy",
                  "--calibration", "--worst", "100", "--min-group", "1")
    assert len(page.encode()) <= 300 * 1024


def test_size_is_bounded_for_huge_names(tmp_path):
    """Found in review: ids and group values of 200,000 characters made a 24 MB page; text from the
    data is cut (a cell to 80 characters, any other text to 1,000), as the tables cut it."""
    rng = np.random.default_rng(1)
    n = 2000
    ids = [f"{i:05d}" + "x" * 200_000 for i in range(n)]
    groups = [f"{i % 40:02d}" + "g" * 200_000 for i in range(n)]
    pq.write_table(pa.table({"id": ids, "logits": list(rng.normal(size=(n, 3)).astype(np.float32)), "label": rng.integers(0, 3, n),
                             "grp": groups}), tmp_path / "long.parquet")
    page = report(tmp_path, "score", tmp_path / "long.parquet", "--id-col", "id", "--worst", "40", "--by", "grp", "--min-group", "1")
    assert len(page.encode()) <= 300 * 1024
    assert "x" * 75 not in page and re.search(r">\d{5}x{74}…<", page)  # an id: 5 digits, 74 x and '…', 80 characters


def test_text_from_the_data_is_escaped(tmp_path):
    evil = '<script>alert(1)</script>"\x1b[31m'
    pq.write_table(pa.table({"id": [evil, "b", "c"], "logits": [[0.0, 9.0], [1.0, 0.0], [0.0, 1.0]], "label": [0, 0, 1],
                             "g": [evil, "x", "x"]}), tmp_path / "d.parquet")
    page = report(tmp_path, "score", tmp_path / "d.parquet", "--id-col", "id", "--worst", "3", "--by", "g", "--min-group", "1")
    assert "<script" not in page and "\x1b" not in page and "&lt;script&gt;" in page


def test_written_atomically_never_over_inputs(tmp_path):
    existing = tmp_path / "r.html"
    existing.write_text("keep")
    result = runner.invoke(app, ["score", str(SAMPLE / "cifar10_val.parquet"), "--report", str(existing)])
    assert result.exit_code == 2 and existing.read_text() == "keep" and "already exists" in result.stderr
    result = runner.invoke(app, ["score", str(SAMPLE / "cifar10_val.parquet"), "--report", str(tmp_path / "r.txt")])
    assert result.exit_code == 2 and "HTML" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temporary file left


def test_diff_report(tmp_path):
    page = report(tmp_path, "diff", SAMPLE / "cifar10_val.parquet", SAMPLE / "cifar10_val_candidate.parquet", "--key", "id")
    assert "Candidate against base (500 pairs)" in page and "Δloss histogram" in page and page.count("<svg") == 1


def _png_pixels_vary(path: Path) -> bool:
    """Decode the PNG's image data (zlib over IDAT chunks) and look for more than one byte value."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat = 8, b""
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"IDAT":
            idat += data[at + 8:at + 8 + length]
        at += 12 + length
    return len(set(zlib.decompress(idat))) > 8


def test_opens_in_headless_chromium(tmp_path):
    browser = shutil.which("chromium")
    assert browser, "Debian's chromium is needed: `make test` installs it (apt-get install chromium)"
    page_path = tmp_path / "r.html"
    report(tmp_path, "score", SAMPLE / "cifar10_val.parquet", "--calibration", "--per-class")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1000,1600", page_path.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert _png_pixels_vary(shot)
    dom = subprocess.run([browser, *flags, "--dump-dom", page_path.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    assert dom.count("<svg") == 3 and dom.count('class="bar"') > 20 and "Diagnostics" in dom and "<table>" in dom


def test_png_charts_through_the_extra(tmp_path, monkeypatch):
    folder = tmp_path / "charts"
    result = runner.invoke(app, ["score", str(SAMPLE / "cifar10_val.parquet"), "--calibration", "--per-class", "--png", str(folder), "--quiet"])
    assert result.exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["loss_histogram.png", "per_class.png", "reliability.png"]
    assert all(_png_pixels_vary(p) for p in folder.iterdir())
    diff = runner.invoke(app, ["diff", str(SAMPLE / "cifar10_val.parquet"), str(SAMPLE / "cifar10_val_candidate.parquet"), "--key", "id",
                               "--png", str(tmp_path / "d")])
    assert diff.exit_code == 0 and [p.name for p in (tmp_path / "d").iterdir()] == ["delta_histogram.png"]
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # the extra not installed
    missing = runner.invoke(app, ["score", str(SAMPLE / "cifar10_val.parquet"), "--png", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "pip install 'xentcli[png]'" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


def test_the_png_help_names_the_extra():
    """Help texts are Rich markup: '[png]' would vanish as a tag unless escaped."""
    result = runner.invoke(app, ["score", "--help"], env={"COLUMNS": "200"})
    assert "xentcli[png]" in result.stdout


def test_png_group_names_are_text_and_never_land_on_an_input(tmp_path):
    """Group values like "$\\undefinedmacro$" (matplotlib's math markup: it crashed with exit 3),
    ESC and CR are drawn as text, with nothing on stderr; a chart's name that is an input (also
    through a symlink) is refused before the run, and a symlink elsewhere is replaced, its target
    untouched."""
    names = ["$\\undefinedmacro$", "$\\frac{a}{b}$", "esc\x1b[31mred\rcr", "plain"]
    rng = np.random.default_rng(9)
    z = rng.standard_normal((400, 3))
    pq.write_table(pa.table({"logits": list(z), "label": rng.integers(0, 3, 400), "g": [names[i % 4] for i in range(400)]}),
                   tmp_path / "d.parquet")
    result = runner.invoke(app, ["score", str(tmp_path / "d.parquet"), "--by", "g", "--png", str(tmp_path / "charts"), "--quiet"])
    assert result.exit_code == 0 and result.stderr == "", (result.stderr, result.exception)
    assert _png_pixels_vary(tmp_path / "charts" / "groups.png")
    before = (tmp_path / "d.parquet").read_bytes()
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "groups.png").symlink_to(tmp_path / "d.parquet")
    refused = runner.invoke(app, ["score", str(tmp_path / "d.parquet"), "--by", "g", "--png", str(tmp_path / "links")])
    assert refused.exit_code == 2 and "is one of the inputs" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert (tmp_path / "d.parquet").read_bytes() == before
    other = tmp_path / "other.bin"
    other.write_bytes(b"keep")
    (tmp_path / "links" / "groups.png").unlink()
    (tmp_path / "links" / "groups.png").symlink_to(other)
    refused = runner.invoke(app, ["score", str(tmp_path / "d.parquet"), "--by", "g", "--png", str(tmp_path / "links")])
    assert refused.exit_code == 2 and "already exists" in refused.stderr  # a chart replaces nothing without --force
    assert runner.invoke(app, ["score", str(tmp_path / "d.parquet"), "--by", "g", "--png", str(tmp_path / "links"),
                               "--force"]).exit_code == 0
    assert other.read_bytes() == b"keep" and not (tmp_path / "links" / "groups.png").is_symlink()


def test_png_refusals_come_before_any_output(tmp_path):
    """Found in review: --png replaced existing charts without --force, and a --png that could not be
    a folder (an existing file, a path below a file) was refused after -o and --save-partial were
    written, leaving them behind. Each is refused before the run, nothing written."""
    np.save(tmp_path / "z.npy", np.random.default_rng(0).normal(size=(20, 3)))
    np.save(tmp_path / "y.npy", np.arange(20) % 3)
    (tmp_path / "charts").mkdir()
    (tmp_path / "charts" / "loss_histogram.png").write_text("keep")
    base = ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "-o", str(tmp_path / "o.parquet"),
            "--save-partial", str(tmp_path / "p.xpart")]
    for png, said in ((tmp_path / "y.npy", "is not a folder"), (tmp_path / "y.npy" / "sub", "is not a folder"),
                      (tmp_path / "charts", "already exists")):
        result = runner.invoke(app, [*base, "--png", str(png)])
        assert result.exit_code == 2 and said in result.stderr, result.stderr
        assert not (tmp_path / "o.parquet").exists() and not (tmp_path / "p.xpart").exists()
    assert (tmp_path / "charts" / "loss_histogram.png").read_text() == "keep"


def test_merge_and_check_png_never_land_on_an_input(tmp_path):
    """xent merge --png wrote its charts over an input partial file named loss_histogram.png."""
    partial = tmp_path / "loss_histogram.png"
    assert runner.invoke(app, ["score", str(SAMPLE / "cifar10_val.parquet"), "--save-partial", str(partial), "--quiet"]).exit_code == 0
    before = partial.read_bytes()
    for command in (["merge", str(partial)], ["merge", str(partial), "--max-loss", "9"]):
        result = runner.invoke(app, [*command, "--png", str(tmp_path)])
        assert result.exit_code == 2 and "is one of the inputs" in result.stderr, (command, result.stderr)
    assert partial.read_bytes() == before


def test_the_worst_rows_table_names_sequences_and_ids_as_the_terminal_does(tmp_path):
    """Found in review: the page's worst rows had an 'id' column of null without --id-col, and no
    sequence or position for a sequence dump's rows."""
    rng = np.random.default_rng(5)
    z = rng.standard_normal((6, 4, 3)) * 3
    y = rng.integers(0, 3, (6, 4))
    np.savez(tmp_path / "s.npz", logits=z, labels=y)
    flat = z.reshape(-1, 3)
    worst = int(np.argmax(np.log(np.exp(flat).sum(1)) - flat[np.arange(24), y.reshape(-1)]))
    result = CliRunner().invoke(app, ["score", str(tmp_path / "s.npz"), "--worst", "3", "--report", str(tmp_path / "r.html"), "-q"])
    assert result.exit_code == 0, result.stderr
    page = (tmp_path / "r.html").read_text()
    table = page[page.index("<h2>Worst 3 rows</h2>"):]
    table = table[: table.index("</table>")]
    assert "<th>row</th><th>sample</th><th>position</th><th>label</th>" in table and "<th>id</th>" not in table
    assert f'<tr><td class="n">{worst}</td><td>{worst // 4}</td><td class="n">{worst % 4}</td>' in table


def test_the_diff_page_has_its_gates_and_groups(tmp_path):
    """Found in review: `diff --by … --fail-on-regression … --report` left out the groups (which the
    README lists) and the gates that decided the run."""
    samples = Path(__file__).resolve().parents[1] / "sample_data"
    result = CliRunner().invoke(app, ["diff", str(samples / "cifar10_val.parquet"), str(samples / "cifar10_val_candidate.parquet"),
                                      "--key", "id", "--by", "label", "--fail-on-regression", "0.05", "--report", str(tmp_path / "d.html")])
    assert result.exit_code == 0, result.stderr
    page = (tmp_path / "d.html").read_text()
    assert "<h2>Gates</h2>" in page and "<td>fail-on-regression</td>" in page and "<td>fail-on-regression by group (Holm)</td>" in page
    assert "<h2>Groups (10 of 10)</h2>" in page


def test_the_check_page_has_its_gates(tmp_path):
    """Found in review: `check --report` showed the verdict line only, no gate with its value and limit."""
    sample = Path(__file__).resolve().parents[1] / "sample_data" / "cifar10_val.parquet"
    result = CliRunner().invoke(app, ["check", str(sample), "--max-loss", "2.5", "--min-accuracy", "0.9", "--report", str(tmp_path / "c.html")])
    assert result.exit_code == 1, result.stderr
    page = (tmp_path / "c.html").read_text()
    assert "<h2>Gates</h2>" in page and "<td>mean loss</td>" in page and "<td>accuracy</td>" in page and "<td>FAIL</td>" in page
