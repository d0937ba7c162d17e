"""Cost of keeping pruned weights at zero during training, per optimizer step.

A BERT-base-sized block stack (84.9M Linear weights), AdamW with weight decay, batch
8 x 128 tokens, 50 % global OMP. Rows: a dense step (baseline); es-plugins' post-step
``mul_`` (with and without gradient masking); torch.nn.utils.prune's forward pre-hook
reparametrisation (what Lightning's ModelPruning uses). The enforcement column times the
hooks alone (many repetitions), which is far less noisy than a difference of step times.

Usage: python benchmarks/enforcement.py [--steps 3] [--size bert-base]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import SIZES, linear_stack, reset_peak, rss_bytes, run_isolated, run_main, table  # noqa: E402
from torch import nn  # noqa: E402

MODES = ("dense", "es-plugins", "es-plugins + grad mask", "torch prune hook")


class Stack(nn.Module):
    def __init__(self, size: str):
        super().__init__()
        self.blocks = linear_stack(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for q, k, v, o, up, down in self.blocks:
            x = x + o(v(k(q(x))))
            x = x + down(torch.nn.functional.gelu(up(x)))
        return x


def case(mode: str, size: str, steps: int) -> dict:
    model = Stack(size)
    hidden = SIZES[size][1]
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    enforce = None
    if mode.startswith("es-plugins"):
        from es_plugins import OMPConfig, SparsityPlan, TargetSpec, sparsify_

        state = sparsify_(model, SparsityPlan(OMPConfig(0.5), TargetSpec(include=r".*")))
    elif mode == "torch prune hook":
        import torch.nn.utils.prune as prune

        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        prune.global_unstructured([(m, "weight") for m in linears], pruning_method=prune.L1Unstructured, amount=0.5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    if mode.startswith("es-plugins"):
        handle = state.attach(model, optimizer, mask_gradients=mode.endswith("grad mask"))
        enforce = [h for h in handle.hooks]
    x = torch.randn(8 * 128, hidden)

    def step() -> None:
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    step()  # warm-up: allocates optimizer state
    reset_peak()
    base = rss_bytes()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = rss_bytes("VmHWM") - base
    hook_ms = None
    if enforce is not None:
        # Time the registered hooks alone: what enforcement adds to each real step.
        hooks = list(optimizer._optimizer_step_pre_hooks.values()) + list(optimizer._optimizer_step_post_hooks.values())
        reps = 20
        start = time.perf_counter()
        for _ in range(reps):
            for hook in hooks:
                hook(optimizer, (), {})
        hook_ms = (time.perf_counter() - start) / reps * 1e3
    return {
        "step_s": sorted(times)[len(times) // 2],
        "peak_extra_bytes": max(peak, 0),
        "weight_bytes": weight_bytes,
        "hook_ms": hook_ms,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        print(json.dumps(case(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="bert-base", choices=list(SIZES))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds of fresh processes")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):  # interleaved: every mode once per round
        for mode in MODES:
            runs[mode].append(run_isolated(__file__, "--case", mode, args.size, str(args.steps)))
    dense_runs = [r["step_s"] for r in runs["dense"] if "error" not in r]
    dense = statistics.median(dense_runs)
    noise = (max(dense_runs) - min(dense_runs)) / dense  # spread of the dense step itself
    rows = []
    for mode, results in runs.items():
        ok = [r for r in results if "error" not in r]
        if not ok:
            rows.append([mode, "error", "-", "-", "-", results[0]["error"][:60]])
            continue
        steps = [r["step_s"] for r in ok]
        hooks = [r["hook_ms"] for r in ok if r["hook_ms"] is not None]
        hook = "-" if not hooks else f"{statistics.median(hooks):.1f} ms ({statistics.median(hooks) / 1e3 / dense:.2%})"
        rows.append(
            [
                mode,
                f"{statistics.median(steps):.2f} ({min(steps):.2f}-{max(steps):.2f})",
                f"{statistics.median(steps) / dense - 1:+.1%}",
                hook,
                f"{statistics.median(r['peak_extra_bytes'] / r['weight_bytes'] for r in ok):.2f}x",
            ]
        )
    print(
        f"Training step with mask enforcement, {args.size} stack, AdamW, batch 8x128; median (min-max) over "
        f"{args.repeats} interleaved fresh processes of the median of {args.steps} steps; the dense step itself "
        f"varies by {noise:.1%} between runs, so step-time differences below that are noise"
    )
    print(
        table(
            rows,
            ["mode", "step s", "vs dense", "enforcement per step (of dense step)", "peak during steps (x weights)"],
        )
    )


if __name__ == "__main__":
    run_main(main, __file__)
