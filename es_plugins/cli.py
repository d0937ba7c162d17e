"""``es-plugins`` command line: prune and inspect local Hugging Face checkpoints."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from .assets import resolve_model_path
from .checkpoint import DTYPES, load_hf_model, save_hf_checkpoint, write_checkpoint_atomically
from .errors import MaskMismatchError, SparsityConfigError
from .methods import MethodConfig, NMConfig, OMPConfig, RandomConfig, method_names, parse_pattern
from .plan import SparsityPlan
from .report import build_report
from .sparsify import sparsify_
from .state import MASKS_FILENAME, SparsityState
from .targets import TargetSpec, resolve_targets

REPORT_FILENAME = "sparsity_report.json"


def _add_target_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("targets (PEFT target_modules rules)")
    group.add_argument("--include", nargs="+", metavar="NAME",
                       help="module names or name suffixes to prune (replaces the default: Linear/Conv1D inside blocks)")
    group.add_argument("--include-regex", metavar="REGEX", help="regex that must match the whole module name")
    group.add_argument("--exclude", nargs="+", metavar="NAME", help="module names or suffixes to keep dense")
    group.add_argument("--exclude-regex", metavar="REGEX", help="regex (whole module name) to keep dense")


def _target_spec(args: argparse.Namespace) -> TargetSpec:
    if args.include and args.include_regex:
        raise SparsityConfigError("use either --include or --include-regex, not both")
    if args.exclude and args.exclude_regex:
        raise SparsityConfigError("use either --exclude or --exclude-regex, not both")
    return TargetSpec(include=args.include or args.include_regex, exclude=args.exclude or args.exclude_regex)


def _method_config(args: argparse.Namespace) -> MethodConfig:
    if args.method == "nm":
        if args.sparsity is not None:
            raise SparsityConfigError("--sparsity does not apply to --method nm: the N:M --pattern sets it")
        n, m = parse_pattern(args.pattern or "2:4")
        return NMConfig(n=n, m=m, skip_incompatible=args.skip_incompatible)
    if args.pattern is not None:
        raise SparsityConfigError(f"--pattern applies to --method nm only, not {args.method!r}")
    sparsity = 0.5 if args.sparsity is None else args.sparsity
    if args.method == "random":
        return RandomConfig(sparsity=sparsity, scope=args.scope, seed=args.seed)
    return OMPConfig(sparsity=sparsity, scope=args.scope)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="es-plugins",
        description="Essential sparsity for pre-trained transformers: prune and inspect checkpoints.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    prune = sub.add_parser("prune", help="prune a local HF checkpoint and write a plain sparse one")
    prune.add_argument("model", help="local HF checkpoint folder, or packaged:minilm")
    prune.add_argument("out_dir", help="output folder (written only if everything succeeds)")
    prune.add_argument("--method", default="omp", choices=method_names())
    prune.add_argument("--sparsity", type=float, help="fraction in [0, 1) to prune (omp, random; default 0.5)")
    prune.add_argument("--scope", default="global", choices=("global", "layer"))
    prune.add_argument("--pattern", help="N:M pattern for --method nm (default 2:4)")
    prune.add_argument("--seed", type=int, default=0, help="seed for --method random")
    prune.add_argument("--skip-incompatible", action="store_true",
                       help="N:M: leave layers whose input dim is not divisible by M dense (warning) instead of failing")
    prune.add_argument("--dtype", default="auto", choices=tuple(DTYPES))
    prune.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    prune.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_target_args(prune)

    inspect = sub.add_parser("inspect", help="report sparsity and N:M compliance of a HF checkpoint")
    inspect.add_argument("path", help="local HF checkpoint folder, or packaged:minilm")
    inspect.add_argument("--pattern", default="2:4", help="N:M pattern to check compliance for (default 2:4)")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_target_args(inspect)
    return parser


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_prune(args: argparse.Namespace) -> int:
    plan = SparsityPlan(_method_config(args), _target_spec(args))  # validate before any I/O
    src = resolve_model_path(args.model)
    _log(f"loading {src}")
    model = load_hf_model(src, dtype=args.dtype)
    started = time.perf_counter()
    state = sparsify_(model, plan, show_progress=True)
    elapsed = time.perf_counter() - started
    targets = resolve_targets(model, plan.targets)
    pattern = (plan.method.n, plan.method.m) if isinstance(plan.method, NMConfig) else None
    report = build_report(model, targets, pattern, meta={
        "source": str(src), "plan": plan.to_dict(), "prune_seconds": round(elapsed, 3)})

    def write(tmp: Path) -> None:
        save_hf_checkpoint(model, src, tmp)
        state.save(tmp / MASKS_FILENAME)
        (tmp / REPORT_FILENAME).write_text(report.to_json())

    out = write_checkpoint_atomically(args.out_dir, write, overwrite=args.overwrite)
    print(report.to_json() if args.json else report.format_table())
    _log(f"wrote {out} (pruned in {elapsed:.2f}s; masks: {MASKS_FILENAME}, report: {REPORT_FILENAME})")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    pattern = parse_pattern(args.pattern)
    NMConfig(n=pattern[0], m=pattern[1])  # validates the pattern
    spec = _target_spec(args)
    path = resolve_model_path(args.path)
    model = load_hf_model(path)
    targets = resolve_targets(model, spec)
    meta: dict = {"source": str(path)}
    masks_file = path / MASKS_FILENAME
    if masks_file.is_file():
        state = SparsityState.load(masks_file, model)
        weights = dict(model.named_parameters())
        regrown = sum(int((weights[n].detach()[~m] != 0).sum()) for n, m in state.masks.items())
        meta["masks_file"] = {"layers": len(state.masks), "sparsity": state.sparsity,
                              "weights_nonzero_where_masked": regrown}
    report = build_report(model, targets, pattern, meta=meta)
    print(report.to_json() if args.json else report.format_table())
    if "masks_file" in meta and not args.json:
        info = meta["masks_file"]
        print(f"masks file: {info['layers']} layers, {info['sparsity']:.2%} pruned, "
              f"{info['weights_nonzero_where_masked']} weights non-zero where masked")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return {"prune": cmd_prune, "inspect": cmd_inspect}[args.command](args)
    except (ValueError, MaskMismatchError) as exc:
        parser.exit(2, f"es-plugins {args.command}: error: {exc}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
