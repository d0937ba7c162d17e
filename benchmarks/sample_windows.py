"""How far the threshold search's sample quantile lands from the true one, against the length of
the windows of consecutive weights it samples, on the packaged models' targeted weights.

The search brackets the k-th smallest |w| with ``_Z`` standard deviations of an i.i.d. sample
quantile; windows of neighbouring weights (one row shares a scale) are not i.i.d. Each draw (a
sampling seed) at each quantile gives z = (true rank of the sample's quantile - k) in units of the
i.i.d. standard deviation; printed: the rms and the largest |z| over the draws. rms ~1 means the
window is as good as i.i.d.; a miss of the bracket needs |z| > ``_Z``.

Usage: python benchmarks/sample_windows.py [--models minilm smollm2] [--windows 16 64 256 1024] [--draws 20]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import note, run_main, table  # noqa: E402

QUANTILES = (0.3, 0.5, 0.7)


def main() -> None:
    from transformers import AutoModel, AutoModelForCausalLM

    from es_plugins.io.assets import resolve_model_path
    from es_plugins.masks import select
    from es_plugins.masks.targets import resolve_targets
    from es_plugins.methods.magnitude import magnitude_score

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["minilm", "smollm2"])
    parser.add_argument("--windows", type=int, nargs="+", default=[16, 64, 256, 1024])
    parser.add_argument("--draws", type=int, default=20, help="sampling seeds per quantile")
    args = parser.parse_args()
    note(quantiles=list(QUANTILES), draws=args.draws, sample_size=select._SAMPLE_SIZE, z=select._Z)
    rows = []
    for name in args.models:
        folder = resolve_model_path(f"packaged:{name}")
        loader = AutoModelForCausalLM if name == "smollm2" else AutoModel
        targets = resolve_targets(loader.from_pretrained(folder, dtype=torch.float32, local_files_only=True))
        scores = [magnitude_score(t.param) for t in targets]
        numels = [t.numel for t in targets]
        total = sum(numels)
        ranked = torch.cat([t.param.detach().abs().reshape(-1) for t in targets]).sort().values
        for window in args.windows:
            zs = []
            for q in QUANTILES:
                k = round(q * total)
                for seed in range(args.draws):
                    sample = select._sample_scores(scores, numels, total, select._SAMPLE_SIZE, seed, window)
                    m = sample.numel()
                    estimate = sample.kthvalue(max(1, round(q * m))).values
                    true_rank = int(torch.searchsorted(ranked, estimate))
                    zs.append(abs(true_rank - k) / total * m / math.sqrt(m * q * (1 - q)))
            rms = math.sqrt(sum(z * z for z in zs) / len(zs))
            rows.append([name, f"{total / 1e6:.1f}M", window, f"{rms:.2f}", f"{max(zs):.2f}", len(zs)])
    print(
        f"sample quantile error in i.i.d. standard deviations (sample of {select._SAMPLE_SIZE} scores; "
        f"the bracket is +-{select._Z:g}; the engine samples windows of {select._WINDOW})"
    )
    print(table(rows, ["model", "targeted weights", "window", "rms |z|", "max |z|", "draws"]))


if __name__ == "__main__":
    run_main(main, __file__)
