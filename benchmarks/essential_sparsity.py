"""Our measured essential sparsity of the packaged models — the main job (`bash scripts/main.sh`)
as a benchmark, so the README's results table has a results file behind it.

Runs the essential-sparsity sweep of the packaged SmolLM2-135M (BBC News perplexity) and
all-MiniLM-L6-v2 (Rotten Tomatoes accuracy after fine-tuning) with the defaults of
`es-plugins sweep`, and records each model's dense value, essential sparsity and knee with their
bootstrap intervals and whether the tolerance is below the measurement noise.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import note, run_main, table  # noqa: E402

from es_plugins import sweep  # noqa: E402
from es_plugins.io.assets import resolve_model_path  # noqa: E402
from es_plugins.io.checkpoint import load_hf_model  # noqa: E402

MODELS = {"smollm2-perplexity": "SmolLM2-135M (zero-shot)", "minilm-finetune": "all-MiniLM-L6-v2 (fine-tuned)"}
PACKAGED = {"smollm2-perplexity": "packaged:smollm2", "minilm-finetune": "packaged:minilm"}
# What a 7B perplexity sweep would cost, scaled from the measured SmolLM2 point (time grows
# with the parameters: every point prunes and evaluates the whole model once).
TARGET_PARAMS = 7e9
# GPU estimate: the evaluation's forward FLOPs (2 x parameters x tokens) at an assumed 30 % of
# an H100's 989 dense bf16 TFLOP/s. An assumption, not a measurement: no GPU ran it here.
GPU_FLOPS = 0.3 * 989e12


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _interval(pair: tuple[float, float] | None) -> str:
    return "" if pair is None else f" [{pair[0]:.1%}, {pair[1]:.1%}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="runs/essential-sparsity", help="the sweep's folder (resumes)")
    parser.add_argument("--quick", action="store_true", help="the --quick presets (~5 minutes)")
    args = parser.parse_args()
    note(quick=args.quick, seeds=[0], tolerance="1 % relative")
    run = sweep(output=args.output, quick=args.quick, command="python benchmarks/essential_sparsity.py")
    rows = []
    for name, result in run.results:
        u = result.uncertainty
        rows.append(
            [
                MODELS.get(name, name),
                result.config.metric,
                f"{result.dense:.4g}",
                _percent(result.essential_sparsity) + _interval(u.essential_interval if u else None),
                _percent(result.knee) + _interval(u.knee_interval if u else None),
                "below noise" if u and u.noisy else "above noise",
            ]
        )
    print(
        table(
            rows,
            ["model", "metric", "dense", "essential sparsity [90 % interval]", "knee [90 % interval]", "1 % tolerance"],
        )
    )
    print(table(cost_rows(run.results), COST_COLUMNS, name="cost"))


COST_COLUMNS = ["model", "parameters", "per point", "median s per point (measured)", "peak RSS GiB (whole run)"]


def cost_rows(results: list) -> list[list[str]]:
    """Measured seconds per point, then the 7B extrapolation (CPU scaled, GPU estimated)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    rows = []
    for name, result in results:
        params = sum(p.numel() for p in load_hf_model(resolve_model_path(PACKAGED[name])).parameters())
        seconds = statistics.median(p.seconds for p in result.points if p.error is None)
        per_point = result.config.metric.split("(", 1)[-1].rstrip(")")
        rows.append([MODELS[name], f"{params / 1e6:.1f}M", per_point, f"{seconds:.1f}", f"{peak:.2f}"])
        if name == "smollm2-perplexity":
            tokens = int(per_point.split()[0])
            scale = TARGET_PARAMS / params
            gpu = 2 * TARGET_PARAMS * tokens / GPU_FLOPS
            rows.append(
                [
                    "7B causal LM, CPU (scaled from the row above)",
                    "7000M",
                    per_point,
                    f"{seconds * scale:.0f} (estimate)",
                    f"{2 * 4 * TARGET_PARAMS / 2**30:.0f} (estimate: fp32 model + restore copy)",
                ]
            )
            rows.append(
                [
                    "7B causal LM, one H100 (FLOP estimate, evaluation only)",
                    "7000M",
                    per_point,
                    f"{gpu:.2f} (estimate)",
                    f"{4 * TARGET_PARAMS / 2**30:.0f} GPU + {4 * TARGET_PARAMS / 2**30:.0f} host (estimate)",
                ]
            )
    return rows


if __name__ == "__main__":
    run_main(main, __file__)
