"""2:4 Linear layers on a GPU: dense cuBLAS vs ``torch.sparse.to_sparse_semi_structured``
(cuSPARSELt sparse tensor cores), same weights, same run, several token counts.

Run it on any CUDA machine with compute capability >= 8.0 (A100, H100, H200, RTX 30xx+):

    python benchmarks/gpu_semi_structured.py                    # BERT-base and 7B-LLM layer shapes
    python benchmarks/gpu_semi_structured.py --model PRUNED_DIR # the 2:4 Linear weights of a checkpoint
    python benchmarks/gpu_semi_structured.py --out results.md

Without a suitable GPU it says so and exits 0, measuring nothing (CPU CI never needs it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

SHAPES = {  # (out_features, in_features) of the Linear layers in one block
    "bert-base": [(768, 768), (3072, 768), (768, 3072)],
    "llama-7b": [(4096, 4096), (11008, 4096), (4096, 11008)],
}


def two_four(weight: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest magnitudes in every 4 along the input axis (our N:M rule)."""
    groups = weight.reshape(-1, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, groups.abs().topk(2, dim=1).indices, True)
    return (groups * keep).reshape(weight.shape)


def checkpoint_weights(path: Path, limit: int) -> list[tuple[str, torch.Tensor]]:
    """Distinct-shape 2:4 Linear weights from a pruned checkpoint (safetensors only)."""
    from safetensors.torch import load_file

    weights, shapes = [], set()
    for file in sorted(path.glob("*.safetensors")):
        for name, tensor in load_file(file).items():
            if tensor.dim() != 2 or tensor.shape[1] % 4 or tuple(tensor.shape) in shapes:
                continue
            nonzero = (tensor.reshape(-1, 4) != 0).sum(dim=1)
            if bool((nonzero <= 2).all()) and float((tensor == 0).float().mean()) >= 0.49:
                shapes.add(tuple(tensor.shape))
                weights.append((name, tensor))
    if not weights:
        raise SystemExit(f"{path}: no 2:4 Linear weights found (prune with: es-plugins prune --method nm)")
    return weights[:limit]


def time_ms(fn, repeats: int) -> float:
    for _ in range(5):
        fn()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end))
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="pruned 2:4 checkpoint folder (default: synthetic shapes)")
    parser.add_argument("--shapes", default="bert-base,llama-7b", help="synthetic shape sets: " + ", ".join(SHAPES))
    parser.add_argument("--tokens", default="1,16,128,1024,4096", help="rows of the activation matrix")
    parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16"))
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args(argv)

    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 0):
        print("no CUDA GPU with compute capability >= 8.0: 2:4 sparse tensor cores unavailable; nothing measured")
        return 0
    from torch.sparse import to_sparse_semi_structured

    dtype = getattr(torch, args.dtype)
    if args.model:
        weights = [(n, w.to("cuda", dtype)) for n, w in checkpoint_weights(args.model, 8)]
    else:
        gen = torch.Generator(device="cuda").manual_seed(0)
        weights = [
            (f"{name} {o}x{i}", two_four(torch.randn(o, i, device="cuda", dtype=dtype, generator=gen)))
            for name in args.shapes.split(",")
            for o, i in SHAPES[name]
        ]
    lines = [
        f"GPU: {torch.cuda.get_device_name()} | torch {torch.__version__} | {args.dtype} | median of {args.repeats}",
        "",
        "| layer | tokens | dense ms | 2:4 sparse ms | speedup | max abs diff |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for name, weight in weights:
        sparse = to_sparse_semi_structured(weight)
        for tokens in (int(t) for t in args.tokens.split(",")):
            x = torch.randn(tokens, weight.shape[1], device="cuda", dtype=dtype)
            try:
                got = torch.nn.functional.linear(x, sparse)
            except RuntimeError as exc:  # cuSPARSELt shape limits (e.g. very small token counts)
                row = f"| {name} | {tokens} | - | - | unsupported: {str(exc).splitlines()[0][:60]} | - |"
            else:
                diff = float((got - torch.nn.functional.linear(x, weight)).abs().max())
                dense_ms = time_ms(lambda: torch.nn.functional.linear(x, weight), args.repeats)
                sparse_ms = time_ms(lambda: torch.nn.functional.linear(x, sparse), args.repeats)
                row = (
                    f"| {name} | {tokens} | {dense_ms:.4f} | {sparse_ms:.4f} | {dense_ms / sparse_ms:.2f}x "
                    f"| {diff:.2e} |"
                )
            lines.append(row)
            print(row, flush=True)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
