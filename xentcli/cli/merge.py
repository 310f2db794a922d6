"""`xent merge`: partial files from separate runs (--save-partial) reported as one run over all their inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from xentcli.cli.app import app, check_plot, guarded, output_format, step_summary
from xentcli.cli.check import judge
from xentcli.errors import OptionError
from xentcli.cli.options import (
    Ascii, Debug, FailOn, MergeForce, GateOn, GateOnChoice, HtmlReport, Json, MergeMaxEce, MaxGroupGap, MaxLoss, MaxLossP99, MinAccuracy,
    OutputFormat, OutputFormatChoice, Plot, Png, Quiet, ScoreOptions, _option, gates,
)
from xentcli.cli.score import show
from xentcli.report import Report

Partials = Annotated[list[Path], typer.Argument(help="Partial files written by score or check --save-partial, in input order.",
                                                show_default=False, metavar="PARTIAL...")]
MergeFailOn = Annotated[Optional[FailOn], _option("--fail-on", panel="Gates", help="Fail on diagnostics of this severity or worse (any gate makes merge gate as check does: default error).")]
MergeMaxNonfinite = Annotated[Optional[int], _option("--max-nonfinite", panel="Gates", help="Fail when more rows have a NaN/inf loss (with a gate: default 0).", min=0)]


@app.command()
def merge(
    paths: Partials, as_json: Json = False, out_format: OutputFormat = OutputFormatChoice.text, plot: Plot = False,
    ascii_bars: Ascii = False, report_path: HtmlReport = None, png_folder: Png = None, force: MergeForce = False, quiet: Quiet = False,
    debug: Debug = False, fail_on: MergeFailOn = None, max_loss: MaxLoss = None, max_nonfinite: MergeMaxNonfinite = None,
    min_accuracy: MinAccuracy = None, max_loss_p99: MaxLossP99 = None, gate_on: GateOn = GateOnChoice.point,
    max_ece: MergeMaxEce = None, max_group_gap: MaxGroupGap = None,
) -> None:
    """Merge partial files (--save-partial) into the report of one run over all their inputs, in the order given.

    Without gates it reports as score (exit 0); with any gate option it gates as check (exit 1 when it fails).
    Example: [bold]xent merge node0.xpart node1.xpart --max-loss 2.5[/]
    """
    fmt = guarded(debug, lambda: output_format(as_json, out_format), as_json)
    as_json, quiet = fmt == "json", quiet or fmt not in ("text", "json")
    options = ScoreOptions(paths=[str(p) for p in paths], as_json=as_json, output_format=fmt, plot=plot, ascii=ascii_bars,
                           report_path=report_path, png_folder=png_folder, force=force, quiet=quiet)
    gated = any(value is not None for value in (fail_on, max_loss, max_nonfinite, min_accuracy, max_loss_p99, max_ece,
                                                max_group_gap)) or gate_on != GateOnChoice.point
    guarded(debug, lambda: check_plot(plot, fmt, ascii_bars, gated), fmt)
    guarded(debug, lambda: step_summary(fmt, options.paths), fmt)  # never appended to a partial file (found in review)
    if not gated:
        guarded(debug, lambda: show(options, merged(options.paths)), fmt)
        return
    limits = gates(fail_on or FailOn.error, max_loss, 0 if max_nonfinite is None else max_nonfinite, min_accuracy, max_loss_p99,
                   gate_on, max_ece, max_group_gap)

    def gate() -> None:
        limits.validate()
        report = merged(options.paths)
        # what the partials hold decides these gates: the options that would have made it are score's (found in review:
        # merge said "add --calibration", an option merge does not have)
        if limits.max_ece is not None and report.calibration is None:
            raise OptionError("--max-ece needs calibration sums, and these partials hold none",
                              hint="save them with xent score --calibration --save-partial")
        if limits.max_group_gap is not None and not report.groups:
            raise OptionError("--max-group-gap needs groups, and these partials hold none",
                              hint="save them with xent score --by COL --save-partial")
        judge(options, limits, report)

    guarded(debug, gate, fmt)


def merged(paths: list[str]) -> Report:
    from xentcli.engine import report_of
    from xentcli.partial_file import merge_files

    from xentcli.errors import InputError

    config, info, part = merge_files(paths)
    try:
        return report_of(config, info, part)
    except (ArithmeticError, AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:  # a crafted file's numbers
        raise InputError(f"the partial files do not make a report: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                         path=" ".join(paths), hint="write them again with xent score --save-partial") from None
