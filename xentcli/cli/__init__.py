"""The command-line app: a module per command over shared option aliases (options.py); errors,
exit codes and the process entry in app.py. No math and no file parsing here."""

from xentcli.cli import check, diff, explain, merge, score  # noqa: F401 — each registers its command
from xentcli.cli.app import app, main, setup_process

__all__ = ["app", "main", "setup_process"]
