"""The command-line app: parses options into a config, calls the engine, picks a renderer, maps errors.

No math and no file parsing here. Exit codes: 0 success, 1 `check` failed its gates, 2 unusable
input or options (one line on stderr), 3 an internal error (a bug: report it with --debug).
`check` takes every option of `score` (its signature is score's plus the gates).
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

import typer

from xentcli import __version__, native
from xentcli.config import RunConfig, SourceConfig, parse_class_weights, parse_classes, parse_codes, parse_ignore_index
from xentcli.diagnostics import RULES
from xentcli.gates import Gates, evaluate, verdict_line
from xentcli.report import Report
from xentcli.engine import run
from xentcli.errors import OptionError, XentError
from xentcli.semantics import FRAMEWORKS, LossOptions
from xentcli.render.json_doc import render_check_json, render_json
from xentcli.render.progress import progress_bar
from xentcli.sources import Source

if TYPE_CHECKING:
    from rich.console import Console

EXIT_FAILED = 1
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


LikeChoice = Enum("LikeChoice", {name.replace("-", "_"): name for name in FRAMEWORKS}, type=str)  # type: ignore[misc]


class TargetChoice(str, Enum):
    auto = "auto"
    sparse = "sparse"
    dense = "dense"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xent {__version__} ({native.name()} kernel)")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
) -> None:
    """xent: softmax cross-entropy of eval dumps, with the diagnostics of what went wrong."""


T = TypeVar("T")


def _console(stderr: bool = False) -> Console:
    """A Rich console for tables (stdout) or errors (stderr). Rich, and the table renderers, are
    imported only when something is printed with them: a `--json` run never pays their ~40 ms."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=stderr)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP (what `timeout` and CI runners send), handled as Ctrl-C is."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


def error_line(label: str, text: str) -> None:
    """One line on stderr: `xent: error: …`, the text shown as text (no markup, no control characters)."""
    from rich.text import Text

    from xentcli.render.escape import terminal

    _console(stderr=True).print(Text.assemble((f"xent: {label}:", "bold red" if "error" in label else "yellow"), " ", terminal(text)))


def _error_document(code: str, message: str, hint: str | None) -> None:
    """With --json an exit-2 run still prints one JSON document, so `xent check --json | jq` always has one."""
    doc = {"xent_version": __version__, "error": {"code": code, "message": message, "hint": hint}}
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def _guarded(debug: bool, action: Callable[[], T], as_json: bool = False) -> T:
    """Run `action`, turning every error into one line on stderr and the documented exit code
    (and, with --json, an error document on stdout)."""
    try:
        return action()
    except typer.Exit:
        raise
    except (XentError, OSError, MemoryError) as exc:
        if debug:
            traceback.print_exc()
        if isinstance(exc, XentError):
            code, message, hint = exc.code or type(exc).__name__, exc.one_line(), exc.hint
        elif isinstance(exc, MemoryError):
            code, message, hint = "OutOfMemory", "out of memory; lower --chunk-rows or --threads", None
        else:  # the system refused a read or a write: permissions, a full disk, a file size limit
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            code, message, hint = "OSError", f"{where}{exc.strerror or exc}", None
        error_line("error", message)
        if as_json:
            _error_document(code, message, hint)
        raise typer.Exit(EXIT_INPUT) from None
    except KeyboardInterrupt as exc:
        error_line("interrupted", "no output was written")
        raise typer.Exit(128 + exc.signum if isinstance(exc, Interrupted) else 130) from None
    except Exception as exc:  # noqa: BLE001 — the last line of defence: never a bare traceback
        if debug:
            traceback.print_exc()
        error_line("internal error", f"{type(exc).__name__}: {exc}; rerun with --debug and report the traceback")
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
    epsilon: Annotated[Optional[float], typer.Option("--epsilon", help="Clip probabilities to [E, 1-E] as Keras (TensorFlow backend) does: integer labels clip, then renormalise; one-hot/soft rows normalise, then clip. --like keras then uses E too. Keras' default: 1e-7. Default: no clipping.", rich_help_panel="Loss")] = None,
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
    no_diagnostics: Annotated[bool, typer.Option("--no-diagnostics", help="Skip the diagnostics (a little faster).", rich_help_panel="Diagnostics")] = False,
    select: Annotated[Optional[list[str]], typer.Option("--select", help="Only these diagnostic codes or prefixes (XE2, XE401); repeatable, comma lists too.", rich_help_panel="Diagnostics")] = None,
    ignore_codes: Annotated[Optional[list[str]], typer.Option("--ignore", help="Leave out these diagnostic codes or prefixes.", rich_help_panel="Diagnostics")] = None,
) -> None:
    """Compute the softmax cross-entropy of an eval dump, summarise it and diagnose it.

    Example: [bold]xent score preds.parquet --worst 5[/]
    """
    params = dict(locals())
    _guarded(debug, lambda: _show_score(params, _run(params)), as_json)


def _config(p: dict[str, Any]) -> RunConfig:
    """The command line's options as one frozen RunConfig."""
    ignore, ignore_explicit = parse_ignore_index(p["ignore_index"])
    return RunConfig(
        source=SourceConfig(
            paths=tuple(p["paths"]),
            format=p["file_format"].value if p["file_format"] else None,
            labels_path=str(p["labels"]) if p["labels"] else None,
            score_col=p["score_col"],
            score_prefix=p["score_prefix"],
            label_col=p["label_col"],
            target_prefix=p["target_prefix"],
            score_key=p["score_key"],
            label_key=p["label_key"],
            id_col=p["id_col"],
            weight_col=p["weight_col"],
            sample_weights_path=str(p["sample_weights"]) if p["sample_weights"] else None,
            input_kind=p["input_kind"].value if p["input_kind"] else None,
            target_kind=p["target"].value,
            class_axis=p["class_axis"],
            group_col=p["group_col"],
            classes=parse_classes(p["classes"]),
        ),
        loss=LossOptions(
            ignore_index=ignore,
            ignore_explicit=ignore_explicit,
            class_weights=parse_class_weights(p["class_weights"]),
            label_smoothing=p["label_smoothing"],
            epsilon=p["epsilon"],
            like=p["like"].value if p["like"] else None,
            compare=p["compare"],
        ),
        top_k=p["top_k"],
        worst=p["worst"],
        per_class=p["per_class"],
        per_sequence=p["per_sequence"],
        chunk_rows=p["chunk_rows"],
        threads=p["threads"],
        diagnostics=not p["no_diagnostics"],
        select=parse_codes(p["select"]),
        ignore_codes=parse_codes(p["ignore_codes"]) or (),
    )


def _run(p: dict[str, Any]) -> Report:
    """One pass: the report, and the per-sample file when -o is given. Notes (files skipped,
    columns reordered) go to stderr, one line each."""
    config = _config(p)
    source = Source(config.source)
    for note in source.description.notes:
        error_line("note", note)
    with progress_bar(not (p["quiet"] or p["as_json"]), source.description.bytes_per_row) as on_progress:
        if p["output"] is None:
            return run(config, source, on_progress=on_progress)
        from xentcli.render.rows import SampleWriter  # pyarrow's writers, only when writing

        # --classes and --class-weights files are inputs too: never written over, --force or not
        inputs = source.files + [p[name] for name in ("classes", "class_weights") if p[name] and os.path.isfile(p[name])]
        with SampleWriter(str(p["output"]), inputs, p["id_col"], p["force"], config.loss.like) as writer:
            return run(config, source, sink=writer, on_progress=on_progress)


def _show_score(p: dict[str, Any], report: Report) -> None:
    if p["as_json"]:
        sys.stdout.write(render_json(report) + "\n")
    else:
        from xentcli.render.table import render_tables

        render_tables(report, _console())


class FailOn(str, Enum):
    error = "error"
    warning = "warning"
    never = "never"


def check(**params: Any) -> None:
    """Score and diagnose a dump for CI: exit 0 when it passes, 1 when it fails, 2 on unusable input.

    It fails on any error-level diagnostic (--fail-on) and on the gates given.
    Example: [bold]xent check eval_dump/ --max-loss 2.5[/]
    """
    _guarded(params["debug"], lambda: _check(params), params["as_json"])


def _check(p: dict[str, Any]) -> None:
    gates = Gates(p["fail_on"].value, p["max_loss"], p["max_nonfinite"], p["min_accuracy"], p["max_loss_p99"])
    gates.validate()
    if p["no_diagnostics"] and gates.fail_on != "never":
        raise OptionError(
            "--no-diagnostics leaves check blind to what --fail-on fails on",
            hint="drop --no-diagnostics, or pass --fail-on never to gate on the numbers alone",
        )
    report = _run(p)
    result = evaluate(report, gates)
    if p["as_json"]:
        sys.stdout.write(render_check_json(report, result) + "\n")
    else:
        from xentcli.render.table import render_check

        render_check(report, result, verdict_line(result, report, gates), _console())
    if not result["passed"]:
        raise typer.Exit(EXIT_FAILED)


_GATES = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
    for name, default, annotation in (
        ("fail_on", FailOn.error, Annotated[FailOn, typer.Option("--fail-on", help="Fail on diagnostics of this severity or worse.", rich_help_panel="Gates")]),
        ("max_loss", None, Annotated[Optional[float], typer.Option("--max-loss", help="Fail when the mean loss is above X.", rich_help_panel="Gates")]),
        ("max_nonfinite", 0, Annotated[int, typer.Option("--max-nonfinite", min=0, help="Fail when more rows have a NaN/inf loss.", rich_help_panel="Gates")]),
        ("min_accuracy", None, Annotated[Optional[float], typer.Option("--min-accuracy", help="Fail when accuracy is below A.", rich_help_panel="Gates")]),
        ("max_loss_p99", None, Annotated[Optional[float], typer.Option("--max-loss-p99", help="Fail when the 99th percentile loss is above X.", rich_help_panel="Gates")]),
    )
]
check.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [*inspect.signature(score, eval_str=True).parameters.values(), *_GATES]
)
app.command()(check)


@app.command()
def explain(
    code: Annotated[Optional[str], typer.Argument(help="A diagnostic code (XE202); all codes when left out.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Explain a diagnostic: what it means, why it matters, how to fix it, with an example.

    Example: [bold]xent explain XE202[/]
    """
    _guarded(False, lambda: _explain(code, as_json))


def _explain(code: str | None, as_json: bool) -> None:
    rules = list(RULES.values())
    if code is not None:
        wanted = code.strip().upper()
        rules = [rule for rule in rules if rule.code == wanted or rule.name == code.strip().lower()]
        if not rules:
            raise OptionError(f"no diagnostic '{code}'", hint="run 'xent explain' for the list")
    if as_json:
        docs = [rule.__dict__ for rule in rules]
        sys.stdout.write(json.dumps(docs[0] if code else docs, indent=2, ensure_ascii=False) + "\n")
    else:
        from xentcli.render.table import render_explain

        render_explain(rules, single=code is not None, console=_console())


def setup_process() -> None:
    """The process-wide settings of a run of `xent`, made by the entry point, never by importing or
    calling the library: SIGTERM/SIGHUP handled as Ctrl-C, and glibc's malloc asked to keep
    chunk-sized blocks (native.keep_freed_memory)."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    native.keep_freed_memory()


def main() -> None:
    """Console-script entry point.

    Usage errors (a typo'd option, a bad choice) are one line on stderr and exit 2, like every other
    error. SIGTERM and SIGHUP are handled as Ctrl-C: outputs in progress are removed. Once the
    command has finished and its output is flushed, the process ends with os._exit: the
    interpreter's own teardown (freeing every module of numpy and pyarrow) would add ~0.2 s to
    each run and change nothing. Outputs are already closed and renamed by then."""
    setup_process()
    try:
        code = app(standalone_mode=False)
        code = code if isinstance(code, int) else 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # sys.exit("message"): printed, status 1, as Python would
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt as exc:
        error_line("interrupted", "no output was written")
        code = 128 + exc.signum if isinstance(exc, Interrupted) else 130
    except Exception as exc:  # noqa: BLE001 — click's usage errors, and anything else: one line
        code = _usage_error(exc)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _usage_error(exc: Exception) -> int:
    """A command-line usage error as one line with the way to the help (no boxed panel)."""
    format_message = getattr(exc, "format_message", None)
    if format_message is None:
        error_line("internal error", f"{type(exc).__name__}: {exc}; rerun with --debug and report the traceback")
        return EXIT_INTERNAL
    if type(exc).__name__ == "NoArgsIsHelpError":
        exc.show()  # type: ignore[attr-defined]
        return 0
    context = getattr(exc, "ctx", None)
    where = f"xent {context.info_name}" if context is not None and context.info_name not in (None, "xent") else "xent"
    message = " ".join(format_message().split())
    error_line("error", f"{message} (see '{where} --help')")
    if "--json" in sys.argv:
        _error_document("UsageError", message, f"see '{where} --help'")
    return int(getattr(exc, "exit_code", EXIT_INPUT) or EXIT_INPUT)
