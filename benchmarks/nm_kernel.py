"""N:M keep-masks for M = 4: the generic pairwise ranks (baseline: transposed copy, 6 compares
and 12 uint8 updates per group) beside the unrolled M = 4 path that ``nm_keep_mask`` uses, on
the same Llama-shaped weights, in one process. Both must give the same bits.

Usage: python benchmarks/nm_kernel.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import run_main, table  # noqa: E402

SHAPES = {"attention 2048x2048": (2048, 2048), "mlp up 5632x2048": (5632, 2048), "mlp down 2048x5632": (2048, 5632)}


def main() -> None:
    from es_plugins.masks.patterns import _keep_by_pairs, _keep_of_four

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    before = os.getloadavg()
    rows = []
    for label, shape in SHAPES.items():
        groups = torch.randn(shape, generator=torch.Generator().manual_seed(0)).bfloat16().float().abs().reshape(-1, 4)
        times: dict[str, list[float]] = {"pairwise (generic)": [], "unrolled M = 4": []}
        for _ in range(args.repeats):  # interleaved
            for name, fn in (("pairwise (generic)", _keep_by_pairs), ("unrolled M = 4", _keep_of_four)):
                start = time.perf_counter()
                fn(groups, 2)
                times[name].append(time.perf_counter() - start)
        same = torch.equal(_keep_by_pairs(groups, 2), _keep_of_four(groups, 2))
        base = statistics.median(times["pairwise (generic)"])
        for name, seconds in times.items():
            median = statistics.median(seconds)
            rows.append([label, name, f"{median:.4f}", f"{base / median:.2f}x", "yes" if same else "NO"])
    print(
        f"2:4 keep-masks, {args.threads} thread(s), median of {args.repeats} interleaved repeats; "
        f"load average before/after {before} / {os.getloadavg()}"
    )
    print(table(rows, ["weight", "kernel", "time s", "speed-up vs generic", "same bits"]))


if __name__ == "__main__":
    run_main(main, __file__)
