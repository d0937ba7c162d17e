"""Shared helpers for the benchmark scripts: model-sized Linear stacks and peak memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

# (layers, hidden, ffn): BERT-base has 84.9M block Linear weights; the second is ~350M.
SIZES = {"bert-base": (12, 768, 3072), "350m": (28, 1024, 4096)}


def linear_stack(size: str, dtype: torch.dtype = torch.float32, bias: bool = False) -> nn.ModuleList:
    """Transformer-block-shaped Linear layers (q, k, v, o, up, down per block), initialised
    in place so that building them leaves no transient peak."""
    layers, hidden, ffn = SIZES[size]
    torch.manual_seed(0)
    shapes = [(hidden, hidden)] * 4 + [(hidden, ffn), (ffn, hidden)]
    with torch.device("meta"):
        blocks = nn.ModuleList(
            nn.ModuleList(nn.Linear(i, o, bias=bias, dtype=dtype) for i, o in shapes) for _ in range(layers)
        )
    blocks.to_empty(device="cpu")
    with torch.no_grad():
        for p in blocks.parameters():
            p.normal_(0, 0.02)
    return blocks


def rss_bytes(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    """Reset VmHWM so the next peak reading covers only what follows (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def measure(fn: Callable[[], object]) -> dict:
    """Run ``fn`` once; return seconds and peak RSS above the level before it started."""
    reset_peak()
    base = rss_bytes()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = rss_bytes("VmHWM") - base
    del result
    return {"seconds": seconds, "peak_extra_bytes": max(peak, 0)}


def run_isolated(script: str, *args: str, timeout: float = 1800) -> dict:
    """Run one case in a fresh interpreter (clean allocator, honest peak) and parse its JSON."""
    proc = subprocess.run(
        [sys.executable, script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])
