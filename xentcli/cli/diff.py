"""`xent diff BASE CANDIDATE`: did the candidate get worse than the baseline? Paired statistics."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import replace
from typing import Annotated, Any, Optional

import typer

from xentcli.cli.app import (
    EXIT_FAILED, app, check_plot, command_line, console, emit_ci, error_line, guarded, output_format, print_plots, write_report,
)
from xentcli.cli.options import (
    By, ByFile, ChunkRows, ClassAxis, Classes, Debug, Epsilon, FailOn, FailOnOpt, DiffForce, Format, Ignore, IgnoreIndex,
    Input, Json, LabelCol, LabelKey, Labels, LabelSmoothing, MaxGroups, MinGroup, NoDiagnostics, Output, Quiet, ScoreCol,
    ScoreKey, ScoreOptions, ScorePrefix, Select, Target, TargetChoice, Head, HeadChoice, Threshold, OutputFormat, OutputFormatChoice, DiffPlot, Ascii, HtmlReport, Png, TargetPrefix, Threads,
    EngineOpt, EngineChoice, Scheduler, Workers, TaskRows, refuse_empty_name,
)
from xentcli.config import DEFAULT_THREADS, DiffGates, DiffOptions

Key = Annotated[Optional[str], typer.Option("--key", help="Pair rows by this id column (present on both sides); default: by row order.", rich_help_panel="Pairing")]
AllowUnpaired = Annotated[bool, typer.Option("--allow-unpaired", help="With --key: compare the keys both sides hold, and report the others.", rich_help_panel="Pairing")]
Cluster = Annotated[Optional[str], typer.Option("--cluster", help="Column grouping dependent rows (a document, a prompt): clustered standard errors. Sequence dumps cluster by sequence.", rich_help_panel="Pairing")]
Confidence = Annotated[float, typer.Option("--confidence", help="Confidence of the intervals.", rich_help_panel="Statistics")]
Bootstrap = Annotated[int, typer.Option("--bootstrap", help="Poisson bootstrap replicates for the quantiles' intervals (0: off).", rich_help_panel="Statistics")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap's weights.", rich_help_panel="Statistics")]
Top = Annotated[int, typer.Option("--top", min=0, help="How many most regressed and most improved rows to list.", rich_help_panel="Statistics")]
FailOnRegression = Annotated[Optional[float], typer.Option("--fail-on-regression", help="Fail when the loss delta's interval lies above MARGIN: a regression larger than MARGIN is shown.", rich_help_panel="Gates")]
RequireNoninferior = Annotated[Optional[float], typer.Option("--require-noninferior", help="Fail unless the loss delta's interval lies below MARGIN (for releases).", rich_help_panel="Gates")]
MaxAccuracyDrop = Annotated[Optional[float], typer.Option("--max-accuracy-drop", help="Fail when the accuracy delta's interval lies below -MARGIN.", rich_help_panel="Gates")]


@app.command()
def diff(
    base: Annotated[str, typer.Argument(help="The baseline dump (a file, a folder or a quoted glob).", show_default=False, metavar="BASE")],
    candidate: Annotated[str, typer.Argument(help="The candidate dump, scored on the same rows.", show_default=False, metavar="CANDIDATE")],
    key: Key = None, allow_unpaired: AllowUnpaired = False, cluster: Cluster = None, confidence: Confidence = 0.95,
    bootstrap: Bootstrap = 1000, seed: Seed = 0, top: Top = 10,
    by: By = None, by_file: ByFile = None, min_group: MinGroup = 30, max_groups: MaxGroups = 1000,
    labels: Labels = None, file_format: Format = None, input_kind: Input = None, target: Target = TargetChoice.auto,
    head: Head = HeadChoice.auto, threshold: Threshold = 0.5,
    class_axis: ClassAxis = -1, classes: Classes = None, score_col: ScoreCol = None, score_prefix: ScorePrefix = None,
    label_col: LabelCol = None, target_prefix: TargetPrefix = None, score_key: ScoreKey = None, label_key: LabelKey = None,
    ignore_index: IgnoreIndex = None, label_smoothing: LabelSmoothing = 0.0, epsilon: Epsilon = None,
    as_json: Json = False, out_format: OutputFormat = OutputFormatChoice.text, plot: DiffPlot = False, ascii_bars: Ascii = False,
    report_path: HtmlReport = None, png_folder: Png = None, output: Output = None, force: DiffForce = False, chunk_rows: ChunkRows = None,
    threads: Threads = DEFAULT_THREADS, quiet: Quiet = False, debug: Debug = False, no_diagnostics: NoDiagnostics = False,
    select: Select = None, ignore_codes: Ignore = None, fail_on: FailOnOpt = FailOn.error,
    fail_on_regression: FailOnRegression = None, require_noninferior: RequireNoninferior = None,
    max_accuracy_drop: MaxAccuracyDrop = None,
    engine: EngineOpt = EngineChoice.local, scheduler: Scheduler = None, workers: Workers = None, task_rows: TaskRows = None,
) -> None:
    """Compare a candidate with a baseline on the same rows: paired deltas with intervals and p-values.

    Exit 0 when no gate failed, 1 when one did, 2 on unusable input.

    Example: [bold]xent diff base.parquet candidate.parquet --key id --fail-on-regression 0.01[/]
    """
    def side(path: str, grouped: bool = False) -> ScoreOptions:  # grouped: the base, which alone names --by groups and --cluster clusters
        refuse_empty_name("--key", key)  # (they become --id-col and --group-col below)
        refuse_empty_name("--cluster", cluster)
        return ScoreOptions(
            paths=[path], labels=labels, file_format=file_format, input_kind=input_kind, target=target, head=head,
            threshold=threshold, class_axis=class_axis,
            group_col=cluster if grouped else None, classes=classes, score_col=score_col, score_prefix=score_prefix, label_col=label_col,
            target_prefix=target_prefix, score_key=score_key, label_key=label_key, id_col=key, ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            epsilon=epsilon, as_json=as_json, chunk_rows=chunk_rows, threads=threads, quiet=quiet,
            no_diagnostics=no_diagnostics, select=select, ignore_codes=ignore_codes,
            by=by if grouped else None, by_file=by_file if grouped else None, output_format=fmt, plot=plot, ascii=ascii_bars,
            report_path=report_path, png_folder=png_folder,
            engine=engine, scheduler=scheduler, workers=workers, task_rows=task_rows,
        )

    fmt = guarded(debug, lambda: output_format(as_json, out_format), as_json)
    guarded(debug, lambda: check_plot(plot, fmt, ascii_bars), fmt)
    as_json, quiet = fmt == "json", quiet or fmt not in ("text", "json")
    options = DiffOptions(key, allow_unpaired, confidence, bootstrap, seed, top, min_group, max_groups)
    limits = DiffGates(fail_on.value, fail_on_regression, require_noninferior, max_accuracy_drop)
    guarded(debug, lambda: _diff(side(base, grouped=True), side(candidate), options, limits, output, force), fmt)


def _diff(base: ScoreOptions, candidate: ScoreOptions, options: DiffOptions, limits: DiffGates, output: object, force: bool) -> None:
    from xentcli.compare import run_diff
    from xentcli.gates import diff_verdict_line
    from xentcli.render.json_doc import render_diff_json

    from xentcli.cli.score import check_outputs
    from xentcli.sources import input_files

    base_config, candidate_config = replace(base.run_config(), slices=False), candidate.run_config()
    base_config, candidate_config = (replace(config, source=replace(config.source, group_option="--cluster"), paired=True)
                                     for config in (base_config, candidate_config))
    # every file either side reads (a folder's or a glob's files, --labels, --by-file): never written over
    inputs = [*input_files(base_config.source), *input_files(candidate_config.source), *base.option_files]
    check_outputs(replace(base, output=output, force=force), inputs,  # type: ignore[arg-type]
                  [*base_config.source.paths, *candidate_config.source.paths])
    dask = base.dask
    with contextlib.ExitStack() as stack:
        make_pass = None
        if dask is not None:  # one cluster for both sides
            from xentcli.distributed import DaskPass, client

            c = stack.enter_context(client(dask))

            def make_pass(config: Any) -> Any:
                return DaskPass(config, c, dask)
        if output is None:
            report = run_diff(base_config, candidate_config, options, limits, make_pass=make_pass)
        else:
            from xentcli.render.rows import DeltaWriter

            with DeltaWriter(str(output), inputs, options.key, force) as writer:
                report = run_diff(base_config, candidate_config, options, limits, sink=writer, make_pass=make_pass)
    for side in (report.base, report.candidate):
        for note in side.input.notes:
            error_line("note", note)
    if base.png_folder is not None:
        from xentcli.render.png import write_pngs

        write_pngs(str(base.png_folder), diff=report, inputs=inputs, force=force)
    if base.report_path is not None:
        from xentcli.render.html import diff_report

        named = [*base_config.source.paths, *candidate_config.source.paths, *([str(base.labels)] if base.labels else [])]
        write_report(base.report_path, diff_report(report, command_line(), named, diff_verdict_line(report)), inputs, force)
    if base.output_format not in ("text", "json"):
        from xentcli.render.ci import of_diff

        emit_ci(of_diff(report, limits.fail_on, diff_verdict_line(report)), base.output_format)
    elif base.as_json:
        sys.stdout.write(render_diff_json(report) + "\n")
    else:
        from xentcli.render.table import render_diff

        render_diff(report, diff_verdict_line(report), console())
        if base.plot:
            from xentcli.histogram import histogram_lines

            title = "Delta loss histogram (candidate - base" if base.ascii else "Δloss histogram (candidate − base"
            print_plots(histogram_lines(title + ", log-spaced by magnitude)", report.delta_histogram,
                                        console().width, base.ascii))
    if not report.passed:
        raise typer.Exit(EXIT_FAILED)
