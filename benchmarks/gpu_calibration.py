"""SparseGPT and Wanda on a device: prune time beside one forward pass of the calibration set, with
the model resident on the device and with the model in CPU memory and its blocks onloaded one at
a time (``sparsify_(..., device=...)``), plus perplexity and peak device memory.

Ready for the day a GPU is lent: ``python benchmarks/gpu_calibration.py`` (default ``--device
cuda``). On a CPU-only machine ``--device cpu --samples 8`` checks that it runs (no onloaded
row: the model already lives there). Numbers are only what this script printed on the named
device; none is claimed for a GPU that was not measured.

Protocol: packaged SmolLM2-135M in fp32 (or ``--model`` any local/hub causal LM), ``--samples``
calibration windows of ``--seq-len`` BBC News tokens, perplexity on 16 held-out windows.
Each row starts from a fresh copy of the dense weights; the forward pass is timed before and
after the rows and the median is the unit of the cost column.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from _common import run_main, table  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def forward_seconds(model, calibration: torch.Tensor, device: torch.device, batch: int = 8) -> float:
    synchronize(device)
    start = time.perf_counter()
    for j in range(0, calibration.shape[0], batch):
        model(input_ids=calibration[j : j + batch].to(device), use_cache=False)
    synchronize(device)
    return time.perf_counter() - start


def peak_device_bytes(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def reset_device_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1, cpu (default cuda)")
    parser.add_argument("--model", default="packaged:smollm2", help="local folder, hub name or packaged:NAME")
    parser.add_argument("--samples", type=int, default=64, help="calibration windows (default 64)")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--rows", default="sparsegpt-50,sparsegpt-2:4,wanda-50,wanda-2:4")
    parser.add_argument("--skip-onloaded", action="store_true", help="only the model-resident rows")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from es_plugins import SparseGPTConfig, WandaConfig, sparsify_
    from es_plugins.analysis.evaluation import perplexity
    from es_plugins.engines.device import resolve_device
    from es_plugins.io.assets import resolve_model_path
    from es_plugins.io.datasets import bbc_news, calibration_blocks, token_blocks

    device = resolve_device(args.device, flag="--device")
    path = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    calibration = calibration_blocks(tokenizer, bbc_news("calib"), args.samples, args.seq_len, seed=0)
    evaluation = token_blocks(tokenizer, bbc_news("eval"), 16 * args.seq_len, args.seq_len)
    dense_cpu = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True).eval()
    dense = copy.deepcopy(dense_cpu).to(device)
    forward_seconds(dense, calibration[:2], device)  # warm-up: kernels, allocator
    forwards = [forward_seconds(dense, calibration, device)]
    header = ["method", "model lives on", "runs on", "prune s", "cost (x forward)", "perplexity", "peak device MiB"]
    rows = [["dense", str(device), str(device), "-", "-", f"{perplexity(dense, evaluation):.3f}", "-"]]
    timed: list[tuple[list[str], float]] = []
    for spec in args.rows.split(","):
        method, level = spec.split("-")
        options = {"pattern": level} if ":" in level else {"sparsity": int(level) / 100}
        config = (SparseGPTConfig if method == "sparsegpt" else WandaConfig)(**options)
        placements = [("resident", device)]
        if not args.skip_onloaded and device.type != "cpu":
            placements.append(("onloaded", torch.device("cpu")))
        for placement, home in placements:
            model = copy.deepcopy(dense_cpu).to(home)
            reset_device_peak(device)
            synchronize(device)
            start = time.perf_counter()
            sparsify_(model, config, calibration=calibration, device=device)
            synchronize(device)
            seconds = time.perf_counter() - start
            peak = peak_device_bytes(device)
            ppl = perplexity(model.to(device), evaluation)
            row = [spec, f"{home} ({placement})", str(device), f"{seconds:.2f}", "", f"{ppl:.3f}"]
            row.append(f"{peak / 2**20:.0f}" if peak is not None else "-")
            timed.append((row, seconds))
            del model
    forwards.append(forward_seconds(dense, calibration, device))
    unit = statistics.median(forwards)
    for row, seconds in timed:
        row[4] = f"{seconds / unit:.2f}"
        rows.append(row)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"{path.name}: {args.samples} x {args.seq_len} calibration tokens on {name}; one forward of the "
        f"calibration set {unit:.3f} s (median of {len(forwards)}: {', '.join(f'{f:.3f}' for f in forwards)})"
    )
    print(table(rows, header))


if __name__ == "__main__":
    run_main(main, __file__)
