"""SparseGPT and Wanda, ours beside a faithful re-implementation of the reference algorithms, on the
packaged SmolLM2-135M, in one process and one protocol; plus the prune time against one forward
pass of the calibration set.

Protocol (fixed): 64 calibration windows of 256 tokens from BBC News articles (the calibration
half), perplexity on 16 held-out windows of 256 tokens (the evaluation half), fp32, 2 threads.

Reference SparseGPT (Frantar & Alistarh's released code, re-implemented here from the paper's
algorithm and that code's documented behaviour): per block of layers, hooks add each sample's
inputs to ``H = 2/n * X X^T`` (running average, one sample per forward), dead diagonal entries
set to 1 and their columns zeroed, 1 % dampening of the mean diagonal, upper Cholesky factor of
``H^-1``, column blocks of 128, the mask chosen per column block (``w^2 / d^2`` below the block's
quantile; N:M per group of M columns on the updated weights), error propagated inside the block
and lazily to the columns after it; then a second forward gives the block's outputs.
Reference Wanda: ``|W| * ||X||_2`` per input column, per-output-row quota (or N:M per group).

Usage: python benchmarks/llm_reference.py [--rows sparsegpt-50,sparsegpt-2:4,wanda-50,wanda-2:4]
       [--seeds 0 1] [--passes 1 2]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from _common import note, run_main, table  # noqa: E402
from torch import nn  # noqa: E402

CALIB_SAMPLES, SEQ_LEN, EVAL_WINDOWS = 64, 256, 16


# --------------------------------------------------------------------------- reference SparseGPT
class ReferenceSparseGPT:
    """One Linear layer's Hessian and the reference column-block pruning."""

    def __init__(self, layer: nn.Linear):
        self.layer = layer
        self.columns = layer.weight.shape[1]
        self.H = torch.zeros(self.columns, self.columns)
        self.nsamples = 0

    def add_batch(self, inp: torch.Tensor) -> None:
        batch = inp.shape[0] if inp.dim() == 3 else 1
        x = inp.reshape(-1, inp.shape[-1]).t().float()
        self.H *= self.nsamples / (self.nsamples + batch)
        self.nsamples += batch
        x = math.sqrt(2 / self.nsamples) * x
        self.H += x.matmul(x.t())

    @torch.no_grad()
    def prune(
        self, sparsity: float, prunen: int = 0, prunem: int = 0, blocksize: int = 128, percdamp: float = 0.01
    ) -> None:
        W = self.layer.weight.data.clone().float()
        H = self.H
        dead = torch.diag(H) == 0
        H[dead, dead] = 1
        W[:, dead] = 0
        damp = percdamp * torch.mean(torch.diag(H))
        idx = torch.arange(self.columns)
        H[idx, idx] += damp
        H = torch.linalg.cholesky(H)
        H = torch.cholesky_inverse(H)
        Hinv = torch.linalg.cholesky(H, upper=True)
        for i1 in range(0, self.columns, blocksize):
            i2 = min(i1 + blocksize, self.columns)
            count = i2 - i1
            W1 = W[:, i1:i2].clone()
            Q1 = torch.zeros_like(W1)
            Err1 = torch.zeros_like(W1)
            Hinv1 = Hinv[i1:i2, i1:i2]
            if prunen == 0:
                tmp = W1**2 / (torch.diag(Hinv1).reshape((1, -1))) ** 2
                thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
                mask1 = tmp <= thresh
            else:
                mask1 = torch.zeros_like(W1, dtype=torch.bool)
            for i in range(count):
                w = W1[:, i]
                d = Hinv1[i, i]
                if prunen != 0 and i % prunem == 0:
                    tmp = W1[:, i : i + prunem] ** 2 / (torch.diag(Hinv1)[i : i + prunem].reshape((1, -1))) ** 2
                    mask1.scatter_(1, i + torch.topk(tmp, prunen, dim=1, largest=False)[1], True)
                q = w.clone()
                q[mask1[:, i]] = 0
                Q1[:, i] = q
                err1 = (w - q) / d
                W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
                Err1[:, i] = err1
            W[:, i1:i2] = Q1
            W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
        self.layer.weight.data = W.to(self.layer.weight.dtype)


class ReferenceWanda:
    """One Linear layer's input column norms and the reference per-row (or N:M) pruning."""

    def __init__(self, layer: nn.Linear):
        self.layer = layer
        self.scaler = torch.zeros(layer.weight.shape[1])
        self.nsamples = 0

    def add_batch(self, inp: torch.Tensor) -> None:
        batch = inp.shape[0] if inp.dim() == 3 else 1
        x = inp.reshape(-1, inp.shape[-1]).t().float()
        self.scaler *= self.nsamples / (self.nsamples + batch)
        self.nsamples += batch
        self.scaler += torch.norm(x, p=2, dim=1) ** 2 / self.nsamples

    @torch.no_grad()
    def prune(self, sparsity: float, prunen: int = 0, prunem: int = 0) -> None:
        W = self.layer.weight.data
        metric = W.abs() * torch.sqrt(self.scaler.reshape((1, -1)))
        mask = torch.zeros_like(metric, dtype=torch.bool)
        if prunen != 0:
            for i in range(0, metric.shape[1], prunem):
                tmp = metric[:, i : i + prunem].float()
                mask.scatter_(1, i + torch.topk(tmp, prunen, dim=1, largest=False)[1], True)
        else:
            order = torch.sort(metric, dim=-1, stable=True)[1]
            mask.scatter_(1, order[:, : int(metric.shape[1] * sparsity)], True)
        W[mask] = 0


class _Stop(Exception):
    pass


@torch.no_grad()
def reference_prune(model, calibration: torch.Tensor, method: str, sparsity: float, prunen: int, prunem: int) -> None:
    """The reference sequential driver: one sample per forward, hooks on every Linear of a
    block, prune, second forward for the outputs, next block."""
    layers = model.model.layers
    cached: list[tuple[torch.Tensor, dict]] = []

    def catch(module, args, kwargs):
        cached.append((args[0], kwargs))
        raise _Stop

    handle = layers[0].register_forward_pre_hook(catch, with_kwargs=True)
    for j in range(calibration.shape[0]):
        try:
            model(input_ids=calibration[j : j + 1], use_cache=False)
        except _Stop:
            pass
    handle.remove()
    inps = [x for x, _ in cached]
    kwargs = [k for _, k in cached]
    for layer in layers:
        subset = {n: m for n, m in layer.named_modules() if isinstance(m, nn.Linear)}
        tools = {n: (ReferenceSparseGPT if method == "sparsegpt" else ReferenceWanda)(m) for n, m in subset.items()}
        handles = [
            m.register_forward_hook(lambda mod, inp, out, n=n: tools[n].add_batch(inp[0].data))
            for n, m in subset.items()
        ]
        for j in range(len(inps)):
            layer(inps[j], **kwargs[j])
        for h in handles:
            h.remove()
        for tool in tools.values():
            if method == "sparsegpt":
                tool.prune(sparsity, prunen, prunem, blocksize=128, percdamp=0.01)
            else:
                tool.prune(sparsity, prunen, prunem)
        outs = []
        for j in range(len(inps)):
            out = layer(inps[j], **kwargs[j])
            outs.append(out[0] if isinstance(out, (tuple, list)) else out)
        inps = outs


# --------------------------------------------------------------------------- shared
@torch.no_grad()
def perplexity(model, blocks: torch.Tensor) -> float:
    nll, tokens = 0.0, 0
    for j in range(blocks.shape[0]):
        batch = blocks[j : j + 1]
        logits = model(input_ids=batch, use_cache=False).logits[:, :-1].float()
        nll += float(
            nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum")
        )
        tokens += batch.shape[1] - 1
    return math.exp(nll / tokens)


@torch.no_grad()
def forward_seconds(model, calibration: torch.Tensor, batch: int = 8) -> float:
    start = time.perf_counter()
    for j in range(0, calibration.shape[0], batch):
        model(input_ids=calibration[j : j + batch], use_cache=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="sparsegpt-50,sparsegpt-2:4,wanda-50,wanda-2:4")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="calibration sampling seeds")
    parser.add_argument("--passes", type=int, nargs="+", default=[1], choices=(1, 2), help="our schedules to run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-reference", action="store_true", help="time ours only (no perplexity comparison)")
    parser.add_argument(
        "--variant", default="", help="results file suffix: benchmarks/results/llm_reference-VARIANT.json"
    )
    args = parser.parse_args()
    note(variant=args.variant, seeds=args.seeds, passes=args.passes)
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from es_plugins import SparseGPTConfig, WandaConfig, sparsify_
    from es_plugins.io.assets import resolve_model_path
    from es_plugins.io.datasets import bbc_news, calibration_blocks, token_blocks

    path = resolve_model_path("packaged:smollm2")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    evaluation = token_blocks(tokenizer, bbc_news("eval"), EVAL_WINDOWS * SEQ_LEN, SEQ_LEN)
    dense = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True).eval()
    dense_ppl = perplexity(dense, evaluation)
    header = [
        "method",
        "level",
        "implementation",
        "perplexity (mean, min-max over seeds)",
        "vs reference",
        "prune time",
        "cost (x forward)",
        "forward (median, min-max)",
    ]
    rows = [["dense", "-", "-", f"{dense_ppl:.3f}", "-", "-", "-", "-"]]
    for spec in args.rows.split(","):
        method, level = spec.split("-")
        nm = tuple(int(v) for v in level.split(":")) if ":" in level else None
        sparsity = 0.5 if nm is None else 1 - nm[0] / nm[1]
        config_cls = SparseGPTConfig if method == "sparsegpt" else WandaConfig
        runs: dict[str, list[tuple[float, float]]] = {}
        forwards: list[float] = []  # timed before and after each seed's prunes: the cost uses their median
        for seed in args.seeds:  # interleaved: every implementation once per seed
            calibration = calibration_blocks(tokenizer, bbc_news("calib"), CALIB_SAMPLES, SEQ_LEN, seed=seed)
            forwards.append(forward_seconds(dense, calibration))
            cases = (
                []
                if args.skip_reference
                else [("reference", lambda m: reference_prune(m, calibration, method, sparsity, *(nm or (0, 0))))]
            )
            for passes in args.passes:
                config = config_cls(**_level(nm), passes=passes)
                cases.append(
                    (
                        f"ours, {passes} pass{'es' if passes > 1 else ''}",
                        lambda m, c=config: sparsify_(m, c, calibration=calibration),
                    )
                )
            for label, run in cases:
                model = copy.deepcopy(dense)
                start = time.perf_counter()
                run(model)
                seconds = time.perf_counter() - start
                runs.setdefault(label, []).append((perplexity(model, evaluation), seconds))
                del model
            forwards.append(forward_seconds(dense, calibration))
        forward = statistics.median(forwards)
        reference = statistics.mean(r[0] for r in runs.get("reference", next(iter(runs.values()))))
        for label, results in runs.items():
            ppls = [r[0] for r in results]
            mean = statistics.mean(ppls)
            rows.append(
                [
                    method,
                    level,
                    label,
                    f"{mean:.3f} ({min(ppls):.3f}-{max(ppls):.3f})",
                    f"{100 * (mean / reference - 1):+.2f} %",
                    f"{statistics.median(r[1] for r in results):.1f} s",
                    f"{statistics.median(r[1] for r in results) / forward:.2f}x",
                    f"{forward:.1f} s ({min(forwards):.1f}-{max(forwards):.1f})",
                ]
            )
        print(table(rows[-len(runs) :], header, name="latest"), flush=True)
    print()
    print(
        f"SmolLM2-135M fp32, {CALIB_SAMPLES}x{SEQ_LEN} calibration tokens (BBC News; seeds {args.seeds}), "
        f"perplexity on {EVAL_WINDOWS}x{SEQ_LEN} held-out tokens, {args.threads} threads; cost = median prune time / "
        "median time of one forward pass of the calibration set through the model (timed before and after each "
        "seed's prunes, same process)"
    )
    print(table(rows, header, name="all"))


def _level(nm: tuple[int, int] | None) -> dict:
    return {"pattern": f"{nm[0]}:{nm[1]}"} if nm else {"sparsity": 0.5}


if __name__ == "__main__":
    run_main(main, __file__)
