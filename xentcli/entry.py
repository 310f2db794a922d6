"""The `xent` command's entry point: the process-wide setting that must precede numpy's import,
then the app. Importing the library changes nothing of the process; running `xent` does."""

import os


def main() -> None:
    # xent runs its own pool of worker threads over chunks; OpenBLAS' threads (numpy's matrix
    # products in the numpy kernels) would only spin beside them. A value the user exported wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from xentcli.cli import main as run

    run()
