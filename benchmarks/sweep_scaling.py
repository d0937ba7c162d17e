"""The quick essential-sparsity sweep on one process vs Ray with 1 and 2 workers, then a model of
rounds and wall time on larger clusters from the measured time per point.

Each case runs in a fresh process (`run_isolated`): the local backend, then Ray on a local
cluster of ``ray.init(num_cpus=W)`` for each W in ``--workers`` (one point per CPU). The task is
the quick preset of the packaged SmolLM2 perplexity sweep (1,024 BBC tokens, windows of 256,
grid 0.0-0.9, resolution 0.05); ``--task finetune`` runs the MiniLM fine-tune preset instead.
Reported per case: wall time of the sweep call (cluster start excluded, model loads on the
workers included), points evaluated, refinement rounds, median seconds per point, and the
essential sparsity found.

The model: a sweep of G grid points then R rounds of k-section, with W workers and the measured
median point time t, takes about ``ceil(G / W) * t + R(W) * t`` where ``R(W)`` is the rounds
needed to shrink the first bracket (width b) to the resolution r with ``k = W`` interior points
per round: ``ceil(log(b / r) / log(W + 1))``. Loads of the model on each worker are one-off and
left out of the model.

Usage: python benchmarks/sweep_scaling.py [--workers 1 2] [--task perplexity|finetune]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import run_isolated, run_main, table  # noqa: E402


def spec_and_config(task: str):
    from es_plugins.analysis.backends import TaskSpec
    from es_plugins.analysis.cli import QUICK
    from es_plugins.analysis.sweep import DEFAULT_LEVELS, SweepConfig
    from es_plugins.analysis.tasks import PerplexityTask, sweep_task
    from es_plugins.io.assets import resolve_model_path
    from es_plugins.io.datasets import bbc_news, rotten_tomatoes

    if task == "perplexity":
        kwargs = dict(
            model_dir=resolve_model_path("packaged:smollm2"),
            texts=bbc_news("eval"),
            num_tokens=QUICK["tokens"],
            seq_len=QUICK["seq_len"],
            device="cpu",
        )
        config = SweepConfig(levels=DEFAULT_LEVELS, higher_is_better=False, resolution=QUICK["lm_resolution"])
        return TaskSpec(PerplexityTask, kwargs), config
    texts, labels = rotten_tomatoes(seed=0)
    n, m = QUICK["train"], QUICK["test"]
    kwargs = dict(
        model_dir=resolve_model_path("packaged:minilm"),
        train=(texts[:n], labels[:n]),
        test=(texts[n : n + m], labels[n : n + m]),
        num_labels=2,
        epochs=QUICK["epochs"],
        learning_rate=QUICK["lr"],
        max_length=48,
        device="cpu",
    )
    return TaskSpec(sweep_task("finetune"), kwargs), SweepConfig(
        levels=QUICK["ft_levels"], resolution=QUICK["resolution"]
    )


def case(task: str, backend: str, workers: int) -> dict:
    """One sweep in this (fresh) process; prints its JSON on the last line."""
    from es_plugins.analysis.backends import LocalBackend, RayBackend
    from es_plugins.analysis.sweep import run_sweep

    spec, config = spec_and_config(task)
    runner = LocalBackend(spec.build().evaluate) if backend == "local" else RayBackend(spec, num_cpus=workers)
    started = time.perf_counter()
    result = run_sweep(spec, config, backend=runner)
    seconds = time.perf_counter() - started
    runner.close()
    return {
        "seconds": seconds,
        "evaluations": result.evaluations,
        "rounds": result.rounds,
        "point_seconds": statistics.median(p.seconds for p in result.points),
        "essential_sparsity": result.essential_sparsity,
        "grid": len(config.levels) * len(config.seeds),
        "first_bracket": _widest_gap(config.levels),
        "resolution": config.resolution,
    }


def _widest_gap(levels) -> float:
    """The first bracket is two neighbouring grid levels: its width, at most the widest gap."""
    grid = sorted(levels)
    return max(b - a for a, b in zip(grid, grid[1:])) if len(grid) > 1 else 1.0


def modelled_rounds(bracket: float, resolution: float, workers: int) -> int:
    return max(0, math.ceil(math.log(bracket / resolution) / math.log(workers + 1) - 1e-9))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--task", default="perplexity", choices=("perplexity", "finetune"))
    parser.add_argument("--case", nargs=3, metavar=("TASK", "BACKEND", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(case(args.case[0], args.case[1], int(args.case[2]))))
        return
    load = os.getloadavg()[0]
    cases = [("local", 1)] + [("ray", w) for w in args.workers]
    rows, measured = [], {}
    for backend, workers in cases:
        data = run_isolated(__file__, "--case", args.task, backend, str(workers), timeout=7200)
        if "error" in data:
            rows.append([backend, str(workers), data["error"], "", "", "", ""])
            continue
        measured[(backend, workers)] = data
        rows.append(
            [
                backend,
                str(workers),
                f"{data['seconds']:.1f}",
                str(data["evaluations"]),
                str(data["rounds"]),
                f"{data['point_seconds']:.2f}",
                f"{data['essential_sparsity']:.3f}" if data["essential_sparsity"] is not None else "-",
            ]
        )
    print(f"quick {args.task} sweep, 2-core CPU, load average before: {load:.2f}, after: {os.getloadavg()[0]:.2f}")
    header = ["backend", "workers", "wall s", "points", "refinement rounds", "s / point (median)", "essential"]
    print(table(rows, header))
    base = measured.get(("local", 1))
    if base is None:
        return
    t, grid = base["point_seconds"], base["grid"]
    bracket = base["first_bracket"]
    resolutions = sorted({base["resolution"], 0.025, 0.005}, reverse=True)
    print(
        f"\nmodel from the measured {t:.2f} s per point ({grid} grid points, first bracket {bracket:.2f}); "
        f"rounds and wall time to reach each resolution (this run: {base['resolution']}):"
    )

    def wall(workers: int, resolution: float) -> float:
        return (math.ceil(grid / workers) + modelled_rounds(bracket, resolution, workers)) * t

    model_rows = []
    for workers in (1, 2, 8, 32, 128):
        row = [str(workers)]
        for resolution in resolutions:
            rounds = modelled_rounds(bracket, resolution, workers)
            row.append(
                f"{rounds} / {wall(workers, resolution):.1f} s / {wall(1, resolution) / wall(workers, resolution):.1f}x"
            )
        model_rows.append(row)
    print(table(model_rows, ["workers", *[f"resolution {r}: rounds / wall / speed-up" for r in resolutions]]))


if __name__ == "__main__":
    run_main(main, __file__)
