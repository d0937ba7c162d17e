"""N:M mask computation time: es-plugins' rank counting vs the common topk + scatter_.

BERT-base-sized stack (84.9M weights), 2:4 and 4:8. Both must keep exactly N per group;
the table says whether they agree (they differ only where magnitudes tie).

Usage: python benchmarks/nm_masks.py [--size bert-base]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import SIZES, linear_stack, run_main, table  # noqa: E402


def topk_scatter(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    groups = weight.detach().abs().reshape(-1, m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, groups.topk(n, dim=1).indices, True)
    return keep.reshape(weight.shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="bert-base", choices=list(SIZES))
    args = parser.parse_args()
    from es_plugins import NMConfig, TargetSpec
    from es_plugins.masks.targets import resolve_targets
    from es_plugins.methods import compute_masks

    torch.set_num_threads(1)
    blocks = linear_stack(args.size)
    targets = resolve_targets(blocks, TargetSpec(include=r".*"))
    rows = []
    for n, m in ((2, 4), (4, 8)):
        start = time.perf_counter()
        ours = compute_masks(targets, NMConfig(n, m))
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        base = {t.name: topk_scatter(t.param, n, m) for t in targets}
        base_s = time.perf_counter() - start
        exact = all(bool((mask.reshape(-1, m).sum(1) == n).all()) for mask in ours.values())
        agree = sum(int((ours[k] == base[k]).sum()) for k in ours) / sum(v.numel() for v in ours.values())
        rows.append(
            [
                f"{n}:{m}",
                f"{base_s:.2f}",
                f"{ours_s:.2f}",
                f"{base_s / ours_s:.2f}x",
                "yes" if exact else "NO",
                f"{agree:.4%}",
            ]
        )
    print(f"N:M mask computation, {args.size} stack ({sum(t.numel for t in targets) / 1e6:.1f}M weights, one thread)")
    print(table(rows, ["pattern", "topk+scatter s", "es-plugins s", "speed-up", "exactly N/group", "same mask"]))


if __name__ == "__main__":
    run_main(main, __file__)
