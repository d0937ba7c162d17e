"""``es-plugins compare-masks`` and ``es-plugins zeros``: flags in, :func:`es_plugins.jobs.compare_masks`
and :func:`es_plugins.jobs.near_zero` called, tables out."""

from __future__ import annotations

import argparse
import json

from .._deprecation import warn_renamed
from ..errors import SparsityConfigError
from ..jobs.statistics import compare_masks, near_zero
from .console import emit


def add_compare_arguments(compare: argparse.ArgumentParser) -> None:
    compare.add_argument("a", help="masks file, or a folder holding sparsity_masks.safetensors (a lottery round's)")
    compare.add_argument("b")
    compare.add_argument("--json", action="store_true")
    compare.add_argument("--output", help="also write JSON and a per-layer plot into this new folder")
    compare.add_argument("--overwrite", action="store_true", help="replace an --output folder es-plugins wrote before")


def add_zeros_arguments(zeros: argparse.ArgumentParser) -> None:
    zeros.add_argument("--model", "-m", nargs="+", metavar="MODEL", help="HF checkpoint folders (or packaged:NAME)")
    zeros.add_argument("legacy_models", nargs="*", help=argparse.SUPPRESS)
    zeros.add_argument("--threshold", type=float, default=0.01)
    zeros.add_argument("--mode", default="relative", choices=("absolute", "relative"))
    zeros.add_argument(
        "--exclude-masked",
        action="store_true",
        help="leave out weights a checkpoint's sparsity_masks.safetensors prunes",
    )
    zeros.add_argument("--json", action="store_true")
    zeros.add_argument("--output", help="also write JSON, CSV and a plot across checkpoints into this new folder")
    zeros.add_argument("--overwrite", action="store_true", help="replace an --output folder es-plugins wrote before")


def run_compare(args: argparse.Namespace) -> int:
    similarity = compare_masks(args.a, args.b, output=args.output, overwrite=args.overwrite)
    emit(json.dumps(similarity.to_dict(), indent=2) if args.json else similarity.format_table())
    return 0


def run_zeros(args: argparse.Namespace) -> int:
    models = list(args.model or [])
    if args.legacy_models:
        if models:
            raise SparsityConfigError("zeros: give the checkpoints once, as --model A [B ...]")
        warn_renamed("zeros CHECKPOINT ...", "zeros --model CHECKPOINT ...")
        models = list(args.legacy_models)
    if not models:
        raise SparsityConfigError("zeros needs --model A [B ...] (checkpoint folders or packaged:NAME)")
    stats = near_zero(
        models,
        threshold=args.threshold,
        mode=args.mode,
        exclude_masked=args.exclude_masked,
        output=args.output,
        overwrite=args.overwrite,
    )
    if args.json:
        emit(json.dumps({spec: s.to_dict() for spec, s in stats.items()}, indent=2))
        return 0
    unit = "x mean|w| of the layer" if args.mode == "relative" else "absolute"
    emit(f"near-zero weights: |w| < {args.threshold:g} ({unit})")
    for spec, s in stats.items():
        emit(f"  {s.overall:8.3%}  {spec}  ({len(s.layers)} targeted layers)")
    return 0
