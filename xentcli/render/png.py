"""`--png FOLDER`: the report's charts as PNG files, through matplotlib's Agg backend — an optional
extra (`pip install 'xentcli[png]'`); without it the option exits 2 with that line. Drawn from the
same aggregates as the HTML report."""

from __future__ import annotations

import os
from typing import Any

from xentcli.errors import OptionError, OutputError
from xentcli.plain import group_label
from xentcli.render.escape import text_of

INSTALL = "pip install 'xentcli[png]'"


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise OptionError("--png needs matplotlib, an optional extra", hint=INSTALL) from None
    return plt


# Every file --png may write: checked against the inputs before the run.
NAMES = ("loss_histogram.png", "delta_histogram.png", "reliability.png", "per_class.png", "groups.png")


def refuse_inputs(folder: str, inputs: list[str], force: bool = False) -> None:
    """Before the run (a refusal after it would leave the other outputs written): no chart may land
    on an input (also through a symlink), nor over a file without --force; the folder must be one,
    or creatable (its nearest existing ancestor a folder)."""
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise OutputError("is not a folder", path=folder, hint="give --png a folder (created when missing)")
    ancestor = os.path.dirname(os.path.abspath(folder))
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise OutputError(f"cannot create the folder: {ancestor} is not a folder", path=folder)
    for name in NAMES:
        path = os.path.join(folder, name)
        for source in inputs:
            if os.path.exists(path) and os.path.exists(source) and os.path.samefile(path, source):
                raise OutputError("is one of the inputs", path=path, hint="give --png a folder of its own")
        if os.path.lexists(path) and not force:
            raise OutputError("already exists", path=path, hint="pass --force to replace the charts, or give another folder")


def _save(plt: Any, fig: Any, path: str, force: bool) -> None:
    """The figure as PNG bytes, moved into place whole (a symlink there is replaced, never written through)."""
    import io
    import warnings

    from xentcli.render.rows import write_atomically

    data = io.BytesIO()
    with warnings.catch_warnings():  # a glyph the font lacks: drawn as a box, not warned about on stderr
        warnings.simplefilter("ignore")
        fig.tight_layout()
        fig.savefig(data, format="png")
    plt.close(fig)
    write_atomically(path, data.getvalue(), [], force, "chart")


def _bars(plt: Any, labels: list[str], values: list[float], title: str, path: str, color: str, force: bool) -> None:
    fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
    ax.bar(range(len(values)), values, color=color)
    ax.set_title(title)
    step = max(1, len(labels) // 8)
    ax.set_xticks(range(0, len(labels), step), [text_of(labels[i], 40) for i in range(0, len(labels), step)],
                  rotation=30, ha="right", fontsize=7)
    for label in ax.get_xticklabels():  # text from the data: never TeX-like math ("$\\frac{a}{b}$" is those characters)
        label.set_parse_math(False)
    _save(plt, fig, path, force)


def write_pngs(folder: str, report: Any = None, diff: Any = None, inputs: list[str] | None = None, force: bool = False) -> list[str]:
    """The charts of a score/check report or a diff report as PNG files in `folder` (created if
    missing), never over one of the `inputs`, nor over a file without `force`; returns their paths."""
    refuse_inputs(folder, inputs or [], force)
    plt = _pyplot()
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder: {exc.strerror}", path=folder) from None
    written = []

    def histogram(bins: list[dict[str, Any]], title: str, name: str) -> None:
        if bins:
            labels = ["0" if b["lo"] == b["hi"] == 0 else f"{b['lo']:.3g}–{b['hi']:.3g}" for b in bins]
            path = os.path.join(folder, name)
            _bars(plt, labels, [b["count"] for b in bins], title, path, "#4c78a8", force)
            written.append(path)

    if diff is not None:
        histogram(diff.delta_histogram, "Δloss (candidate − base)", "delta_histogram.png")
        return written
    histogram(report.histogram, "loss histogram (log-spaced bins)", "loss_histogram.png")
    if report.calibration is not None and report.calibration["table"]:
        table = report.calibration["table"]
        fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
        ax.bar([(r["lo"] + r["hi"]) / 2 for r in table], [r["accuracy"] for r in table],
               width=[r["hi"] - r["lo"] for r in table], color="#72b7b2", edgecolor="white")
        ax.plot([0, 1], [0, 1], "--", color="#98a2b3")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title="reliability")
        path = os.path.join(folder, "reliability.png")
        _save(plt, fig, path, force)
        written.append(path)
    if report.per_class:
        items = sorted(report.per_class, key=lambda r: -(r.get("support") or 0))[:40]
        key = "class" if "class" in items[0] else "label"
        path = os.path.join(folder, "per_class.png")
        _bars(plt, [str(r.get("name", r[key])) for r in items], [r["loss_mean"] for r in items], f"mean loss per {key}", path, "#f58518",
              force)
        written.append(path)
    if report.groups:
        items = report.groups[:40]
        path = os.path.join(folder, "groups.png")
        _bars(plt, [group_label(g["by"], g.get("merged_groups", 0)) for g in items], [g["loss_mean"] for g in items],
              "mean loss per group", path, "#e45756", force)
        written.append(path)
    return written
