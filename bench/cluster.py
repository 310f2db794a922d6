"""A Dask LocalCluster for the bench's dask case, started in a process of its own (as a real
cluster would be) before the timed runs, so they measure xent on an already-started cluster.

    with started(2) as (address, note): ...   # note() after the runs: start-up time, workers' peak RSS
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# The child: starts the cluster, prints {"address", "pids", "startup_s"}, then holds it until stdin closes.
CHILD = """
import json, logging, sys, time
import distributed
if __name__ == "__main__":
    t0 = time.perf_counter()
    with distributed.LocalCluster(n_workers=int(sys.argv[1]), threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(int(sys.argv[1]))
        pids = list(client.run(lambda: __import__("os").getpid()).values())
        print(json.dumps({"address": cluster.scheduler_address, "pids": pids, "startup_s": time.perf_counter() - t0}), flush=True)
        sys.stdin.read()
"""


def peak_rss_mib(pid: int) -> float | None:
    """A live process's peak resident set (VmHWM), in MiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@contextmanager
def started(workers: int) -> Iterator[tuple[str, Callable[[], str]]]:
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(workers)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline() if child.stdout else ""
        if not line:
            raise RuntimeError("the Dask cluster did not start (is the dask extra installed?)")
        info = json.loads(line)
        launched = time.perf_counter() - t0
        idle = [peak_rss_mib(pid) for pid in info["pids"]]

        def mib(values: list[float | None]) -> str:
            return ", ".join("?" if v is None else f"{v:,.0f}" for v in values)

        def note() -> str:
            shown = mib([peak_rss_mib(pid) for pid in info["pids"]])
            return (f"Dask case: the LocalCluster of {workers} worker processes took {launched:.2f} s to start (process launch "
                    f"included; {info['startup_s']:.2f} s in process), outside the timings; its workers' peak RSS over every "
                    f"timed run: {shown} MiB (idle, before the first: {mib(idle)} MiB — the Dask worker runtime). In the table, "
                    "'xent/reference throughput' is the local run's throughput over Dask's: Dask reaches its inverse.")

        yield info["address"], note
    finally:
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
