"""The CLI's default thread count against fixed counts, on a quiet and on a busy machine.

``es-plugins prune --model packaged:minilm OUT --sparsity 0.5`` with ``--threads 1``, ``--threads N``
(all cores) and no flag (``es_plugins.engines.memory.default_threads``: the cores not running other
tasks right now). "Busy" starts K processes that spin for the whole measurement, as another job
on a shared 2-core machine would. Each run is a fresh process; the cases are interleaved, so
drift hits them alike; medians and min-max over the repeats.

Reported: the prune time the CLI records (``prune_seconds`` in sparsity_report.json) and the
whole command (load, prune, save) timed around ``es_plugins.cli.main`` in that process.

Usage: python benchmarks/threads.py [--busy 0 1] [--repeats 5] [--model packaged:minilm]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import run_isolated, run_main, table  # noqa: E402


def case(model: str, threads: str) -> dict:
    """One command in this (fresh) process."""
    from es_plugins.cli import main

    flags = [] if threads == "default" else ["--threads", threads]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        start = time.perf_counter()
        code = main(["prune", "--model", model, str(out), "--sparsity", "0.5", *flags])
        seconds = time.perf_counter() - start
        if code != 0:
            raise SystemExit(f"es-plugins prune --model exited {code}")
        report = json.loads((out / "sparsity_report.json").read_text())
    return {"command": seconds, "prune": report["meta"]["prune_seconds"]}


def _spin() -> None:
    while True:
        pass


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        print(json.dumps(case(*sys.argv[2:4])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1], help="spinning processes per scenario")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="packaged:minilm")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    settings = ["default", "1", str(cores)]
    rows = []
    for busy in args.busy:
        spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(busy)]
        for spinner in spinners:
            spinner.start()
        try:
            time.sleep(1.0 if busy else 0.0)  # the spinners are running before the first case
            runs: dict[str, list[dict]] = {s: [] for s in settings}
            for _ in range(args.repeats):
                for setting in settings:
                    runs[setting].append(run_isolated(__file__, "--case", args.model, setting))
        finally:
            for spinner in spinners:
                spinner.kill()
        one = statistics.median(r["prune"] for r in runs["1"] if "error" not in r)
        for setting, results in runs.items():
            ok = [r for r in results if "error" not in r]
            if not ok:
                rows.append([f"{busy}", setting, "error", results[0]["error"][:60], "-"])
                continue
            prune = [r["prune"] for r in ok]
            command = [r["command"] for r in ok]
            rows.append(
                [
                    f"{busy} of {cores} cores busy",
                    setting if setting == "default" else f"--threads {setting}",
                    f"{statistics.median(prune):.2f} ({min(prune):.2f}-{max(prune):.2f})",
                    f"{statistics.median(prune) / one:.2f}x",
                    f"{statistics.median(command):.2f} ({min(command):.2f}-{max(command):.2f})",
                ]
            )
    print(
        f"es-plugins prune --model {args.model} OUT --sparsity 0.5; median (min-max) of {args.repeats} interleaved runs"
    )
    print(table(rows, ["machine", "threads", "prune s", "prune vs 1 thread", "whole command s"]))


if __name__ == "__main__":
    run_main(main, __file__)
