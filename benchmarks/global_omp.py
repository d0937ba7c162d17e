"""Global OMP at 50 %: es-plugins vs torch.nn.utils.prune.global_unstructured vs
concatenate+kthvalue, beside the floor (one read pass over the weights).

Each case runs in a fresh process; peak memory is RSS above the loaded weights. For bf16, the row
"es-plugins, fp32 scores" is the same selection on |w| widened to fp32 instead of int16 keys. Every case but
"es-plugins, glibc defaults" fixes glibc's mmap threshold (es_plugins.engines.memory.stable_allocator);
that row is the allocator A/B: the same code under glibc's adaptive threshold, whose peak varies
run to run because freed chunks are kept. Every case runs on one thread unless ``--threads N``
(then the floor's aminmax, ours and the baselines all get N torch threads; a results file of its own).
Usage: python benchmarks/global_omp.py [--sizes bert-base 350m] [--dtype bfloat16] [--threads 2] [--torch-prune-large]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import SIZES, linear_stack, measure, note, run_isolated, run_main, table  # noqa: E402

SPARSITY = 0.5
OURS_DEFAULT_ALLOCATOR = "es-plugins, glibc defaults"
OURS_FLOAT_SCORES = "es-plugins, fp32 scores"  # 16-bit weights only: the A/B of selecting on int16 keys
METHODS = (
    "floor: one read pass",
    "es-plugins",
    OURS_DEFAULT_ALLOCATOR,
    OURS_FLOAT_SCORES,
    "cat + kthvalue",
    "torch prune global",
)


def case(method: str, size: str, dtype: str) -> dict:
    from es_plugins.engines.memory import stable_allocator

    if method != OURS_DEFAULT_ALLOCATOR:  # the A/B: the same code with glibc's adaptive mmap threshold
        stable_allocator()  # freed buffers go back to the OS, so peaks repeat run to run
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))  # --threads; the floor's aminmax too
    blocks = linear_stack(size, getattr(torch, dtype))
    linears = [m for m in blocks.modules() if isinstance(m, torch.nn.Linear)]
    weights = [m.weight for m in linears]
    n = sum(w.numel() for w in weights)
    k = round(SPARSITY * n)

    if method == "floor: one read pass":
        run = lambda: [torch.aminmax(w.detach()) for w in weights]  # reads every weight, allocates nothing
    elif method.startswith("es-plugins"):
        from es_plugins import OMPConfig, TargetSpec
        from es_plugins.masks import select

        if method == OURS_FLOAT_SCORES:  # widen every weight to an fp32 |w|, as before the keys
            select.in_key_domain = lambda scores: scores
        from es_plugins.masks.targets import resolve_targets
        from es_plugins.methods import compute_masks

        targets = resolve_targets(blocks, TargetSpec(include=r".*"))
        run = lambda: compute_masks(targets, OMPConfig(SPARSITY))
    elif method == "cat + kthvalue":

        def run():
            t = torch.cat([w.detach().abs().reshape(-1).float() for w in weights]).kthvalue(k).values
            return [w.detach().abs() > t for w in weights]
    else:
        import torch.nn.utils.prune as prune

        run = lambda: prune.global_unstructured(
            [(m, "weight") for m in linears], pruning_method=prune.L1Unstructured, amount=k
        )
    holder = {}
    result = measure(lambda: holder.setdefault("out", run()))
    out = holder["out"]
    if method.startswith("es-plugins"):
        pruned = sum(int((~m).sum()) for m in out.values())
    elif method == "cat + kthvalue":
        pruned = sum(int((~m).sum()) for m in out)
    elif method == "torch prune global":
        pruned = sum(int((m.weight == 0).sum()) for m in linears)
    else:
        pruned = None
    weight_bytes = sum(w.numel() * w.element_size() for w in weights)
    return {**result, "weights": n, "weight_bytes": weight_bytes, "pruned": pruned, "k": k}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        print(json.dumps(case(*sys.argv[2:5])))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument(
        "--torch-prune-large",
        action="store_true",
        help="also run torch prune on the 350m stack (~12x the weights of RAM: ~17 GiB)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (each runs every case once)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads in every case (the floor's aminmax and ours alike)"
    )
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # each isolated case runs with it, and the results say so
    # fp32 and bf16, and each thread count, keep separate results files
    threads_part = f"threads{args.threads}" if args.threads != 1 else ""
    note(variant="-".join(part for part in ("" if args.dtype == "float32" else args.dtype, threads_part) if part))
    before = os.getloadavg()
    rows = []
    for size in args.sizes:
        methods = [m for m in METHODS if m != "torch prune global" or size == "bert-base" or args.torch_prune_large]
        methods = [m for m in methods if m != OURS_FLOAT_SCORES or args.dtype != "float32"]
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits every case alike
            for method in methods:
                runs[method].append(run_isolated(__file__, "--case", method, size, args.dtype))
        ours = statistics.median(r["seconds"] for r in runs["es-plugins"] if "error" not in r)
        floor = statistics.median(r["seconds"] for r in runs["floor: one read pass"] if "error" not in r)
        for method, results in runs.items():
            ok = [r for r in results if "error" not in r]
            if not ok:
                rows.append([size, method, "error", "-", "-", "-", "-", results[0]["error"][:60]])
                continue
            r = ok[0]
            exact = (
                "-" if r["pruned"] is None else ("yes" if r["pruned"] == r["k"] else f"no ({r['pruned'] - r['k']:+d})")
            )
            seconds = [x["seconds"] for x in ok]
            peaks = sorted(x["peak_extra_bytes"] / x["weight_bytes"] for x in ok)
            rows.append(
                [
                    f"{size} ({r['weights'] / 1e6:.1f}M {args.dtype})",
                    method,
                    f"{statistics.median(seconds):.2f} ({min(seconds):.2f}-{max(seconds):.2f})",
                    f"{statistics.median(seconds) / ours:.2f}x",
                    f"{statistics.median(seconds) / floor:.1f}x",
                    f"{statistics.median(peaks):.2f}x ({peaks[0]:.2f}-{peaks[-1]:.2f})",
                    exact,
                ]
            )
        if not args.torch_prune_large and size != "bert-base":
            rows.append([size, "torch prune global", "skipped", "-", "-", "-", "needs ~17 GiB; --torch-prune-large"])
    print(
        f"Global magnitude pruning to {SPARSITY:.0%} ({args.threads} thread(s); fresh process per case; median and min-max of "
        f"{args.repeats} interleaved repeats; glibc mmap threshold fixed by es_plugins.engines.memory.stable_allocator "
        f"except in the '{OURS_DEFAULT_ALLOCATOR}' row)"
    )
    print(f"load average before/after: {before} / {os.getloadavg()}; CPU: {_cpu_model()}")
    print(
        table(
            rows,
            ["stack", "method", "time s", "time vs ours", "time vs floor", "peak extra (x weights)", "exact count"],
        )
    )


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    run_main(main, __file__)
