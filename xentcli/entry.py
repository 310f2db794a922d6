"""The `xent` command's entry point: the process-wide setting that must precede numpy's import,
then the app. Importing the library changes nothing of the process; running `xent` does."""

import os
import signal

INTERRUPTED = b"xent: interrupted: no output was written\n"


def _during_start_up(signum: int, _frame: object) -> None:
    """Ctrl-C, SIGTERM or SIGHUP while the modules load: nothing was read or written yet, so one
    line and the signal's exit status (a KeyboardInterrupt there printed an import traceback)."""
    os.write(2, INTERRUPTED)
    os._exit(128 + signum)


def quiet_start_up() -> None:
    """Until the app sets its own handlers (cli.app.setup_process). A signal the parent ignores
    (`nohup`, `cmd &` in a script, `trap '' INT`) stays ignored."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, _during_start_up)


def main() -> None:
    quiet_start_up()
    # xent runs its own pool of worker threads over chunks; OpenBLAS' threads (numpy's matrix
    # products in the numpy kernels) would only spin beside them. A value the user exported wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from xentcli.cli import main as run

    run()
