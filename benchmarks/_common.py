"""Shared helpers for the benchmark scripts: model-sized Linear stacks, peak memory, and the
results files.

Every table a script prints through :func:`table` is also recorded; :func:`run_main` runs the
script's ``main`` and, when it succeeds, writes ``benchmarks/results/<script>.json`` with the
tables and the conditions they were measured under (CPU, threads, load average before and
after, repeats, date, versions, commit). ``benchmarks/tables.py`` renders the docs' tables from
those files, and a test fails when a table in the docs and its results file disagree.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

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
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    _CONDITIONS.setdefault("threads", f"{threads} per isolated case")
    proc = subprocess.run(
        [sys.executable, script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": threads},
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


RESULTS_DIR = Path(__file__).resolve().parent / "results"
_LOAD_BEFORE = os.getloadavg()
_TABLES: dict[str, dict[str, Any]] = {}
_CONDITIONS: dict[str, Any] = {}
VERSIONED = ("torch", "transformers", "lightning", "accelerate", "peft", "optimum", "onnxruntime", "ray", "es-plugins")


def note(**conditions: Any) -> None:
    """Conditions the results file records beside the tables (``repeats=5``, ``dtype=...``)."""
    _CONDITIONS.update(conditions)


def cpu_model() -> str:
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def _commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "es_plugins", "integrations"],
            cwd=root,
            capture_output=True,
            text=True,
        )
        return (head.stdout.strip() or "unknown") + (" + local changes" if changed.stdout.strip() else "")
    except OSError:
        return "unknown"


def _threads() -> str:
    """Threads the measurements ran with: OMP_NUM_THREADS when set (the isolated cases inherit
    it, default 1), else torch's own setting in this process."""
    return os.environ.get("OMP_NUM_THREADS") or f"{torch.get_num_threads()} (torch default)"


def save_results(script: str, argv: list[str]) -> Path:
    """Write the tables recorded so far, with their conditions, to ``benchmarks/results/``."""
    stem = Path(script).stem + (f"-{_CONDITIONS['variant']}" if _CONDITIONS.get("variant") else "")
    repeats = _CONDITIONS.get("repeats")
    if repeats is None and "--repeats" in argv[:-1]:
        repeats = int(argv[argv.index("--repeats") + 1])
    data = {
        "benchmark": stem,
        "command": " ".join(["python", str(Path(script).resolve().relative_to(RESULTS_DIR.parents[1])), *argv]),
        "conditions": {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "cpu": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "threads": _CONDITIONS.get("threads") or _threads(),
            "load_before": [round(x, 2) for x in _LOAD_BEFORE],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "repeats": repeats,
            "versions": _versions(),
            "commit": _commit(),
            **{k: v for k, v in _CONDITIONS.items() if k not in ("repeats", "variant", "threads")},
        },
        "tables": _TABLES,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{stem}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def run_main(main: Callable[[], Any], script: str) -> None:
    """Run a benchmark's ``main``; if it printed tables and did not fail, write its results file.
    A ``--case`` child process (one isolated measurement) writes nothing."""
    outcome = main()
    if _TABLES and "--case" not in sys.argv:
        print(f"results: {save_results(script, sys.argv[1:])}")
    if isinstance(outcome, int):
        sys.exit(outcome)


def table(rows: list[list[str]], header: list[str], name: str | None = None) -> str:
    """The rows as aligned text; recorded under ``name`` (default ``table1``, ``table2``, ...)."""
    key = name or f"table{len(_TABLES) + 1}"
    _TABLES[key] = {"columns": [str(h) for h in header], "rows": [[str(c) for c in r] for r in rows]}
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])
