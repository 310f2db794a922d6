"""The command-line app: parses options into a config, calls the engine, picks a renderer, maps errors.

No math and no file parsing here. Exit codes: 0 success, 2 unusable input or options (one line
on stderr), 3 an internal error (a bug: please report it with the --debug traceback).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer
from rich.console import Console

from xentcli import __version__
from xentcli.config import RunConfig, SourceConfig, parse_class_weights, parse_classes, parse_ignore_index
from xentcli.engine import run
from xentcli.errors import XentError
from xentcli.semantics import LossOptions
from xentcli.render.json_doc import render_json
from xentcli.render.progress import progress_bar
from xentcli.render.rows import SampleWriter
from xentcli.render.table import render_tables
from xentcli.sources import Source

EXIT_INPUT = 2
EXIT_INTERNAL = 3

app = typer.Typer(
    name="xent",
    help="A loss auditor for machine-learning eval dumps: softmax cross-entropy, exact and fast.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


class FormatChoice(str, Enum):
    parquet = "parquet"
    arrow = "arrow"
    csv = "csv"
    npy = "npy"
    npz = "npz"


class InputChoice(str, Enum):
    logits = "logits"
    probs = "probs"
    log_probs = "log-probs"


class LikeChoice(str, Enum):
    torch = "torch"
    keras = "keras"
    keras_jax = "keras-jax"
    keras_torch = "keras-torch"
    tf = "tf"
    optax = "optax"


class TargetChoice(str, Enum):
    auto = "auto"
    sparse = "sparse"
    dense = "dense"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xent {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
) -> None:
    """xent: softmax cross-entropy of eval dumps, with the diagnostics of what went wrong."""


T = TypeVar("T")


def _guarded(debug: bool, action: Callable[[], T]) -> T:
    """Run `action`, turning every error into one line on stderr and the documented exit code."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        return action()
    except XentError as exc:
        if debug:
            traceback.print_exc()
        err.print(f"[bold red]xent: error:[/] {exc.one_line()}", markup=True)
        raise typer.Exit(EXIT_INPUT) from None
    except KeyboardInterrupt:
        err.print("xent: interrupted; no output was written")
        raise typer.Exit(130) from None
    except MemoryError:
        err.print("[bold red]xent: error:[/] out of memory; lower --chunk-rows or --threads")
        raise typer.Exit(EXIT_INPUT) from None
    except Exception as exc:  # noqa: BLE001 — the last line of defence: never a bare traceback
        if debug:
            traceback.print_exc()
        err.print(
            f"[bold red]xent: internal error:[/] {type(exc).__name__}: {exc}; "
            "rerun with --debug and report the traceback",
            markup=True,
        )
        raise typer.Exit(EXIT_INTERNAL) from None


@app.command()
def score(
    paths: Annotated[list[str], typer.Argument(help="Eval dump: .parquet, .arrow/.feather, .csv(.gz), .npy or .npz; several files, a quoted glob or a folder are read as shards of one dump.", show_default=False, metavar="PATH...")],
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Targets in a separate file (NPY, Parquet, CSV…), row by row.", rich_help_panel="Input")] = None,
    file_format: Annotated[Optional[FormatChoice], typer.Option("--format", help="Read PATH as this format (default: from the extension).", rich_help_panel="Input")] = None,
    input_kind: Annotated[Optional[InputChoice], typer.Option("--input", help="What the scores are (default: logits, or as the column names say).", rich_help_panel="Input")] = None,
    target: Annotated[TargetChoice, typer.Option("--target", help="Integer labels (sparse) or one-hot/soft rows (dense).", rich_help_panel="Input")] = TargetChoice.auto,
    class_axis: Annotated[int, typer.Option("--class-axis", help="Axis of the classes in [N, T, C] arrays: -1 (default) or 1 for PyTorch's [N, C, T].", rich_help_panel="Sequences")] = -1,
    group_col: Annotated[Optional[str], typer.Option("--group-col", help="One row per token: the column naming each row's sequence.", rich_help_panel="Sequences")] = None,
    per_sequence: Annotated[bool, typer.Option("--per-sequence", help="Add per-sequence sums, means, token counts and perplexities.", rich_help_panel="Sequences")] = False,
    classes: Annotated[Optional[str], typer.Option("--classes", help="Class names in class order (comma list or a file, one per line), for string labels.", rich_help_panel="Columns")] = None,
    score_col: Annotated[Optional[str], typer.Option("--score-col", help="List column holding the scores.", rich_help_panel="Columns")] = None,
    score_prefix: Annotated[Optional[str], typer.Option("--score-prefix", help="Prefix of wide score columns (P0, P1, …).", rich_help_panel="Columns")] = None,
    label_col: Annotated[Optional[str], typer.Option("--label-col", help="Column holding the labels or target rows.", rich_help_panel="Columns")] = None,
    target_prefix: Annotated[Optional[str], typer.Option("--target-prefix", help="Prefix of wide target columns.", rich_help_panel="Columns")] = None,
    score_key: Annotated[Optional[str], typer.Option("--score-key", help="NPZ array holding the scores.", rich_help_panel="Columns")] = None,
    label_key: Annotated[Optional[str], typer.Option("--label-key", help="NPZ array holding the labels.", rich_help_panel="Columns")] = None,
    id_col: Annotated[Optional[str], typer.Option("--id-col", help="Column (or NPZ array) identifying each row in every output.", rich_help_panel="Columns")] = None,
    ignore_index: Annotated[Optional[str], typer.Option("--ignore-index", help="Label of rows to leave out (default -100, PyTorch's); 'none' to turn it off.", rich_help_panel="Loss")] = None,
    class_weights: Annotated[Optional[str], typer.Option("--class-weights", help="One weight per class: a comma list, or a file (one per line, or a JSON list).", rich_help_panel="Loss")] = None,
    weight_col: Annotated[Optional[str], typer.Option("--weight-col", help="Column (or NPZ array) of per-row sample weights.", rich_help_panel="Loss")] = None,
    sample_weights: Annotated[Optional[Path], typer.Option("--sample-weights", help="Per-row sample weights in an .npy file.", rich_help_panel="Loss")] = None,
    label_smoothing: Annotated[float, typer.Option("--label-smoothing", min=0.0, max=1.0, help="Targets become (1-ε)·t + ε/C.", rich_help_panel="Loss")] = 0.0,
    epsilon: Annotated[Optional[float], typer.Option("--epsilon", help="Clip probabilities to [E, 1-E] (Keras: 1e-7). Default: no clipping.", rich_help_panel="Loss")] = None,
    like: Annotated[Optional[LikeChoice], typer.Option("--like", help="Also report what this framework computes on the dump (and write its per-sample values with -o).", rich_help_panel="Loss")] = None,
    compare: Annotated[bool, typer.Option("--compare-frameworks", help="Show the true loss beside what PyTorch, Keras, tf.nn and optax report, with the rule behind each difference.", rich_help_panel="Loss")] = False,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="k of top-k accuracy (capped at the number of classes).", rich_help_panel="Output")] = 5,
    worst: Annotated[int, typer.Option("--worst", min=0, help="Show the K rows with the highest loss.", rich_help_panel="Output")] = 0,
    per_class: Annotated[bool, typer.Option("--per-class", help="Add a per-class table.", rich_help_panel="Output")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document and nothing else.", rich_help_panel="Output")] = False,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write per-sample rows to FILE.parquet or FILE.csv.", rich_help_panel="Output")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --output file.", rich_help_panel="Output")] = False,
    chunk_rows: Annotated[Optional[int], typer.Option("--chunk-rows", min=1, help="Rows per chunk (default: ~16 MiB of scores).", rich_help_panel="Run")] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Worker threads (default: the number of cores).", rich_help_panel="Run", show_default=False)] = os.cpu_count() or 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.", rich_help_panel="Run")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.", rich_help_panel="Run")] = False,
) -> None:
    """Compute the softmax cross-entropy of an eval dump and summarise it.

    Example: [bold]xent score preds.parquet --worst 5[/]
    """
    def action() -> None:
        ignore, ignore_explicit = parse_ignore_index(ignore_index)
        loss = LossOptions(
            ignore_index=ignore,
            ignore_explicit=ignore_explicit,
            class_weights=parse_class_weights(class_weights),
            label_smoothing=label_smoothing,
            epsilon=epsilon,
            like=like.value if like else None,
            compare=compare,
        )
        config = RunConfig(
            source=SourceConfig(
                paths=tuple(paths),
                format=file_format.value if file_format else None,
                labels_path=str(labels) if labels else None,
                score_col=score_col,
                score_prefix=score_prefix,
                label_col=label_col,
                target_prefix=target_prefix,
                score_key=score_key,
                label_key=label_key,
                id_col=id_col,
                weight_col=weight_col,
                sample_weights_path=str(sample_weights) if sample_weights else None,
                input_kind=input_kind.value if input_kind else None,  # type: ignore[arg-type]
                target_kind=target.value,  # type: ignore[arg-type]
                class_axis=class_axis,
                group_col=group_col,
                classes=parse_classes(classes),
            ),
            loss=loss,
            top_k=top_k,
            worst=worst,
            per_class=per_class,
            per_sequence=per_sequence,
            chunk_rows=chunk_rows,
            threads=threads,
        )
        source = Source(config.source)
        with progress_bar(not (quiet or as_json), source.description.bytes_per_row) as on_progress:
            if output is None:
                report = run(config, source, on_progress=on_progress)
            else:
                with SampleWriter(str(output), source.files, id_col, force, loss.like) as writer:
                    report = run(config, source, sink=writer, on_progress=on_progress)
        if as_json:
            sys.stdout.write(render_json(report) + "\n")
        else:
            render_tables(report, Console(highlight=False))

    _guarded(debug, action)


def main() -> None:
    """Console-script entry point."""
    app()
