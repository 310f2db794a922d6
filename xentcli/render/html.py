"""`--report out.html`: one self-contained page — inline CSS and inline SVG charts, no script, no
external reference (the SVG namespace aside), no font download — drawn from the aggregates only
(the histogram, the calibration table, the per-class and per-group rows, the top-K rows), so its
size stays bounded whatever the dump: the long lists are cut to MAX_ITEMS with a note. Every text
from the data is escaped (control characters made visible, then HTML-escaped)."""

from __future__ import annotations

import hashlib
import html
import math
import os
from typing import Any

from xentcli import __version__
from xentcli.plain import group_label
from xentcli.render.ci import counts_and_mean
from xentcli.render.escape import MAX_CELL, number_text, text_of

MAX_ITEMS = 40  # classes, groups, rows and bins drawn or listed at most
SVG_NS = "http://www.w3.org/2000/svg"
CHART_W, CHART_H = 640, 180

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:960px;color:#1d2330;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #d8dde6;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .7em;border-bottom:1px solid #eceff4;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}.pass{color:#17803d;font-weight:600}.fail{color:#b42318;font-weight:600}
.error{color:#b42318}.warning{color:#a15c07}.info{color:#475467}.meta{color:#475467;font-size:.9em}code{font-size:.9em}
svg{display:block;margin:.4em 0}.note{color:#475467;font-size:.9em}
"""


# Text from the data is cut (with '…') so that the page's size stays bounded whatever the dump: a
# cell (a class, group or id) to MAX_CELL characters as in the tables, any other text (a path, a
# message or verdict quoting a value) to MAX_TEXT. Found in review: 200,000-character ids and group
# values made a 24 MB page.
MAX_TEXT = 1000


def _t(value: Any, limit: int = MAX_TEXT) -> str:
    """Data as HTML text: control characters visible, markup escaped, cut to `limit` characters."""
    return html.escape(text_of(value, limit), quote=True)


def _cell(value: Any) -> str:
    return _t(value, MAX_CELL)


def _n(value: Any, digits: int = 6) -> str:
    return _t(number_text(value, digits))


def _table(header: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _key_values(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


# The charts' plot areas sit right of a margin for the value axis's labels and below one for its title.
LEFT, TOP = 64, 18
AXIS = 'stroke="#98a2b3"'
LABEL = 'font-size="11" fill="#475467"'


def nice_ticks(top: float, most: int = 5) -> list[float]:
    """0 and the multiples of a round step (1, 2, 2.5 or 5 × 10^k) up to `top`, at most `most` + 1."""
    if not top > 0 or top == math.inf:
        return [0.0]
    raw = top / most
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(f * power for f in (1, 2, 2.5, 5, 10) if f * power >= raw)
    return [k * step for k in range(int(top / step * (1 + 1e-12)) + 1)]


def _value_axis(top: float, height: float, title: str) -> list[str]:
    """The value axis left of a plot area of `height` whose top is `top`: ticks, light grid lines,
    labels and the title above it."""
    parts = [f'<text x="0" y="11" {LABEL}>{_t(title)}</text>', f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + height}" {AXIS}/>']
    for tick in nice_ticks(top):
        y = round(TOP + height - tick / top * height, 2) if top > 0 else TOP + height
        parts.append(f'<line x1="{LEFT - 4}" y1="{y}" x2="{LEFT + CHART_W}" y2="{y}" stroke="#eceff4"/>'
                     f'<text x="{LEFT - 6}" y="{round(y + 4, 2)}" {LABEL} text-anchor="end" class="tick">{_t(number_text(tick, 4))}</text>')
    return parts


def bars_svg(labels: list[str], values: list[float], title: str, color: str = "#4c78a8",
             whiskers: list[tuple[float, float]] | None = None, axis: str = "", under: list[str] | None = None) -> str:
    """Vertical bars, heights proportional to the values (the largest fills the chart), over a value
    axis titled `axis` (default: `title`) with round ticks, each bar named by `under` (default: its
    label) where the names fit; each bar carries its value in data-value, so the drawing can be
    checked against the numbers."""
    finite = [v for v in values if v == v and abs(v) != math.inf]
    top = max([abs(v) for v in finite] + [abs(hi) for _, hi in (whiskers or []) if hi == hi]) if finite else 1.0
    top = top or 1.0
    n = max(len(values), 1)
    width = CHART_W / n
    parts = [f'<svg xmlns="{SVG_NS}" width="{LEFT + CHART_W}" height="{TOP + CHART_H + 24}" role="img" aria-label="{_t(title)}">',
             *_value_axis(top, CHART_H, axis or title), f'<g transform="translate({LEFT},{TOP})">',
             f'<line x1="0" y1="{CHART_H}" x2="{CHART_W}" y2="{CHART_H}" {AXIS}/>']
    for i, (label, value) in enumerate(zip(labels, values)):
        height = 0.0 if not (value == value and abs(value) != math.inf) else round(abs(value) / top * CHART_H, 2)
        x = round(i * width + width * 0.1, 2)
        parts.append(f'<rect class="bar" x="{x}" y="{round(CHART_H - height, 2)}" width="{round(width * 0.8, 2)}" height="{height}" '
                     f'fill="{color}" data-value="{value!r}"><title>{_cell(label)}: {_n(value)}</title></rect>')
        if whiskers:
            lo, hi = whiskers[i]
            if lo == lo and hi == hi:
                cx = round(i * width + width / 2, 2)
                parts.append(f'<line x1="{cx}" x2="{cx}" y1="{round(CHART_H - max(lo, 0) / top * CHART_H, 2)}" '
                             f'y2="{round(CHART_H - min(hi, top) / top * CHART_H, 2)}" stroke="#1d2330"/>')
    fits = int(width / 6.5)  # characters of 11px text under a bar
    under = labels if under is None else under
    if labels and (n > 20 or fits < 3):  # the first and the last only
        parts.append(f'<text x="0" y="{CHART_H + 16}" {LABEL}>{_cell(labels[0])}</text>')
        parts.append(f'<text x="{CHART_W}" y="{CHART_H + 16}" {LABEL} text-anchor="end">{_cell(labels[-1])}</text>')
    else:  # each bar's, cut to its width (the bar's tooltip and the table below have them whole)
        parts += [f'<text x="{round(i * width + width / 2, 2)}" y="{CHART_H + 16}" {LABEL} text-anchor="middle">{_t(label, min(fits, MAX_CELL))}</text>'
                  for i, label in enumerate(under)]
    parts.append("</g></svg>")
    return "".join(parts)


def reliability_svg(table: list[dict[str, Any]]) -> str:
    """Bars of the observed accuracy over their bins on [0, 1], the diagonal, and each bin's
    interval; accuracy on the value axis, confidence along the bottom (ticks every 0.25)."""
    size = CHART_H
    scale = size
    parts = [f'<svg xmlns="{SVG_NS}" width="{LEFT + size + 24}" height="{TOP + size + 34}" role="img" aria-label="reliability diagram">']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y, x = round(TOP + size - tick * scale, 2), round(LEFT + tick * scale, 2)
        parts.append(f'<line x1="{LEFT - 4}" y1="{y}" x2="{LEFT + size}" y2="{y}" stroke="#eceff4"/>'
                     f'<text x="{LEFT - 6}" y="{round(y + 4, 2)}" {LABEL} text-anchor="end" class="tick">{tick:g}</text>'
                     f'<line x1="{x}" y1="{TOP + size}" x2="{x}" y2="{TOP + size + 4}" {AXIS}/>'
                     f'<text x="{x}" y="{TOP + size + 16}" {LABEL} text-anchor="middle" class="tick">{tick:g}</text>')
    parts += [f'<text x="0" y="11" {LABEL}>accuracy</text>',
              f'<text x="{LEFT + size}" y="{TOP + size + 30}" {LABEL} text-anchor="end">confidence</text>',
              f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + size}" {AXIS}/>', f'<g transform="translate({LEFT},{TOP})">',
              f'<line x1="0" y1="{size}" x2="{size}" y2="0" {AXIS} stroke-dasharray="4 3"/>',
              f'<line x1="0" y1="{size}" x2="{size}" y2="{size}" {AXIS}/>']
    for row in table:
        x, w = round(row["lo"] * scale, 2), round((row["hi"] - row["lo"]) * scale, 2)
        h = round(row["accuracy"] * scale, 2)
        parts.append(f'<rect class="bar" x="{x}" y="{round(size - h, 2)}" width="{max(w - 1, 0.5)}" height="{h}" fill="#72b7b2" '
                     f'data-value="{row["accuracy"]!r}"><title>({row["lo"]:.3f}, {row["hi"]:.3f}]: accuracy {row["accuracy"]:.4f}, '
                     f'confidence {row["confidence"]:.4f}, {row["count"]:,} rows</title></rect>')
        lo, hi = row["accuracy_ci"]
        if lo == lo and hi == hi:
            cx = round(x + w / 2, 2)
            parts.append(f'<line x1="{cx}" x2="{cx}" y1="{round(size - lo * scale, 2)}" y2="{round(size - hi * scale, 2)}" stroke="#1d2330"/>')
    parts.append("</g></svg>")
    return "".join(parts)


def input_fingerprint(path: str) -> tuple[int, str]:
    """A file's size and the SHA-256 of its first MiB (enough to tell two dumps apart cheaply)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
        return os.path.getsize(path), hashlib.sha256(head).hexdigest()
    except OSError:
        return -1, ""


def _inputs(paths: list[str]) -> str:
    rows = []
    for path in paths:
        size, digest = input_fingerprint(path)
        rows.append([_t(path), _n(size) if size >= 0 else "–", f"<code>{digest[:16]}…</code>" if digest else "–"])
    return _table(["input", "bytes", "SHA-256 of the first MiB"], rows, {1})


def _histogram(bins: list[dict[str, Any]], title: str, axis: str = "rows") -> str:
    if not bins:
        return ""
    shown = bins[:MAX_ITEMS]
    labels = [("0" if b["lo"] == b["hi"] == 0 else f"{b['lo']:.3g} – {b['hi']:.3g}") for b in shown]
    return f"<h2>{title}</h2>" + bars_svg(labels, [float(b["count"]) for b in shown], title, axis=axis,
                                          under=[f"{b['lo']:.3g}" for b in shown])  # each bin's lower edge


def _diagnostics(items: list[dict[str, Any]]) -> str:
    from xentcli.diagnostics import RULES

    if not items:
        return "<h2>Diagnostics</h2><p>No diagnostic.</p>"
    rows = []
    for item in items:
        rule = RULES.get(item["code"])
        why = f'<div class="note">{_t(rule.why)} <b>Fix:</b> {_t(rule.fix)}</div>' if rule else ""
        side = f" ({_t(item['side'])})" if item.get("side") else ""
        rows.append([f"<b>{item['code']}</b>", _t(item["name"]) + side, f'<span class="{item["severity"]}">{item["severity"]}</span>',
                     _n(item.get("rows") or 0), _t(item["message"]) + (f"<br>→ {_t(item['hint'])}" if item.get("hint") else "") + why])
    return "<h2>Diagnostics</h2>" + _table(["code", "name", "severity", "rows", "what and what to do"], rows, {3})


def _page(title: str, body: list[str], command: str) -> str:
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\"><title>{_t(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{_t(title)}</h1><p class=\"meta\">xent {__version__} · <code>{_t(command)}</code></p>" + "".join(body) + "</body></html>\n")


def score_report(report: Any, command: str, inputs: list[str], verdict: str | None = None, gates: list[dict] | None = None) -> str:
    """The page of a score or check run (`gates`: check's, each with its value and limit)."""
    s = report.summary
    body = []
    if verdict is not None:
        body.append(f'<p class="{"pass" if verdict.startswith("PASS") else "fail"}">{_t(verdict)}</p>')
    if gates:  # found in review: the page had the verdict line only
        body.append("<h2>Gates</h2>" + _table(["gate", "value", "limit", "result"],
                                              [[_cell(g["gate"]), _n(g["value"]), f"{'≤' if g['op'] == '<=' else '≥'} {_n(g['limit'])}", "pass" if g["passed"] else "FAIL"]
                                               for g in gates], {1}))
    body.append("<h2>Inputs</h2>" + _inputs(inputs))
    *counts, (mean_label, mean) = counts_and_mean(report)
    interval = f" [{_n(s['loss_ci'][0], 4)}, {_n(s['loss_ci'][1], 4)}] ({_n(100 * s['confidence'], 4)}%)" if "loss_ci" in s else ""
    rows = [*((name, _n(value)) for name, value in counts), (mean_label, _n(mean) + interval),
            ("loss p50 / p90 / p99", " / ".join(_n(s[k], 5) for k in ("loss_p50", "loss_p90", "loss_p99"))),
            ("exact match" if report.input.head == "multilabel" else "accuracy", _n(s["accuracy"])),
            ("perplexity", _n(s["perplexity"])), ("non-finite rows", _n(s["nonfinite"])), ("head", _t(report.input.head))]
    body.append("<h2>Summary</h2>" + _key_values(rows))
    body.append(_histogram(report.histogram, "Loss histogram (log-spaced bins of the counted losses)"))
    if report.calibration is not None and report.calibration["table"]:
        c = report.calibration
        body.append("<h2>Reliability</h2>" + reliability_svg(c["table"]) + _key_values(
            [("ECE / MCE / RMSCE", " / ".join(_n(c[k], 4) for k in ("ece", "mce", "rmsce"))), ("Brier", _n(c["brier"], 5))]))
    if report.per_class:
        items = sorted(report.per_class, key=lambda r: -(r.get("support") or 0))[:MAX_ITEMS]
        key = "class" if "class" in items[0] else "label"
        labels = [str(r.get("name", r[key])) for r in items]
        body.append(f"<h2>Mean loss per {key} (the {len(items)} with the most support of {len(report.per_class):,})</h2>"
                    + bars_svg(labels, [r["loss_mean"] for r in items], f"mean loss per {key}", "#f58518", axis="mean loss")
                    + _table([key, "support", "mean loss", "precision", "recall"],
                             [[_cell(label), _n(r["support"]), _n(r["loss_mean"], 5), _n(r.get("precision"), 4), _n(r.get("recall"), 4)]
                              for label, r in zip(labels, items)], {1, 2, 3, 4}))
    if report.groups:
        items = report.groups[:MAX_ITEMS]
        labels = [group_label(g["by"], g.get("merged_groups", 0)) for g in items]
        body.append(f"<h2>Groups (the {len(items)} worst of {len(report.groups):,})</h2>"
                    + bars_svg(labels, [g["loss_mean"] for g in items], "mean loss per group", "#e45756", [tuple(g["loss_ci"]) for g in items],
                              f"mean loss (lines: {_n(100 * s['confidence'], 4)}% intervals)")
                    + _table(["group", "counted", "mean loss", "accuracy"], [[_cell(label), _n(g["counted"]), _n(g["loss_mean"], 5), _n(g["accuracy"], 4)]
                                                                           for label, g in zip(labels, items)], {1, 2, 3}))
    body.append(_diagnostics(report.diagnostics))
    if report.worst:  # as the terminal's table: the sequence and position of a sequence dump's row, the id with --id-col
        shown = report.worst[:MAX_ITEMS]
        sequences, placed = any("sample" in r for r in shown), any(r.get("position") is not None for r in shown)
        lead = ["row", *(["sample"] if sequences else []), *(["position"] if placed else []), *(["id"] if report.id_column else [])]
        rest = ["loss"] if report.input.head == "multilabel" else ["label", "pred", "loss"]
        rows = [[_n(r["row"]), *([_cell(r.get("sample", ""))] if sequences else []), *([_n(r.get("position"))] if placed else []),
                 *([_cell(r.get("id", ""))] if report.id_column else []),
                 *([] if len(rest) == 1 else [_n(r.get("label")), _n(r.get("pred"))]), _n(r["loss"])] for r in shown]
        numeric = {0, len(lead) + len(rest) - 1} | ({lead.index("position")} if placed else set())
        body.append(f"<h2>Worst {len(shown)} rows</h2>" + _table([*lead, *rest], rows, numeric))
    return _page(f"xent report: {report.input.path}", body, command)


def diff_report(report: Any, command: str, inputs: list[str], verdict: str) -> str:
    loss = report.metrics["loss_mean"]
    body = [f'<p class="{"pass" if report.passed else "fail"}">{_t(verdict)}</p>', "<h2>Inputs</h2>" + _inputs(inputs)]
    rows = []
    for name in ("loss_mean", "accuracy", "loss_p50", "loss_p90", "loss_p99"):
        m = report.metrics[name]
        ci = m.get("ci")
        rows.append([name, _n(m["base"]), _n(m["candidate"]), _n(m["delta"]), "–" if not ci else f"[{_n(ci[0], 4)}, {_n(ci[1], 4)}]",
                     _n(m.get("p_value"), 3) if m.get("p_value") is not None else ""])
    body.append(f"<h2>Candidate against base ({report.pairing['usable_pairs']:,} pairs)</h2>"
                + _table(["metric", "base", "candidate", "Δ", f"{report.confidence:.0%} CI", "p"], rows, {1, 2, 3, 5}))
    body.append(_key_values([("loss Δ", f"{_n(loss['delta'])} ± {_n(loss['ci'][1] - loss['delta'], 3)}"),
                             ("right → wrong", _n(report.flips["correct_to_wrong"])), ("wrong → right", _n(report.flips["wrong_to_correct"]))]))
    if report.gates:  # found in review: the page left out the gates that decided the run
        body.append("<h2>Gates</h2>" + _table(
            ["gate", "margin", "bound", "value", "result"],
            [[_cell(g["gate"]), _n(g["margin"]), _cell(g["bound"]), _n(g["value"]), "pass" if g["passed"] else "FAIL"] for g in report.gates],
            {1, 3}))
    if report.groups:  # and the groups, which the README lists among its contents
        items = report.groups[:MAX_ITEMS]
        body.append(f"<h2>Groups ({len(items)} of {len(report.groups):,})</h2>" + _table(
            ["group", "pairs", "loss Δ", f"{report.confidence:.0%} CI", "p", "accuracy Δ", "small"],
            [[_cell(group_label(g["by"], g["pooled_groups"])), _n(g["usable_pairs"]), _n(g["loss_mean"]["delta"]),
              "–" if not g["loss_mean"].get("ci") else f"[{_n(g['loss_mean']['ci'][0], 4)}, {_n(g['loss_mean']['ci'][1], 4)}]",
              _n(g["loss_mean"].get("p_value"), 3), _n(g["accuracy"]["delta"]), "yes" if g.get("small") else ""] for g in items],
            {1, 2, 4, 5}))
    body.append(_histogram(report.delta_histogram, "Δloss histogram (candidate − base)", "pairs"))
    body.append(_diagnostics(report.diagnostics))
    if report.regressed:
        body.append("<h2>Most regressed rows</h2>" + _table(
            ["row", "key", "label", "loss base", "loss candidate", "Δ"],
            [[_n(r["row"]), _cell(r.get("key", "")), _n(r.get("label")), _n(r["loss_base"]), _n(r["loss_candidate"]), _n(r["delta"])]
             for r in report.regressed[:MAX_ITEMS]], {0, 3, 4, 5}))
    return _page(f"xent diff: {report.base.input.path} → {report.candidate.input.path}", body, command)
