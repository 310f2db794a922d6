"""`xent score`: one pass over a dump, printed as tables or JSON, per-sample rows to -o."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from xentcli.cli.app import (
    app, check_plot, command_line, console, emit_ci, error_line, guarded, in_input_folder, output_format, print_plots, step_summary, write_report,
)
from xentcli.cli.options import (
    Bins, By, ByFile, CalibrationOpt, TemperatureScan, Confusions, MaxGroups, MinGroup, ChunkRows, ClassAxis, Confidence, Classes, ClassWeights, PosWeight, Compare, Debug, Epsilon, Force, Format, GroupCol, IdCol, Ignore,
    IgnoreIndex, Input, Json, LabelCol, LabelKey, Labels, LabelSmoothing, Like, NoDiagnostics, Output, Paths, PerClass,
    PerSequence, Quiet, SampleWeights, ScoreCol, ScoreKey, ScoreOptions, ScorePrefix, Select, Target, TargetChoice, Head, HeadChoice, Threshold, OutputFormat, OutputFormatChoice, Plot, Ascii, HtmlReport, Png,
    TargetPrefix, Threads, TopK, WeightCol, Worst, EngineOpt, EngineChoice, Scheduler, Workers, TaskRows, SavePartial,
)
from xentcli.config import DEFAULT_THREADS
from xentcli.engine import ProgressCallback, report_of, run_part
from xentcli.errors import InputError, OptionError, OutputError
from xentcli.render.json_doc import render_json
from xentcli.render.progress import progress_bar
from xentcli.report import Report
from xentcli.sources import Source

if TYPE_CHECKING:
    from xentcli.render.rows import SampleWriter


@app.command()
def score(
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
    out_format: OutputFormat = OutputFormatChoice.text, plot: Plot = False, ascii_bars: Ascii = False,
    report_path: HtmlReport = None, png_folder: Png = None, output: Output = None,
    force: Force = False, chunk_rows: ChunkRows = None, threads: Threads = DEFAULT_THREADS, quiet: Quiet = False,
    engine: EngineOpt = EngineChoice.local, scheduler: Scheduler = None, workers: Workers = None, task_rows: TaskRows = None,
    save_partial: SavePartial = None,
    debug: Debug = False, no_diagnostics: NoDiagnostics = False, select: Select = None, ignore_codes: Ignore = None,
    confidence: Confidence = 0.95, calibration: CalibrationOpt = False, temperature_scan: TemperatureScan = False, bins: Bins = "15", by: By = None,
    by_file: ByFile = None, min_group: MinGroup = 30, max_groups: MaxGroups = 1000, confusions: Confusions = 0,
) -> None:
    """Compute the cross-entropy of an eval dump (softmax, or binary for a sigmoid head), summarise it and diagnose it.

    Example: [bold]xent score preds.parquet --worst 5[/]
    """
    fmt = guarded(debug, lambda: output_format(as_json, out_format), as_json)
    guarded(debug, lambda: check_plot(plot, fmt, ascii_bars), fmt)
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
        calibration=calibration or temperature_scan, temperature_scan=temperature_scan, bins=bins, by=by, by_file=by_file,
        min_group=min_group, max_groups=max_groups, confusions=confusions, output_format=fmt, plot=plot, ascii=ascii_bars,
        report_path=report_path, png_folder=png_folder,
        engine=engine, scheduler=scheduler, workers=workers, task_rows=task_rows, save_partial=save_partial,
    )
    guarded(debug, lambda: show(options, scored(options)), fmt)


def scored(options: ScoreOptions) -> Report:
    """One pass (local, or on Dask): the report, the per-sample file when -o is given, the partial
    file with --save-partial. Notes (files skipped, columns reordered) go to stderr, one line each."""
    config = options.run_config()
    out = options.output_options
    dask = options.dask
    source = Source(config.source)
    if out.path is not None and source.description.head == "multilabel" and str(out.path).lower().endswith(".csv"):
        raise OutputError("a multi-label head's per-sample rows hold lists (p, pred, target per label), which CSV cannot",
                          path=str(out.path), hint="write them to a .parquet file")
    inputs = source.files + options.option_files  # --classes and --class-weights files are inputs too: never written over
    check_outputs(options, inputs)
    partial: Any = None
    if options.save_partial is not None:
        if config.temperature_scan:
            raise OptionError("--save-partial with --temperature-scan is not supported yet",
                              hint="the temperature's sample cannot be merged across runs; leave one of them out")
        from xentcli.render.rows import AtomicTarget

        partial = AtomicTarget(str(options.save_partial), inputs, out.force, "partial totals")  # checked before the run
    for note in source.description.notes:
        error_line("note", note)

    def compute(sink: SampleWriter | None, on_progress: ProgressCallback) -> Report:
        if dask is not None:
            from xentcli.distributed import run as run_dask

            part, info = run_dask(config, source, dask, sink, on_progress)
        else:
            part, info = run_part(config, source, sink, on_progress)
        source.verify()  # every input still the file it was (a Dask run's tasks checked their files, not the whole)
        if partial is not None:  # the totals merge even when this run alone has no report (every weight 0)
            from xentcli.partial_file import dumps

            partial.write(dumps(part, config, info).encode())
        try:
            return report_of(config, info, part)  # inside the writer's block: a refusal leaves no per-sample file
        except InputError as exc:
            if partial is not None:
                exc.hint = f"{exc.hint or ''}; the partial totals were written to {options.save_partial} and merge".lstrip("; ")
            raise

    with progress_bar(not (out.quiet or out.as_json), source.description.bytes_per_row) as on_progress:
        if out.path is None:
            report = compute(None, on_progress)
        else:
            from xentcli.render.rows import SampleWriter  # pyarrow's writers, only when writing

            with SampleWriter(out.path, inputs, source.description.id_column, out.force, config.loss.like,
                              before_move=source.verify) as writer:
                report = compute(writer, on_progress)
    return report


def check_outputs(options: ScoreOptions, inputs: list[str], folders: list[str] | None = None) -> None:
    """Before the run: every output has a file of its own — GITHUB_STEP_SUMMARY's too (found in
    review: it was appended to the -o file, the partial file or the report just written) — none a
    dump file inside an input folder (the next run would read it as a shard), and the report's
    target is writable (a refusal after the run would leave the other outputs written). `folders`:
    the inputs as named (default: the dump's paths)."""
    import os

    folders = list(options.paths) if folders is None else folders
    summary = step_summary(options.output_format, inputs, folders)
    named = [(flag, str(path)) for flag, path in (("-o", options.output), ("--save-partial", options.save_partial),
                                                 ("--report", options.report_path), ("--png", options.png_folder),
                                                 ("GITHUB_STEP_SUMMARY", summary)) if path]
    seen: dict[str, str] = {}
    for flag, path in named:
        key = os.path.realpath(path)
        if key in seen:
            raise OptionError(f"{seen[key]} and {flag} name the same file: {path}", hint="give each output a file of its own")
        seen[key] = flag
        if flag in ("-o", "--save-partial") and in_input_folder(path, folders) and key not in {os.path.realpath(i) for i in inputs}:
            raise OutputError("lies in an input folder, whose next read would take it for a shard of the dump", path=path,
                              hint="write it outside the input folders")
    if options.report_path is not None:
        from xentcli.render.rows import AtomicTarget

        if not str(options.report_path).lower().endswith((".html", ".htm")):
            raise OutputError("a report is an HTML page", path=str(options.report_path), hint="name a .html file")
        AtomicTarget(str(options.report_path), inputs, options.force, "report")  # exists, folder, an input: refused now
    if options.png_folder is not None:
        from xentcli.render.png import refuse_inputs

        refuse_inputs(str(options.png_folder), inputs, options.force)


def write_charts(options: ScoreOptions, report: Report, verdict: str | None, gates: list[dict] | None = None) -> None:
    """--png and --report of score, check and merge (`gates`: check's, with their values and limits): never over one of the inputs."""
    inputs = [*options.paths, *([str(options.labels)] if options.labels else [])]
    if options.png_folder is not None:
        from xentcli.render.png import write_pngs

        write_pngs(str(options.png_folder), report, inputs=[*inputs, *options.option_files], force=options.force)
    if options.report_path is not None:
        from xentcli.render.html import score_report

        write_report(options.report_path, score_report(report, command_line(), inputs, verdict, gates), [*inputs, *options.option_files],
                     options.force)


def show(options: ScoreOptions, report: Report, verdict: str | None = None) -> None:
    write_charts(options, report, verdict)
    if options.output_format not in ("text", "json"):
        from xentcli.render.ci import of_score

        emit_ci(of_score(report), options.output_format)
    elif options.as_json:
        sys.stdout.write(render_json(report) + "\n")
    else:
        from xentcli.render.table import render_tables

        render_tables(report, console())
        if options.plot:
            from xentcli.histogram import histogram_lines, reliability_lines

            width = console().width
            lines = histogram_lines("Loss histogram (log-spaced bins of the counted losses)", report.histogram, width, options.ascii)
            if report.calibration is not None and report.calibration["table"]:
                lines += [""] + reliability_lines(report.calibration["table"], width, options.ascii, report.input.head != "softmax")
            print_plots(lines)
