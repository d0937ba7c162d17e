"""Where global OMP spends its time, pass by pass, beside the floor (one read pass of the weights,
``aminmax``), in one process: the sample, the gathering pass (which also writes every mask outside
the bracket and checks the scores are finite), the selection inside the bracket, the first touch
of fresh memory the size of the masks (what a first call pays on top of warm passes, whose masks
can reuse memory freed by the previous call) faulted page by page and mapped at once, and the
whole ``compute_masks``; and the mask pass that out-of-core pruning adds
(masks written one at a time).

Usage: python benchmarks/omp_passes.py [--sizes bert-base 350m] [--dtype float32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import mmap
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import SIZES, linear_stack, note, run_main, table  # noqa: E402


def _median_seconds(fn, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def _first_touch(size: int) -> None:
    """Write ``size`` bytes of fresh anonymous memory, as a first call's masks (one byte per
    weight) must: each 4 KiB page faults once. Its own private mapping (as malloc's), so no
    earlier free is reused."""
    pages = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    np.frombuffer(pages, dtype=np.uint8)[:] = 1
    pages.close()


def _prefaulted_touch(size: int) -> None:
    """The masks' way (``es_plugins.masks.buffers``): pages mapped in one call, then written."""
    from es_plugins.masks.buffers import prefaulted_bools

    prefaulted_bools(size).numpy()[:] = True


def main() -> None:
    from es_plugins import OMPConfig, TargetSpec
    from es_plugins.masks import select
    from es_plugins.masks.targets import resolve_targets
    from es_plugins.methods import compute_masks
    from es_plugins.methods.magnitude import magnitude_score

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["bert-base"], choices=list(SIZES))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    note(variant="" if args.dtype == "float32" else args.dtype)  # fp32 and bf16 keep separate results files
    torch.set_num_threads(1)
    before = os.getloadavg()
    rows = []
    for size in args.sizes:
        targets = resolve_targets(linear_stack(size, getattr(torch, args.dtype)), TargetSpec(include=r".*"))
        weights = [t.param.detach() for t in targets]
        scores = select.in_key_domain([magnitude_score(w) for w in weights])  # bf16: int16 keys, as OMP does
        numels = [w.numel() for w in weights]
        total, k = sum(numels), sum(numels) // 2
        samples = select._sample_scores(scores, numels, total, select._SAMPLE_SIZE)
        lo, hi, capacity = select._bracket(samples, k, total)
        threshold = select.kth_smallest_threshold(scores, numels, k)
        masks = [torch.empty(n, dtype=torch.bool) for n in numels]
        gathered = select._count_and_gather(scores, numels, lo, hi, capacity, iter, masks)
        values = gathered.inside.numpy()
        passes = {
            "floor: one read pass (aminmax)": lambda: [torch.aminmax(w) for w in weights],
            "sample": lambda: select._sample_scores(scores, numels, total, select._SAMPLE_SIZE),
            "gathering pass, writing the masks": lambda: select._count_and_gather(
                scores, numels, lo, hi, capacity, iter, masks
            ),
            "selection in the bracket": lambda: select.threshold_in_bracket(values, k - gathered.below),
            "compute_masks (all of it)": lambda: compute_masks(targets, OMPConfig(0.5)),
            "out of core only: a mask pass": lambda: list(
                select.iter_threshold_masks(scores, numels, threshold.value, threshold.ties, threshold.equal)
            ),
            # last, so their 85 MB allocations do not move glibc's thresholds under the passes above
            "first touch of fresh pages, one fault per 4 KiB": lambda: _first_touch(total),
            "the same, pages mapped at once (MADV_POPULATE_WRITE, as the masks)": lambda: _prefaulted_touch(total),
        }
        floor = None
        for name, fn in passes.items():
            seconds = _median_seconds(fn, args.repeats)
            floor = floor or seconds
            rows.append(
                [f"{size} ({total / 1e6:.1f}M {args.dtype})", name, f"{seconds:.3f}", f"{seconds / floor:.1f}x"]
            )
    print(
        f"global OMP 50 %, one thread, median of {args.repeats}; load average before/after {before} / {os.getloadavg()}"
    )
    print(table(rows, ["stack", "pass", "time s", "x floor"]))


if __name__ == "__main__":
    run_main(main, __file__)
