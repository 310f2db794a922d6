"""`xent check`: `score`'s pass, then the gates; exit 0 pass, 1 fail, 2 unusable input."""

from __future__ import annotations

import sys

import typer

from xentcli.cli.app import EXIT_FAILED, app, console, emit_ci, guarded, output_format
from xentcli.cli.options import (
    Bins, By, ByFile, CalibrationOpt, TemperatureScan, Confusions, MaxGroups, MinGroup, ChunkRows, ClassAxis, Confidence, Classes, ClassWeights, PosWeight, Compare, Debug, Epsilon, FailOn, FailOnOpt, Force, Format, GroupCol,
    GateOn, GateOnChoice, IdCol, Ignore, IgnoreIndex, Input, Json, LabelCol, LabelKey, Labels, LabelSmoothing, Like, MaxEce, MaxGroupGap, MaxLoss, MaxLossP99,
    MaxNonfinite, MinAccuracy, NoDiagnostics, Output, Paths, PerClass, PerSequence, Quiet, SampleWeights, ScoreCol,
    ScoreKey, ScoreOptions, ScorePrefix, Select, Target, TargetChoice, Head, HeadChoice, Threshold, OutputFormat, OutputFormatChoice, HtmlReport, Png, TargetPrefix, Threads, TopK, WeightCol, Worst, gates,
    EngineOpt, EngineChoice, Scheduler, Workers, TaskRows, SavePartial,
)
from xentcli.cli.score import scored, write_charts
from xentcli.config import DEFAULT_THREADS, Gates
from xentcli.errors import OptionError
from xentcli.gates import evaluate, verdict_line
from xentcli.render.json_doc import render_check_json
from xentcli.report import Report


@app.command()
def check(
    paths: Paths, labels: Labels = None, file_format: Format = None, input_kind: Input = None,
    target: Target = TargetChoice.auto, head: Head = HeadChoice.auto, threshold: Threshold = 0.5, class_axis: ClassAxis = -1,
    group_col: GroupCol = None,
    per_sequence: PerSequence = False, classes: Classes = None, score_col: ScoreCol = None,
    score_prefix: ScorePrefix = None, label_col: LabelCol = None, target_prefix: TargetPrefix = None,
    score_key: ScoreKey = None, label_key: LabelKey = None, id_col: IdCol = None, ignore_index: IgnoreIndex = None,
    class_weights: ClassWeights = None, pos_weight: PosWeight = None, weight_col: WeightCol = None,
    sample_weights: SampleWeights = None,
    label_smoothing: LabelSmoothing = 0.0, epsilon: Epsilon = None, like: Like = None, compare: Compare = False,
    top_k: TopK = 5, worst: Worst = 0, per_class: PerClass = False, as_json: Json = False,
    out_format: OutputFormat = OutputFormatChoice.text, report_path: HtmlReport = None, png_folder: Png = None,
    output: Output = None,
    force: Force = False, chunk_rows: ChunkRows = None, threads: Threads = DEFAULT_THREADS, quiet: Quiet = False,
    engine: EngineOpt = EngineChoice.local, scheduler: Scheduler = None, workers: Workers = None, task_rows: TaskRows = None,
    save_partial: SavePartial = None,
    debug: Debug = False, no_diagnostics: NoDiagnostics = False, select: Select = None, ignore_codes: Ignore = None,
    confidence: Confidence = 0.95, calibration: CalibrationOpt = False, temperature_scan: TemperatureScan = False, bins: Bins = "15", by: By = None,
    by_file: ByFile = None, min_group: MinGroup = 30, max_groups: MaxGroups = 1000, confusions: Confusions = 0,
    fail_on: FailOnOpt = FailOn.error, max_loss: MaxLoss = None, max_nonfinite: MaxNonfinite = 0,
    min_accuracy: MinAccuracy = None, max_loss_p99: MaxLossP99 = None, gate_on: GateOn = GateOnChoice.point,
    max_ece: MaxEce = None, max_group_gap: MaxGroupGap = None,
) -> None:
    """Score and diagnose a dump for CI: exit 0 when it passes, 1 when it fails, 2 on unusable input.

    It fails on any error-level diagnostic (--fail-on) and on the gates given.
    Example: [bold]xent check eval_dump/ --max-loss 2.5[/]
    """
    fmt = guarded(debug, lambda: output_format(as_json, out_format), as_json)
    as_json, quiet = fmt == "json", quiet or fmt not in ("text", "json")
    options = ScoreOptions(
        paths=paths, labels=labels, file_format=file_format, input_kind=input_kind, target=target, head=head, threshold=threshold,
        class_axis=class_axis,
        group_col=group_col, per_sequence=per_sequence, classes=classes, score_col=score_col, score_prefix=score_prefix,
        label_col=label_col, target_prefix=target_prefix, score_key=score_key, label_key=label_key, id_col=id_col,
        ignore_index=ignore_index, class_weights=class_weights, pos_weight=pos_weight, weight_col=weight_col, sample_weights=sample_weights,
        label_smoothing=label_smoothing, epsilon=epsilon, like=like, compare=compare, top_k=top_k, worst=worst,
        per_class=per_class, as_json=as_json, output=output, force=force, chunk_rows=chunk_rows, threads=threads,
        quiet=quiet, no_diagnostics=no_diagnostics, select=select, ignore_codes=ignore_codes, confidence=confidence,
        calibration=calibration or max_ece is not None or temperature_scan, temperature_scan=temperature_scan, bins=bins, by=by,
        by_file=by_file,
        min_group=min_group, max_groups=max_groups, confusions=confusions, output_format=fmt,
        report_path=report_path, png_folder=png_folder,
        engine=engine, scheduler=scheduler, workers=workers, task_rows=task_rows, save_partial=save_partial,
    )
    limits = gates(fail_on, max_loss, max_nonfinite, min_accuracy, max_loss_p99, gate_on, max_ece, max_group_gap)
    guarded(debug, lambda: _check(options, limits), fmt)


def _check(options: ScoreOptions, limits: Gates) -> None:
    limits.validate()
    if limits.max_group_gap is not None and not (options.by or options.by_file):
        raise OptionError("--max-group-gap needs groups", hint="slice the rows with --by COL (or --by-file)")
    if options.no_diagnostics and limits.fail_on != "never":
        raise OptionError(
            "--no-diagnostics leaves check blind to what --fail-on fails on",
            hint="drop --no-diagnostics, or pass --fail-on never to gate on the numbers alone",
        )
    judge(options, limits, scored(options))


def judge(options: ScoreOptions, limits: Gates, report: Report) -> None:
    """The gates on a report, printed as asked; exit 1 when it fails (check, and merge with gates)."""
    result = evaluate(report, limits)
    write_charts(options, report, verdict_line(result, report, limits), result["gates"])
    if options.output_format not in ("text", "json"):
        from xentcli.render.ci import of_check

        emit_ci(of_check(report, result, limits.fail_on, verdict_line(result, report, limits)), options.output_format)
    elif options.as_json:
        sys.stdout.write(render_check_json(report, result) + "\n")
    else:
        from xentcli.render.table import render_check

        render_check(report, result, verdict_line(result, report, limits), console())
    if not result["passed"]:
        raise typer.Exit(EXIT_FAILED)
