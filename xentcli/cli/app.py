"""The app itself: the Typer object, one-line errors and exit codes, and the process entry point.

Exit codes: 0 success, 1 `check` failed its gates, 2 unusable input or options (one line on
stderr; with --json also an error document on stdout), 3 an internal error (a bug: report it with
--debug), 128 + the signal for SIGHUP and SIGTERM (130 for Ctrl-C).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

import typer

from xentcli import __version__, native
from xentcli.errors import XentError

if TYPE_CHECKING:
    from rich.console import Console

EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_INTERNAL = 3

app = typer.Typer(
    name="xent",
    help="A loss auditor for machine-learning eval dumps: cross-entropy of softmax, binary and multi-label heads, exact and fast.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


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


def console(stderr: bool = False) -> Console:
    """A Rich console for tables (stdout) or errors (stderr). Rich, and the table renderers, are
    imported only when something is printed with them: a `--json` run never pays their ~40 ms."""
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, soft_wrap=stderr)
    out.on_broken_pipe = _pipe_closed  # type: ignore[method-assign]  # Rich would exit with 1, check's "failed"
    return out


class PipeClosed(Exception):
    """stdout was closed by its reader (`xent … | head`): main ends the process as a pipe's writer
    does. Not an OSError, which click would turn into exit 1."""


def _pipe_closed() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)  # nothing more reaches the closed pipe, the final flush included
    os.dup2(devnull, sys.stdout.fileno())
    raise PipeClosed


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP (what `timeout` and CI runners send), handled as Ctrl-C is."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, _frame: Any) -> None:
    """The first Ctrl-C, SIGTERM or SIGHUP ends the run as an interrupt; any later one is ignored
    while it unwinds (a second signal — `timeout` sends two, so does a double Ctrl-C — raised again
    inside the worker pool's shutdown and printed 'Exception ignored … KeyboardInterrupt')."""
    for other in INTERRUPTING:
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(signum)


INTERRUPTING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _remove_placed_outputs() -> None:
    """An interrupted run leaves no output: those already moved into place (a signal after the
    first of several outputs, or while the table prints) are removed too."""
    rows = sys.modules.get("xentcli.render.rows")  # not imported: nothing was written
    if rows is None:
        return
    while rows.PLACED:
        try:
            os.unlink(rows.PLACED.pop())
        except OSError:
            pass


def error_line(label: str, text: str) -> None:
    """One line on stderr: `xent: error: …`, the text shown as text (no markup, no control characters)."""
    from rich.text import Text

    from xentcli.render.escape import terminal

    console(stderr=True).print(Text.assemble((f"xent: {label}:", "bold red" if "error" in label else "yellow"), " ", terminal(text)))


def _error_document(code: str, message: str, hint: str | None) -> None:
    """With --json an exit-2 run still prints one JSON document, so `xent check --json | jq` always has one."""
    sys.stdout.write(_error_json(code, message, hint))


def _error_json(code: str, message: str, hint: str | None) -> str:
    return json.dumps({"xent_version": __version__, "error": {"code": code, "message": message, "hint": hint}}, indent=2) + "\n"


# A bus error on a memory-mapped input (native.catch_bus_errors): the line and the --json document the handler prints.
BUS_ERROR = "a memory-mapped input could not be read (bus error): was the file cut short while xent read it? No output was written"
BUS_HINT = "score a file that no other program is writing"


def _bus_line() -> str:
    """The handler's line; on a terminal it first clears a progress bar's line and shows the cursor again."""
    return ("\r\x1b[2K\x1b[?25h" if sys.stderr.isatty() else "") + f"xent: error: {BUS_ERROR}\n"


def guarded(debug: bool, action: Callable[[], T], as_json: bool | str = False) -> T:
    """Run `action`, turning every error into one line on stderr and the documented exit code
    (and, with --json or a CI format — `as_json` the output format — an error document of that
    format on stdout: a CI job always gets an annotation, an XML or a JSON file it can read)."""
    fmt = "json" if as_json is True else (as_json or "text")
    as_json = fmt == "json"
    if as_json:  # a bus error's handler prints the error document too
        native.catch_bus_errors(_bus_line(), _error_json("BusError", BUS_ERROR, BUS_HINT))
    try:
        return action()
    except (typer.Exit, PipeClosed):
        raise
    except BrokenPipeError:  # stdout closed by its reader (a write outside Rich's): main ends the process as a pipe's writer does
        _pipe_closed()
    except (XentError, OSError, MemoryError) as exc:
        if debug:
            traceback.print_exc()
        if isinstance(exc, XentError):
            code, message, hint = exc.code or type(exc).__name__, exc.one_line(), exc.hint
        elif isinstance(exc, MemoryError):
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""  # numpy's says what and how much
            hint = ("lower --chunk-rows or --threads (a single row, its scores, targets or id, too large for the memory "
                    "cannot be scored at any chunk size)")
            code, message = "OutOfMemory", "out of memory" + (f" ({detail})" if detail else "") + f"; {hint}"
        else:  # the system refused a read or a write: permissions, a full disk, a file size limit
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            code, message, hint = "OSError", f"{where}{exc.strerror or exc}", None
        error_line("error", message)
        if as_json:
            _error_document(code, message, hint)
        elif fmt != "text":
            from xentcli.render.ci import error_report

            where = getattr(exc, "path", None) or getattr(exc, "filename", None)
            sys.stdout.write(error_report(fmt, code, message, where if isinstance(where, str) else None))
        raise typer.Exit(EXIT_INPUT) from None
    except KeyboardInterrupt as exc:
        _remove_placed_outputs()
        error_line("interrupted", "no output was written")
        raise typer.Exit(128 + exc.signum if isinstance(exc, Interrupted) else 130) from None
    except Exception as exc:  # noqa: BLE001 — the last line of defence: never a bare traceback
        if debug:
            traceback.print_exc()
        error_line("internal error", f"{type(exc).__name__}: {exc}; rerun with --debug and report the traceback")
        raise typer.Exit(EXIT_INTERNAL) from None


def setup_process() -> None:
    """The process-wide settings of a run of `xent`, made by the entry point, never by importing or
    calling the library: Ctrl-C, SIGTERM and SIGHUP ending the run once (_interrupt), a bus error (an input cut short under its
    memory map) as one line and exit 2, glibc's malloc asked to keep chunk-sized blocks
    (native.keep_freed_memory), and no RuntimeWarning printed."""
    for signum in INTERRUPTING:
        if signal.getsignal(signum) != signal.SIG_IGN:  # one the parent ignores (nohup, a script's `cmd &`) stays ignored
            signal.signal(signum, _interrupt)
    native.keep_freed_memory()
    native.catch_bus_errors(_bus_line())
    # numpy's floating-point warnings (overflow, 0·inf) on hostile numbers: the rows they come from are
    # reported by the diagnostics; a warning would print a source line on stderr
    warnings.filterwarnings("ignore", category=RuntimeWarning)


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
        _remove_placed_outputs()
        error_line("interrupted", "no output was written")
        code = 128 + exc.signum if isinstance(exc, Interrupted) else 130
    except (BrokenPipeError, PipeClosed):
        code = EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 — click's usage errors, and anything else: one line
        code = _usage_error(exc)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = EXIT_BROKEN_PIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code)


# stdout closed by its reader (`xent … | head`): the process ends silently with the status a writer
# killed by SIGPIPE has (128 + 13), as other command-line tools do, never 1 (check failed) or 0
EXIT_BROKEN_PIPE = 141


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
    message = " ".join(format_message().split()) + _elsewhere(exc, where)
    error_line("error", f"{message} (see '{where} --help')")
    fmt = _asked_format(sys.argv[1:])
    if fmt == "json":
        _error_document("UsageError", message, f"see '{where} --help'")
    elif fmt in ("github", "gitlab", "junit", "markdown"):  # the CI format asked still holds one error (found in review: an empty file)
        from xentcli.render.ci import error_report

        sys.stdout.write(error_report(fmt, "UsageError", f"{message} (see '{where} --help')", None))
    return int(getattr(exc, "exit_code", EXIT_INPUT) or EXIT_INPUT)


def _elsewhere(exc: Exception, where: str) -> str:
    """For an unknown option that another command has (`score --max-loss`, or `--max_loss`): which
    command takes it (found in review: click suggested --max-groups)."""
    name = getattr(exc, "option_name", None)
    if type(exc).__name__ != "NoSuchOption" or not name:
        return ""
    wanted = name.split("=", 1)[0].replace("_", "-")
    import typer.main

    group = typer.main.get_command(app)
    owners = [f"xent {command}" for command, cmd in getattr(group, "commands", {}).items() if any(wanted in param.opts for param in cmd.params)]
    if where in owners and wanted != name:
        return f"; did you mean {wanted}?"
    owners = [owner for owner in owners if owner != where]
    if not owners:
        return ""
    spelled = f"{wanted} (not {name})" if wanted != name else wanted
    return f"; {spelled} is an option of {' and '.join(owners)}"


def _asked_format(args: list[str]) -> str | None:
    """The output format a command line asks for (--json, --output-format F or =F), read from the
    words themselves when the line could not be parsed."""
    fmt = None
    for i, word in enumerate(args):
        if word == "--":
            break
        if word == "--json":
            fmt = "json"
        elif word.startswith("--output-format="):
            fmt = word.split("=", 1)[1]
        elif word == "--output-format" and i + 1 < len(args):
            fmt = args[i + 1]
    return fmt


def output_format(as_json: bool, chosen: Any) -> str:
    """The output format: --json is --output-format json; naming two different ones is a usage error."""
    fmt = getattr(chosen, "value", chosen) or "text"
    if as_json and fmt not in ("text", "json"):
        from xentcli.errors import OptionError

        raise OptionError(f"--json and --output-format {fmt} ask for two formats", hint="give one of them")
    return "json" if as_json else fmt


DUMP_SUFFIXES = (".parquet", ".pq", ".arrow", ".feather", ".ipc", ".csv", ".csv.gz", ".npy", ".npz")


def in_input_folder(path: str, folders: list[str]) -> bool:
    """Whether a dump file written at `path` would be read as a shard of an input folder next time
    (a dump's extension, and no part of its path there beginning with '.' or '_', which a folder's
    reading leaves out)."""
    where = os.path.realpath(path)
    if not where.lower().endswith(DUMP_SUFFIXES):
        return False
    for folder in folders:
        root = os.path.realpath(folder) + os.sep
        if os.path.isdir(folder) and where.startswith(root) and not any(
                part.startswith((".", "_")) for part in where[len(root):].split(os.sep)):
            return True
    return False


def step_summary(fmt: str, inputs: list[str], folders: list[str] | None = None) -> str | None:
    """GITHUB_STEP_SUMMARY with --output-format github, checked before the run as the other outputs
    are: never one of the inputs (nor a dump file in an input folder), not a folder, in a folder that
    exists and may be written (found in review: it was appended to an input, and a bad path failed
    after PASS was printed). `folders`: the inputs as named (folders among them)."""
    from xentcli.errors import OutputError

    summary = os.environ.get("GITHUB_STEP_SUMMARY") if fmt == "github" else None
    if not summary:
        return None
    if in_input_folder(summary, [*inputs, *(folders or [])]) or os.path.exists(summary) and any(
            os.path.exists(source) and os.path.samefile(summary, source) for source in inputs):
        raise OutputError("GITHUB_STEP_SUMMARY names one of the inputs", path=summary,
                          hint="point GITHUB_STEP_SUMMARY at the step's summary file")
    if os.path.isdir(summary):
        raise OutputError("GITHUB_STEP_SUMMARY names a folder", path=summary, hint="point it at a file")
    folder = os.path.dirname(os.path.abspath(summary))
    if not os.path.isdir(folder):
        raise OutputError("GITHUB_STEP_SUMMARY: its folder does not exist", path=summary)
    if not os.access(summary if os.path.exists(summary) else folder, os.W_OK):
        raise OutputError("GITHUB_STEP_SUMMARY cannot be written (permission denied)", path=summary)
    return summary


def emit_ci(run: Any, fmt: str) -> None:
    """A CI format on stdout; with github and GITHUB_STEP_SUMMARY set, the markdown summary appended
    there first (a failure to write it is the run's error, before any verdict is printed)."""
    from xentcli.errors import OutputError
    from xentcli.render.ci import markdown, render

    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if fmt == "github" and summary:
        try:
            with open(summary, "a", encoding="utf-8") as f:
                f.write(markdown(run))
        except OSError as exc:
            raise OutputError(f"GITHUB_STEP_SUMMARY cannot be appended to: {exc.strerror or exc}", path=summary) from None
    sys.stdout.write(render(run, fmt))


def check_plot(plot: bool, fmt: str, ascii_bars: bool = False, gated: bool = False) -> None:
    """--plot (and --ascii, which shapes its bars) where they draw something."""
    from xentcli.errors import OptionError

    if plot and fmt != "text":
        raise OptionError(f"--plot draws text for a terminal; it cannot go with --output-format {fmt}", hint="drop one of them")
    if ascii_bars and not plot:
        raise OptionError("--ascii shapes the bars of --plot, which is not given", hint="add --plot, or drop --ascii")
    if plot and gated:
        raise OptionError("--plot draws nothing where gates judge the dump (as xent check)", hint="drop --plot, or merge without gates")


def print_plots(lines: list[str]) -> None:
    """Text charts on stdout, as text (no markup), at the console's width."""
    from rich.text import Text

    out = console()
    for line in lines:
        out.print(Text(line), soft_wrap=True)


def write_report(path: Any, page: str, inputs: list[str], force: bool) -> None:
    """--report: the HTML page, written atomically like -o (never over an input; --force to replace)."""
    from xentcli.errors import OutputError
    from xentcli.render.rows import write_atomically

    if not str(path).lower().endswith((".html", ".htm")):
        raise OutputError("a report is an HTML page", path=str(path), hint="name a .html file")
    write_atomically(str(path), page.encode("utf-8"), inputs, force, "report")


def command_line() -> str:
    """The command as typed (for the report's header)."""
    import shlex

    return "xent " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])
