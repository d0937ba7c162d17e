"""``es-plugins sweep``: flags in (one per :class:`es_plugins.jobs.SweepOptions` field), the
sweep run, its summary table out."""

from __future__ import annotations

import argparse
import dataclasses
from argparse import SUPPRESS

from ..analysis.backends import BACKENDS
from ..analysis.tasks import sweepable_methods
from ..jobs.sweep import DEFAULT_OUTPUT, SweepOptions, sweep
from .console import emit
from .options import add_device_argument, add_target_args, command_line, deprecated_spelling


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", help="local HF checkpoint (default: both packaged models and data sets)")
    parser.add_argument("--task", choices=("perplexity", "finetune"), help="how a level is evaluated (with --model)")
    parser.add_argument("--quick", action="store_true", help="smaller data and grid (~2 minutes for the defaults)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="report folder (resumes if it exists)")
    parser.add_argument(
        "--method",
        default="omp",
        choices=sweepable_methods(calibrated=True),
        help="calibrated methods (wanda, sparsegpt): perplexity task only, with --calib",
    )
    parser.add_argument("--scope", default="global", choices=("global", "layer"))
    parser.add_argument("--levels", type=float, nargs="+", help="sparsity grid (default 0.0 ... 0.9)")
    parser.add_argument("--tolerance", type=float, default=0.01, help="allowed degradation (default 0.01 = 1 %%)")
    parser.add_argument("--tolerance-kind", default="relative", choices=("relative", "absolute"))
    parser.add_argument("--resolution", type=float, help="locate the essential sparsity to this (default 0.025)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="evaluation seeds (mean and spread)")
    add_device_argument(
        parser,
        "where each level is pruned and evaluated (default: cuda when available, else cpu; e.g. cuda:1). "
        "Fine-tunes run on the Trainer's device: cpu with --device cpu, else the GPUs it sees",
    )
    lm = parser.add_argument_group("perplexity task")
    lm.add_argument("--text", help="a .txt file, a folder of .txt files, or packaged:bbc-eval")
    lm.add_argument("--tokens", type=int, help="evaluation tokens (default 4096; quick 1024)")
    lm.add_argument("--eval-seq-len", type=int, help="tokens per evaluation window (default 512; quick 256)")
    lm.add_argument(
        "--seq-len", dest="eval_seq_len", type=int, action=deprecated_spelling("--eval-seq-len"), help=SUPPRESS
    )
    lm.add_argument(
        "--calib", help="calibration text for wanda/sparsegpt (default for the packaged run: packaged:bbc-calib)"
    )
    lm.add_argument("--calib-samples", type=int, default=32, help="calibration sequences (default 32)")
    ft = parser.add_argument_group("fine-tune task")
    ft.add_argument(
        "--data",
        help="CSV, JSON/JSONL, a folder of class folders of .txt files, or "
        "packaged:rotten-tomatoes / packaged:bbc-news",
    )
    ft.add_argument("--text-column", default="text")
    ft.add_argument("--label-column", default="label")
    ft.add_argument("--train", type=int, help="training examples (default 1000; quick 400)")
    ft.add_argument("--test", type=int, help="test examples (default 2000; quick 200)")
    ft.add_argument("--epochs", type=float, help="fine-tuning epochs (default 2)")
    ft.add_argument("--lr", type=float, help="learning rate (default 1e-4; quick 2e-4)")
    ft.add_argument("--batch-size", type=int, default=16)
    ft.add_argument("--max-length", type=int, default=48, help="tokens per example (default 48)")
    precision = ft.add_mutually_exclusive_group()
    precision.add_argument("--bf16", action="store_true", help="fine-tune in bf16 mixed precision (GPU)")
    precision.add_argument("--fp16", action="store_true", help="fine-tune in fp16 mixed precision (GPU)")
    add_target_args(parser)
    scale = parser.add_argument_group("scale-out (a Ray cluster, or independent shards of a job array)")
    scale.add_argument(
        "--backend",
        default="local",
        choices=BACKENDS,
        help="local: points one after another in this process; ray: each (sparsity, seed) point a Ray task",
    )
    scale.add_argument(
        "--ray-address", help="Ray cluster to join (default: $RAY_ADDRESS when set, else a new local cluster)"
    )
    scale.add_argument("--cpus-per-point", type=float, default=1.0, help="CPUs each point's task reserves (default 1)")
    scale.add_argument("--gpus-per-point", type=float, default=0.0, help="GPUs each point's task reserves (default 0)")
    scale.add_argument(
        "--max-retries", type=int, default=2, help="times a point whose worker died is retried (default 2)"
    )
    scale.add_argument(
        "--shard",
        metavar="I/N",
        help="evaluate only grid points i, i+N, ... (0-based) into --output, for N independent jobs (SLURM "
        "arrays) sharing one folder; then `sweep --merge FOLDER` refines and reports",
    )
    scale.add_argument(
        "--merge",
        metavar="FOLDER",
        help="finish a sharded sweep in FOLDER: its settings are read from FOLDER/sweep_args.json",
    )


def options_from(args: argparse.Namespace) -> SweepOptions:
    """The flags are the options' fields, name for name."""
    return SweepOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SweepOptions)})


def run(args: argparse.Namespace) -> int:
    result = sweep(options_from(args), command=command_line())
    if result.summary is None:  # one shard of a job array: the merge reports
        return 0
    emit("\n".join(result.table()))
    emit(f"\nreport: {result.summary.resolve()}")
    return 0
