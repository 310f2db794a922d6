"""Rich tables for people: what was read, the loss summary, and the optional breakdowns."""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from xentcli.plain import distinct_digits, group_value_text, pooled_label
from xentcli.render.escape import MAX_CELL, terminal
from xentcli.render.explanations import explain_differences
from xentcli.report import DiffReport, Report


def shown(value: Any, limit: int | None = MAX_CELL) -> Text:
    """A value from the data or the user, as plain text: no markup, no control characters."""
    return Text(terminal(value, limit))


def fmt_share(share: float) -> str:
    """A fraction as a percentage to one decimal; a share that rounds to 0 but is not 0 (1 row of
    3,000) as "<0.1%", not "0.0%"."""
    if share != share:
        return "n/a"
    return "<0.1%" if 0 < share < 0.0005 else f"{share:.1%}"


def fmt_number(value: Any, digits: int = 7) -> str:
    """Losses to 7 significant digits; NaN/inf spelled out; integers with thousands separators."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}g}"
    return str(value)


def fmt_reported(value: Any) -> str:
    """A framework's number: NaN is what it would print, so say NaN."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return fmt_number(value)


def fmt_fraction(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def _table(title: str, columns: list[tuple[str, str]]) -> Table:
    """A table in the house style. A "num" column (right-aligned) and a "tag" column (short words
    xent writes: codes, bins) never wrap, so a number is never cut; a "text" column wraps, never
    narrower than its header's first 12 characters. One space between columns: the usual tables fit
    80 columns (a pipe, CI logs)."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    for name, kind in columns:
        table.add_column(name, justify="right" if kind == "num" else "left", no_wrap=kind != "text",
                         min_width=min(len(name), 12) if kind == "text" else None)
    return table


def _key_value(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(justify="left")
    for key, value in rows:
        table.add_row(key, shown(value, None) if isinstance(value, str) else value)
    return table


def input_table(report: Report) -> Table:
    info = report.input
    kind_note = {"default": "", "--input": " (--input)"}.get(info.input_kind_from, " (by name)")
    target_kind = "integer labels" if info.target_kind == "sparse" else "one-hot/soft rows"
    binary = info.head == "binary"
    if binary:
        target_kind = "0/1 or probabilities of the positive class"
    elif info.head == "multilabel":
        target_kind = "rows of 0/1 (or probabilities) per label"
    size = (("rows", fmt_number(report.summary["rows"])) if binary
            else (f"rows × {'labels' if info.head == 'multilabel' else 'classes'}", f"{fmt_number(report.summary['rows'])} × {info.num_classes:,}"))
    rows = [
        ("file", info.path + (f" + {info.labels_path}" if info.labels_path else "")),
        ("format", info.format),
        size,
        ("scores", f"{info.score_dtype} {info.input_kind}{kind_note}, {info.scores}"),
        ("targets", f"{target_kind}, {info.targets}"),
    ]
    if binary or info.head_from != "default":
        head = {"binary": "binary sigmoid", "multilabel": "multi-label sigmoid"}.get(info.head, "softmax")
        rows.insert(3, ("head", f"{head} ({info.head_from})"))
    if info.ids:
        rows.append(("ids", info.ids))
    if info.sequences:
        rows.append(("sequences", info.sequences))
    if info.weights:
        rows.append(("sample weights", info.weights))
    return _key_value("Input", rows)


def summary_table(report: Report) -> Table:
    s = report.summary
    level = f"{s['confidence']:.0%}" if "confidence" in s else ""
    loss_half = (s["loss_ci"][1] - s["loss_ci"][0]) / 2 if "loss_ci" in s else math.nan
    rows = [
        ("loss (mean)", fmt_number(s["loss_mean"]) + ("" if math.isnan(loss_half) else f" ± {fmt_number(loss_half, 3)} ({level}"
                                                      + (", clustered by sequence" if s.get("se_clustered") else "") + ")")),
        ("loss sum", fmt_number(s["loss_sum"])),
        # the quantiles come from the sketch (within 0.5%): 4 digits, not 7 that it does not hold (a new user read
        # p50 0.1113551 as exact); min and max are exact
        ("min / p50 / p90", " / ".join(fmt_number(s[k], 7 if k == "loss_min" else 4) for k in ("loss_min", "loss_p50", "loss_p90"))),
        ("p99 / max", " / ".join(fmt_number(s[k], 4 if k == "loss_p99" else 7) for k in ("loss_p99", "loss_max"))),
        ("perplexity", fmt_number(s["perplexity"])),
        ("accuracy", fmt_fraction(s["accuracy"]) + ("" if math.isnan(s.get("accuracy_ci", [math.nan])[0])
                                                     else f" [{fmt_fraction(s['accuracy_ci'][0])}, {fmt_fraction(s['accuracy_ci'][1])}]")),
        (f"top-{s['top_k']} accuracy", fmt_fraction(s["top_k_accuracy"])),
        ("rows counted", f"{fmt_number(s['counted'])} of {fmt_number(s['rows'])}"),
    ]
    if "hamming_accuracy" in s:  # a multi-label head: the exact match, and the share of labels right
        rows[5] = ("exact match", rows[5][1])
        rows.insert(6, ("Hamming accuracy", fmt_fraction(s["hamming_accuracy"])))
        rows[7] = ("positives (targets / predicted)", f"{fmt_fraction(s['positive_rate'])} / {fmt_fraction(s['predicted_positive_rate'])}"
                   f" of the labels at P(y = 1) ≥ {s['threshold']:g}")
    elif "positive_rate" in s:  # a binary head: no top-k; the positive rates and the threshold
        rows[6] = ("positives (targets / predicted)", f"{fmt_fraction(s['positive_rate'])} / {fmt_fraction(s['predicted_positive_rate'])}"
                   f" at P(y = 1) ≥ {s['threshold']:g}")
    if s.get("ignored"):
        rows.append(("rows ignored", f"{fmt_number(s['ignored'])} (label = the ignore index)"))
    if "weight_sum" in s:
        rows[0] = ("loss (weighted mean)", rows[0][1])
        rows[1] = ("loss sum (unweighted)", rows[1][1])
        rows.insert(1, ("weighted sum / weights", f"{fmt_number(s['weighted_loss_sum'])} / {fmt_number(s['weight_sum'])}"))
    table = _key_value("Cross-entropy", rows)
    if s["nonfinite"]:
        table.add_row(
            Text("non-finite", style="bold red"),
            Text(f"{s['nonfinite']:,} {'row' if s['nonfinite'] == 1 else 'rows'} with a NaN or infinite loss, left out of the means", style="red"),
        )
    return table


def worst_table(report: Report) -> Table:
    """The worst rows: row, the sequence and position of a sequence dump's row, the id, then label,
    prediction, loss and p_true (a multi-label row has no one label: its loss only)."""
    sequences = any("sample" in item for item in report.worst)  # (a partial file saved before they named it merges without)
    numbered = all(isinstance(item.get("sample"), int) for item in report.worst if "sample" in item)  # numbers, not --group-col keys
    placed = any(item.get("position") is not None for item in report.worst)  # --group-col rows have no position
    lead = [("row", "num"), *([("sample", "num" if numbered else "text")] if sequences else []), *([("position", "num")] if placed else []),
            *([(shown(report.id_column), "text")] if report.id_column else [])]
    multilabel = report.input.head == "multilabel"
    rest = [("loss", "num")] if multilabel else [("label", "num"), ("pred", "num"), ("loss", "num"), ("p_true", "num")]
    table = _table(_capped_title(f"Worst {len(report.worst)} rows", len(report.worst)), [*lead, *rest])
    for item in report.worst[:TABLE_ROWS_SHOWN]:
        cells: list[str | Text] = [fmt_number(item["row"])]
        if sequences:  # a sequence's key is data (a --group-col value): shown as text
            sample = item.get("sample")
            cells.append("" if "sample" not in item else fmt_number(sample) if numbered else shown(sample))
        if placed:
            cells.append("" if item.get("position") is None else fmt_number(item["position"]))
        if report.id_column:
            cells.append(shown(item["id"]))  # an identifier: its exact text, never a formatted number
        cells += [fmt_number(item["loss"])] if multilabel else [
            str(item["label"]), str(item["pred"]), fmt_number(item["loss"]), fmt_number(item["p_true"], 4)]
        table.add_row(*cells)
    return table


# The tables show at most this many classes or rows (rendering 100,000 rows takes Rich half a
# minute); the title says so, and --json lists them all.
TABLE_ROWS_SHOWN = 200


def _capped_title(title: str, total: int) -> str:
    return f"{title} (the first {TABLE_ROWS_SHOWN:,} of {total:,}; --json lists all)" if total > TABLE_ROWS_SHOWN else title


def per_label_table(report: Report) -> Table:
    """A multi-label head's labels: positives, mean loss, accuracy, precision and recall at the threshold."""
    table = _table(_capped_title("Per label", len(report.per_class)),
                   [("label", "text")] + [(name, "num") for name in ("positives", "elements", "mean loss", "accuracy", "precision", "recall", "F1")])
    for item in report.per_class[:TABLE_ROWS_SHOWN]:
        table.add_row(
            shown(f"{item['label']} {item['name']}" if "name" in item else str(item["label"])),
            fmt_number(item["support"]), fmt_number(item["elements"]), fmt_number(item["loss_mean"]),
            fmt_fraction(item["accuracy"]), fmt_fraction(item["precision"]), fmt_fraction(item["recall"]), fmt_fraction(item["f1"]),
        )
    return table


def per_class_table(report: Report) -> Table:
    if report.input.head == "multilabel":
        return per_label_table(report)
    table = _table(_capped_title("Per class", len(report.per_class)),
                   [("class", "text")] + [(name, "num") for name in ("support", "predicted", "mean loss", "recall", "precision", "F1", "mean p_true")])
    for item in report.per_class[:TABLE_ROWS_SHOWN]:
        table.add_row(
            shown(f"{item['class']} {item['name']}" if "name" in item else str(item["class"])),
            fmt_number(item["support"]),
            fmt_number(item["predicted"]),
            fmt_number(item["loss_mean"]),
            fmt_fraction(item["accuracy"]),
            fmt_fraction(item["precision"]),
            fmt_fraction(item["f1"]),
            fmt_fraction(item["p_true_mean"]),
        )
    return table


def like_table(doc: dict[str, Any]) -> Table:
    rows = [
        (f"{name}{' (default)' if name == doc['reduction'] else ''}", fmt_reported(value))
        for name, value in doc["per_reduction"].items()
    ]
    table = _key_value(f"As {doc['short_name']} reports it", rows)
    for error in doc["errors"]:
        table.add_row(Text("would raise", style="bold red"), Text(f"{error} ({doc['error_rows']:,} rows left out here)", style="red"))
    for note in doc["notes"]:
        table.add_row(Text("note", style="yellow"), Text(note))
    return table


def compare_table(report: Report) -> Group:
    table = _table("True loss and what each framework reports",
                   [("", "tag"), ("reduction", "tag"), ("loss", "num"), ("sum", "num"), ("raises", "text")])
    s = report.summary
    table.add_row("true loss", "mean", fmt_number(s["loss_mean"]), fmt_number(s.get("weighted_loss_sum", s["loss_sum"])), "")
    for doc in report.compare:
        errors = ", ".join(error.split(":")[0] for error in doc["errors"])
        table.add_row(doc["short_name"], doc["reduction"], fmt_reported(doc["loss"]), fmt_reported(doc["sum"]), Text(errors, style="red"))
    lines = [Text("• " + terminal(line)) for line in explain_differences(report)]
    return Group(table, *lines, Text(""))


def calibration_table(report: Report) -> Group:
    """The calibration summary and the reliability table (bins with few rows marked)."""
    from xentcli.calibration import LOW_COUNT

    c = report.calibration
    assert c is not None
    binary = report.input.head != "softmax"  # sigmoid heads: the reliability of P(y = 1) against the positive rate
    lines = [
        ("ECE / MCE / RMSCE", " / ".join(fmt_number(c[k], 4) for k in ("ece", "mce", "rmsce"))),
        ("Brier", fmt_number(c["brier"], 5)),
    ] if binary else [
        ("ECE / MCE / RMSCE", " / ".join(fmt_number(c[k], 4) for k in ("ece", "mce", "rmsce"))),
        ("Brier (multiclass)", fmt_number(c["brier"], 5)),
        ("Brier (top label)", fmt_number(c["brier_top_label"], 5)),
    ]
    t = c.get("temperature")
    if t is not None:
        sample = "" if t["sample_rows"] == t["rows"] else f" (a hash sample of {t['sample_rows']:,} rows)"
        lines += [("best temperature T", ("≤ " if t["at_bound"] and t["temperature"] < 1 else "≥ " if t["at_bound"] else "")
                   + fmt_number(t["temperature"], 4) + sample),
                  ("loss at T=1 → at T", f"{fmt_number(t['loss'], 5)} → {fmt_number(t['loss_at_temperature'], 5)}"),
                  ("loss a temperature removes", f"{t['miscalibration_share']:.1%}")]
    summary = _key_value(f"Calibration ({c['bins']} {'bin' if c['bins'] == 1 else 'bins'}, {c['binning']})", lines)
    observed = "pos. rate" if binary else "accuracy"  # short: the table must fit 80 columns
    table = _table("Reliability: mean P(y = 1) against the positive rate" if binary else "Reliability",
                   [("bin", "tag")] + [(name, "num") for name in ("rows", "mean p" if binary else "confidence", observed, "gap",
                                                                  f"{observed} {report.summary.get('confidence', 0.95):.0%} CI")]
                   + [("", "text")])
    for row in c["table"]:
        low, high = row["accuracy_ci"]
        table.add_row(f"({row['lo']:.3f}, {row['hi']:.3f}]", fmt_number(row["count"]), fmt_fraction(row["confidence"]),
                      fmt_fraction(row["accuracy"]), f"{row['gap']:+.4f}", f"[{fmt_fraction(low)}, {fmt_fraction(high)}]",
                      Text("few rows", style="dim") if row["count"] < LOW_COUNT else "")
    return Group(summary, table)


def groups_table(report: Report) -> Table:
    groups = report.groups
    names = list(groups[0]["by"]) if groups else []
    table = _table(_capped_title(f"Slices ({len(groups):,} groups, worst first)", len(groups)),
                   [(shown(name), "text") for name in names]
                   + [(name, "num") for name in ("counted", "share", "mean loss", "± CI", "Δ loss", "accuracy", "ECE")] + [("", "text")])
    for group in groups[:TABLE_ROWS_SHOWN]:
        low, high = group["loss_ci"]
        half = (high - low) / 2
        pool = group.get("merged_groups")  # the "(other)" pool, told apart from a value "(other)"
        cells: list[str | Text] = ([Text(pooled_label(pool), style="dim")] * len(group["by"]) if pool
                                   else [shown(group_value_text(value)) for value in group["by"].values()])
        cells += [fmt_number(group["counted"]), fmt_share(group["share"]), fmt_number(group["loss_mean"], 5),
                  "" if math.isnan(half) else fmt_number(half, 3), "" if math.isnan(group["delta_loss"]) else f"{group['delta_loss']:+.4g}",
                  fmt_fraction(group["accuracy"]),
                  "" if math.isnan(group["ece"]) else f"{group['ece']:.4f}", Text("small", style="dim") if group["small"] else ""]
        table.add_row(*cells)
    return table


def diff_groups_table(report: DiffReport) -> Table:
    """Per --by group: usable pairs, the loss Δ with its interval and p, the accuracy Δ (both
    sides' means are in the JSON)."""
    groups = report.groups
    names = list(groups[0]["by"])
    table = _table(_capped_title(f"Groups ({len(groups):,}, most regressed first)", len(groups)),
                   [(shown(name), "text") for name in names]
                   + [(name, "num") for name in ("pairs", "Δ loss", f"{report.confidence:.0%} CI", "p", "Δ accuracy")]
                   + [("", "text")])
    for group in groups[:TABLE_ROWS_SHOWN]:
        loss, accuracy = group["loss_mean"], group["accuracy"]
        low, high = loss["ci"]
        note = "small" if group["small"] and not group["pooled_groups"] else ""
        pool = group["pooled_groups"]  # the "(other)" pool, told apart from a value "(other)", as score's table does
        cells: list[str | Text] = ([Text(pooled_label(pool), style="dim")] * len(group["by"]) if pool
                                   else [shown(group_value_text(value)) for value in group["by"].values()])
        cells += [fmt_number(group["usable_pairs"]), fmt_number(loss["delta"], 4), _interval(loss["ci"]), _p(loss["p_value"]),
                  fmt_number(accuracy["delta"], 4), Text(note, style="dim")]
        table.add_row(*cells)
    return table


def confusions_table(report: Report) -> Table:
    title = f"Most frequent confusions ({len(report.confusions)})" + ("" if report.confusions_exact else ", approximate counts")
    table = _table(title, [("label", "text"), ("predicted", "text"), ("rows", "num")])
    names = report.input.classes
    for item in report.confusions[:TABLE_ROWS_SHOWN]:
        label, pred = (f"{item[key]} {names[item[key]]}" if names else str(item[key]) for key in ("label", "pred"))
        table.add_row(shown(label), shown(pred), fmt_number(item["count"]))
    return table


SEQUENCE_ROWS_SHOWN = 20


def sequence_table(report: Report) -> Table:
    items = report.per_sequence[:SEQUENCE_ROWS_SHOWN]
    more = len(report.per_sequence) - len(items)
    title = f"Per sequence ({len(report.per_sequence):,})" + (f": the first {len(items)}; --json lists all" if more else "")
    numbered = all(isinstance(item["sequence"], int) and not isinstance(item["sequence"], bool) for item in items)  # not --group-col text
    table = _table(title, [("sequence", "num" if numbered else "text")]
                   + [(name, "num") for name in ("positions", "tokens", "loss sum", "mean loss", "perplexity")])
    for item in items:
        table.add_row(
            shown(item["sequence"]), fmt_number(item["positions"]), fmt_number(item["tokens"]),
            fmt_number(item["loss_sum"]), fmt_number(item["loss_mean"]), fmt_number(item["perplexity"]),
        )
    return table


SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def diagnostics_table(report: Report) -> Table:
    table = _table("Diagnostics", [("code", "tag"), ("name", "tag"), ("severity", "tag"), ("rows", "num"), ("share", "num"),
                                   ("what and what to do", "text")])
    for item in report.diagnostics:
        examples = ", ".join(terminal(example.get("id", example["row"]), 40) for example in item["examples"])
        text = Text(terminal(item["message"]))
        text.append(f"\n→ {terminal(item['hint'])}", style="dim")
        if examples:
            plural = len(item["examples"]) > 1
            kind = ("ids" if plural else "id") if any("id" in example for example in item["examples"]) else ("rows" if plural else "row")
            text.append(f"\n  e.g. {kind} {examples}", style="dim")
        table.add_row(
            item["code"], item["name"], Text(item["severity"], style=SEVERITY_STYLE[item["severity"]]),
            fmt_number(item["rows"]) if item["rows"] else "", fmt_share(item["fraction"]) if item["rows"] else "", text,
        )
    return table


def render_tables(report: Report, console: Console) -> None:
    parts: list[Table | Group] = [input_table(report), summary_table(report)]
    if report.like is not None:
        parts.append(like_table(report.like))
    if report.compare:
        parts.append(compare_table(report))
    if report.worst:
        parts.append(worst_table(report))
    if report.per_class:
        parts.append(per_class_table(report))
    if report.per_sequence:
        parts.append(sequence_table(report))
    if report.calibration is not None:
        parts.append(calibration_table(report))
    if report.confusions:
        parts.append(confusions_table(report))
    if report.groups:
        parts.append(groups_table(report))
    if report.diagnostics:
        parts.append(diagnostics_table(report))
    errors = [d["code"] for d in report.diagnostics if d["severity"] == "error"]
    if errors:  # found in a new-user review: a broken dump's mean loss looked like any other, exit 0
        parts.append(Text(f"Error-level diagnostics ({', '.join(errors)}): the numbers above do not measure this model as they "
                          "stand; xent check fails on this dump.", style="bold red"))
    console.print(Group(*parts))


def render_check(report: Report, result: dict[str, Any], verdict: str, console: Console) -> None:
    """`xent check`: one line of what was read, the diagnostics, the gates, and the verdict last."""
    s = report.summary
    console.print(
        Text(
            f"{terminal(report.input.path)}: {fmt_number(s['rows'])} rows"
            + {"binary": " (binary head), ", "multilabel": f" × {report.input.num_classes:,} labels (multi-label head), "}.get(
                report.input.head, f" × {report.input.num_classes:,} classes, ")
            + f"mean loss {fmt_number(s['loss_mean'])}, "
            + ("exact match" if report.input.head == "multilabel" else "accuracy") + f" {fmt_fraction(s['accuracy'])}, "
            f"{fmt_number(s['nonfinite'])} non-finite"
        ),
        soft_wrap=True,
    )
    if report.diagnostics:
        console.print(diagnostics_table(report))
    else:
        console.print("no diagnostics")
    for gate in result["gates"]:
        mark = Text("ok  ", style="green") if gate["passed"] else Text("FAIL", style="bold red")
        digits = distinct_digits(gate["value"], gate["limit"], 7)
        console.print(Text.assemble(mark, f" {gate['gate']} {fmt_number(gate['value'], digits)} (limit {gate['op']} "
                                          f"{fmt_number(gate['limit'], digits)})"))
    # one line whatever the terminal width: CI logs are read by grep and by people scrolling
    console.print(Text(terminal(verdict), style="bold green" if result["passed"] else "bold red"), soft_wrap=True)


def render_explain(rules: list[Any], single: bool, console: Console) -> None:
    """`xent explain`: one rule in full, or the table of all codes."""
    if single:
        rule = rules[0]
        console.print(Text(f"{rule.code} {rule.name} ({rule.severity})", style="bold"))
        for title, body in (("What", rule.summary), ("Why it matters", rule.why), ("How to fix it", rule.fix), ("Example", rule.example)):
            console.print(Text(f"\n{title}", style="bold"))
            console.print(Text(body))
        return
    table = _table("Diagnostics (xent explain CODE for one)", [("code", "tag"), ("name", "tag"), ("severity", "tag"), ("what", "text")])
    for rule in rules:
        table.add_row(rule.code, rule.name, Text(rule.severity, style=SEVERITY_STYLE[rule.severity]), Text(rule.summary))
    console.print(table)


def _interval(values: list[float] | None, digits: int = 3) -> str:
    if not values:
        return "—"
    return "[" + ", ".join(fmt_number(value, digits) for value in values) + "]"


def _p(value: float) -> str:
    return "—" if value is None or math.isnan(value) else (f"{value:.2g}" if value < 0.001 else f"{value:.3f}")


def diff_table(report: DiffReport) -> Table:
    metrics = report.metrics
    level = f"{report.confidence:.0%}"
    table = _table(f"Candidate against base ({report.pairing['usable_pairs']:,} paired rows, {level} intervals)",
                   [("metric", "text"), ("base", "num"), ("candidate", "num"), ("Δ", "num"), (f"{level} CI", "num"), ("p", "num"),
                    ("verdict", "text")])
    table.columns[0].min_width = len("perplexity")  # its longest word: names wrap between words, never inside one
    loss = metrics["loss_mean"]
    se_note = f" (clustered, {loss['clusters']:,} clusters)" if "clusters" in loss else ""
    table.add_row("loss (mean)" + se_note, fmt_number(loss["base"], 5), fmt_number(loss["candidate"], 5), fmt_number(loss["delta"], 4),
                  _interval(loss["ci"]), _p(loss["p_value"]), _verdict(loss["ci"], higher_is_worse=True))
    accuracy = metrics["accuracy"]
    table.add_row("accuracy" + (" (clustered)" if "clusters" in accuracy else ""), fmt_fraction(accuracy["base"]), fmt_fraction(accuracy["candidate"]), fmt_number(accuracy["delta"], 4),
                  _interval(accuracy["ci"]), _p(accuracy["p_value"]), _verdict(accuracy["ci"], higher_is_worse=False))
    perplexity = metrics["perplexity"]
    table.add_row("perplexity (ratio)", fmt_number(perplexity["base"], 5), fmt_number(perplexity["candidate"], 5),
                  "×" + fmt_number(perplexity["ratio"], 4), _interval(perplexity["ci"]), "", "")
    for name in ("loss_p50", "loss_p90", "loss_p99"):
        entry = metrics[name]
        table.add_row(name.replace("loss_", "loss "), fmt_number(entry["base"], 5), fmt_number(entry["candidate"], 5),
                      fmt_number(entry["delta"], 4), _interval(entry["ci"]), "", _verdict(entry["ci"], higher_is_worse=True))
    if all(metrics[name]["ci"] is None for name in ("loss_p50", "loss_p90", "loss_p99")) and report.pairing["usable_pairs"]:
        table.caption = _no_quantile_intervals(report)  # found in review: "—" without a word
    return table


def _no_quantile_intervals(report: DiffReport) -> str:
    """Why the quantiles have no interval: the bootstrap is off, has too few replicates for the
    confidence, or the losses are negative (XE110)."""
    from xentcli.config import TAIL_REPLICATES, replicates_needed

    replicates = report.bootstrap["replicates"]
    if not replicates:
        return "the quantiles' intervals are off (--bootstrap 0)"
    needed = replicates_needed(report.confidence)
    if replicates < needed:
        return (f"the quantiles' intervals need {TAIL_REPLICATES} replicates beyond each end: --bootstrap {needed:,} or more "
                f"at {report.confidence:g}")
    return "the quantiles' intervals are not given where a loss is negative (XE110)"


def _verdict(interval: list[float] | None, higher_is_worse: bool) -> Text:
    """worse / better when the interval excludes no change, else 'no clear change'."""
    if not interval or any(math.isnan(value) for value in interval):
        return Text("")
    low, high = interval
    if low > 0 or high < 0:
        worse = (low > 0) == higher_is_worse
        return Text("worse" if worse else "better", style="red" if worse else "green")
    return Text("no clear change", style="dim")


def pairs_table(title: str, rows: list[dict[str, Any]]) -> Table:
    keyed = any("key" in row for row in rows)
    labels = any("label" in row for row in rows)  # a multi-label head's rows have no one label
    table = _table(title, [("row", "num")] + ([("key", "text")] if keyed else []) + ([("label", "num")] if labels else [])
                   + [(name, "num") for name in ("loss base", "loss candidate", "Δ")])
    for row in rows[:TABLE_ROWS_SHOWN]:
        cells: list[str | Text] = [fmt_number(row["row"])] + ([shown(row.get("key"))] if keyed else [])
        cells += ([str(row["label"])] if labels else []) + [fmt_number(row["loss_base"]), fmt_number(row["loss_candidate"]), fmt_number(row["delta"])]
        table.add_row(*cells)
    return table


def render_diff(report: DiffReport, verdict: str, console: Console) -> None:
    """`xent diff`: what was paired, the metrics with intervals, flips, the most regressed rows,
    diagnostics, the gates and the verdict last."""
    pairing = report.pairing
    line = (f"{terminal(report.base.input.path)} → {terminal(report.candidate.input.path)}: {pairing['pairs']:,} pairs by "
            + ("key " + terminal(pairing["key"]) if pairing["by"] == "key" else "row order")
            + f", {pairing['usable_pairs']:,} usable")
    if pairing["nonfinite_pairs"]:
        line += f", {pairing['nonfinite_pairs']:,} with a non-finite loss"
    if pairing["only_base"] or pairing["only_candidate"]:
        line += f"; {pairing['only_base']:,} keys only in the base, {pairing['only_candidate']:,} only in the candidate"
    console.print(Text(line), soft_wrap=True)
    parts: list[Table | Group] = [diff_table(report)]
    flips = report.flips
    parts.append(_key_value("Flips", [("right → wrong", fmt_number(flips["correct_to_wrong"])),
                                       ("wrong → right", fmt_number(flips["wrong_to_correct"]))]))
    if report.groups:
        parts.append(diff_groups_table(report))
    if report.regressed:
        parts.append(pairs_table(f"Most regressed {len(report.regressed)} rows", report.regressed))
    if report.diagnostics:
        shown_report = Report(input=report.base.input, summary=report.base.summary, diagnostics=[
            {**item, "message": f"{item['side']}: {item['message']}"} for item in report.diagnostics])
        parts.append(diagnostics_table(shown_report))
    console.print(Group(*parts))
    for gate in report.gates:
        mark = Text("ok  ", style="green") if gate["passed"] else Text("FAIL", style="bold red")
        measure = "count" if gate["bound"] == "count" else f"{gate['bound']} bound"
        console.print(Text.assemble(mark, f" {gate['gate']} {gate['margin']:g}: {measure} {fmt_number(gate['value'], 4)}"))
    console.print(Text(terminal(verdict), style="bold green" if report.passed else "bold red"), soft_wrap=True)
