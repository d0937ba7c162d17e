"""Analysis commands of the ``es-plugins`` CLI: sweep, compare-masks, zeros."""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import sys
import time
from argparse import SUPPRESS
from pathlib import Path

from safetensors.torch import load_file

from .._cli_args import add_device_argument, add_target_args, deprecated_spelling, target_spec
from .._console import emit, log
from .._io import atomic_write_text
from ..assets import resolve_model_path
from ..checkpoint import check_checkpoint_dir, load_hf_model
from ..datasets import bbc_news, load_labeled, read_texts, resolve_texts, rotten_tomatoes
from ..device import resolve_device
from ..errors import SparsityConfigError
from ..methods import compute_masks, is_calibrated
from ..output import check_output, write_folder_atomically, write_marker
from ..state import MASKS_FILENAME, SparsityState
from ..targets import resolve_targets
from .backends import BACKENDS, LocalBackend, PointRecord, RayBackend, TaskSpec, require_ray
from .plots import plot_near_zero, plot_similarity
from .similarity import check_comparable, mask_similarity
from .sweep import DEFAULT_LEVELS, SweepConfig, SweepResult, run_sweep
from .sweep_report import write_sweep_report
from .tasks import PerplexityTask, method_at, sweep_task, sweepable_methods
from .zeros import near_zero_stats

# Presets measured on the 2-core machine: a MiniLM fine-tune of 1,000 sentences x 2 epochs
# (max length 48) takes ~45 s and reaches ~0.77-0.80 dense accuracy; 400 x 2 at lr 2e-4 ~27 s.
QUICK = {
    "tokens": 1024,
    "seq_len": 256,
    "train": 400,
    "test": 200,
    "epochs": 2.0,
    "lr": 2e-4,
    "ft_levels": (0.4, 0.8),
    "resolution": 0.2,
    "lm_resolution": 0.05,
}
FULL = {
    "tokens": 4096,
    "seq_len": 512,
    "train": 1000,
    "test": 2000,
    "epochs": 2.0,
    "lr": 1e-4,
    "ft_levels": DEFAULT_LEVELS,
    "resolution": 0.025,
    "lm_resolution": 0.025,
}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    sweep = sub.add_parser("sweep", help="essential-sparsity sweep with knee detection, report and plots")
    sweep.add_argument("--model", help="local HF checkpoint (default: both packaged models and data sets)")
    sweep.add_argument("--task", choices=("perplexity", "finetune"), help="how a level is evaluated (with --model)")
    sweep.add_argument("--quick", action="store_true", help="smaller data and grid (~2 minutes for the defaults)")
    sweep.add_argument("--output", default="runs/essential-sparsity", help="report folder (resumes if it exists)")
    sweep.add_argument(
        "--method",
        default="omp",
        choices=sweepable_methods(calibrated=True),
        help="calibrated methods (wanda, sparsegpt): perplexity task only, with --calib",
    )
    sweep.add_argument("--scope", default="global", choices=("global", "layer"))
    sweep.add_argument("--levels", type=float, nargs="+", help="sparsity grid (default 0.0 ... 0.9)")
    sweep.add_argument("--tolerance", type=float, default=0.01, help="allowed degradation (default 0.01 = 1 %%)")
    sweep.add_argument("--tolerance-kind", default="relative", choices=("relative", "absolute"))
    sweep.add_argument("--resolution", type=float, help="locate the essential sparsity to this (default 0.025)")
    sweep.add_argument("--seeds", type=int, nargs="+", default=[0], help="evaluation seeds (mean and spread)")
    add_device_argument(
        sweep,
        "where each level is pruned and evaluated (default: cuda when available, else cpu; e.g. cuda:1). "
        "Fine-tunes run on the Trainer's device: cpu with --device cpu, else the GPUs it sees",
    )
    lm = sweep.add_argument_group("perplexity task")
    lm.add_argument("--text", help="a .txt file or a folder of .txt files")
    lm.add_argument("--tokens", type=int, help="evaluation tokens (default 4096; quick 1024)")
    lm.add_argument("--eval-seq-len", type=int, help="tokens per evaluation window (default 512; quick 256)")
    lm.add_argument(
        "--seq-len", dest="eval_seq_len", type=int, action=deprecated_spelling("--eval-seq-len"), help=SUPPRESS
    )
    lm.add_argument(
        "--calib", help="calibration text for wanda/sparsegpt (default for the packaged run: packaged:bbc-calib)"
    )
    lm.add_argument("--calib-samples", type=int, default=32, help="calibration sequences (default 32)")
    ft = sweep.add_argument_group("fine-tune task")
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

    add_target_args(sweep)
    scale = sweep.add_argument_group("scale-out (a Ray cluster, or independent shards of a job array)")
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

    compare = sub.add_parser("compare-masks", help="cosine / IoU / Hamming similarity of two mask sets")
    compare.add_argument("a", help="masks file, or a folder holding sparsity_masks.safetensors")
    compare.add_argument("b")
    compare.add_argument("--json", action="store_true")
    compare.add_argument("--output", help="also write JSON and a per-layer plot into this new folder")
    compare.add_argument("--overwrite", action="store_true", help="replace an --output folder es-plugins wrote before")

    zeros = sub.add_parser("zeros", help="near-zero weight statistics over one or more checkpoints")
    zeros.add_argument("checkpoints", nargs="+", help="HF checkpoint folders (or packaged:NAME)")
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


# --------------------------------------------------------------------- sweep
def _sweep_one(
    args: argparse.Namespace,
    name: str,
    spec: TaskSpec,
    config: SweepConfig,
    out: Path,
    title: str,
    command: str,
    identity: dict,
    similarity_fn=None,
    notes_fn=None,
    similarity_label: str = "",
) -> SweepResult:
    """One sweep: its points on the chosen backend, then (unless this is one shard of a job
    array) the report, for which this process builds the task once (layer sparsity, masks)."""
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)  # the --output folder, claimed once the inputs are valid
    write_marker(out.parent, "sweep")
    settings = {k: v for k, v in vars(args).items() if k not in _RUN_ONLY}
    atomic_write_text(out.parent / SWEEP_ARGS_FILE, json.dumps(settings, indent=1, sort_keys=True))  # for --merge
    shard = _parse_shard(args.shard)
    task = spec.build() if args.backend == "local" else None  # validates before any point runs
    backend: LocalBackend | RayBackend = (
        LocalBackend(task.evaluate)
        if task is not None
        else RayBackend(spec, args.ray_address, args.cpus_per_point, args.gpus_per_point, args.max_retries)
    )
    if backend.slots > 1:
        log(f"[{name}] {backend.name}: {backend.slots} points at a time")

    def progress(point: PointRecord) -> None:
        where = f"{point.worker}, {point.seconds:.1f}s" if point.error is None else f"FAILED: {point.error}"
        log(
            f"[{name}] sparsity {point.sparsity:6.2%} seed {point.seed}: {config.metric} = {point.value:.4g}"
            f"{f' (refinement round {point.round})' if point.refined else ''}  ({where})"
            f"  [{time.perf_counter() - started:.0f}s]"
        )

    def my_share(points: list) -> list:
        return [p for i, p in enumerate(points) if shard is None or i % shard[1] == shard[0]]

    try:
        result = run_sweep(
            spec,
            config,
            out / "evaluations.json",
            identity,
            backend=backend,
            on_point=progress,
            points=my_share,
            refine=shard is None,
        )
    finally:
        backend.close()
    if shard is not None:
        log(
            f"[{name}] shard {shard[0]}/{shard[1]}: {result.evaluations} point(s) evaluated; when every shard is "
            f"done: es-plugins sweep --merge {out.parent}"
        )
        return result
    for point in result.failed:
        log(f"[{name}] point {point.sparsity:.2%} seed {point.seed} failed: {point.error}")
    at = result.essential_sparsity or 0.0
    task = task if task is not None else spec.build()
    layers = task.layer_sparsity(at) if at > 0 else None
    similarity = similarity_fn(task, at) if (similarity_fn and at > 0) else None
    notes = notes_fn(result) if notes_fn else []
    if result.failed:
        notes.append(f"{len(result.failed)} point(s) failed after their retries and count as failing levels")
    for note in notes:
        log(f"[{name}] note: {note}")
    write_sweep_report(
        out,
        result,
        title,
        command,
        layers,
        similarity,
        meta={"seconds": round(time.perf_counter() - started, 1), **identity, "notes": notes, "backend": backend.name},
        similarity_label=similarity_label,
    )
    log(
        f"[{name}] essential sparsity {at:.1%} (first failing {result.first_failing}), knee {result.knee}; "
        f"report: {out / 'summary.md'}"
    )
    return result


def _targets_identity(args: argparse.Namespace) -> dict:
    """Target flags in a sweep's identity only when given, so earlier sweeps still resume."""
    spec = target_spec(args)
    return {"targets": spec.to_dict()} if (spec.include or spec.exclude) else {}


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    """``--shard i/N`` with 0 <= i < N."""
    if text is None:
        return None
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise SparsityConfigError(f"--shard must be I/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise SparsityConfigError(f"--shard {text}: I must be in [0, N), got I={index}, N={count}")
    return index, count


def _sweep_config(args: argparse.Namespace, metric: str, higher: bool, levels, resolution: float) -> SweepConfig:
    return SweepConfig(
        levels=tuple(args.levels) if args.levels else tuple(levels),
        tolerance=args.tolerance,
        tolerance_kind=args.tolerance_kind,
        higher_is_better=higher,
        resolution=args.resolution or resolution,
        seeds=tuple(args.seeds),
        metric=metric,
    )


def _perplexity_sweep(args, preset, model, texts, name, title, out, command, default_calib=None) -> SweepResult:
    tokens, seq_len = args.tokens or preset["tokens"], args.eval_seq_len or preset["seq_len"]
    config = _sweep_config(args, f"perplexity ({tokens} tokens)", False, DEFAULT_LEVELS, preset["lm_resolution"])
    calib = (args.calib or default_calib) if is_calibrated(args.method) else None
    log(f"[{name}] {model}")
    spec = TaskSpec(
        PerplexityTask,
        dict(
            model_dir=model,
            texts=list(texts),
            num_tokens=tokens,
            seq_len=seq_len,
            method=args.method,
            scope=args.scope,
            calib_texts=resolve_texts(calib) if calib else None,
            calib_samples=args.calib_samples,
            device=args.device,
            targets=target_spec(args),
        ),
    )
    identity = {
        "task": "perplexity",
        "model": str(model),
        "tokens": tokens,
        "seq_len": seq_len,
        "method": args.method,
        "scope": args.scope,
        **({"calib": str(calib), "calib_samples": args.calib_samples} if calib else {}),
        **_targets_identity(args),
    }
    return _sweep_one(args, name, spec, config, out / name, title, command, identity)


def _finetune_sweep(args, preset, model, data, name, title, out, command) -> SweepResult:
    texts, labels, names = data
    n_train, n_test = args.train or preset["train"], args.test or preset["test"]
    if n_train + n_test > len(texts):
        raise SparsityConfigError(f"--train {n_train} + --test {n_test} exceeds the {len(texts)} examples available")
    train, test = (
        (texts[:n_train], labels[:n_train]),
        (texts[n_train : n_train + n_test], labels[n_train : n_train + n_test]),
    )
    config = _sweep_config(args, f"accuracy ({n_test} test examples)", True, preset["ft_levels"], preset["resolution"])
    dense_weights = out / name / "dense_finetuned_targets.safetensors"
    epochs, lr = args.epochs or preset["epochs"], args.lr or preset["lr"]
    spec = TaskSpec(
        sweep_task("finetune"),
        dict(
            model_dir=model,
            train=train,
            test=test,
            num_labels=len(names),
            method=args.method,
            scope=args.scope,
            epochs=epochs,
            batch_size=args.batch_size,
            learning_rate=lr,
            max_length=args.max_length,
            keep_dense_weights=dense_weights,
            device=args.device,
            precision="bf16" if args.bf16 else "fp16" if args.fp16 else None,
            targets=target_spec(args),
        ),
    )
    identity = {
        "task": "finetune",
        "model": str(model),
        "train": n_train,
        "test": n_test,
        "epochs": epochs,
        "lr": lr,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "method": args.method,
        "scope": args.scope,
        **_targets_identity(args),
    }

    def omp_vs_one_imp_round(task, sparsity: float):
        """OMP of the pre-trained weights vs OMP of the fine-tuned dense weights (= the mask
        one round of IMP would choose) at the essential sparsity."""
        if not dense_weights.is_file():
            return None
        model_obj = task.load_model()
        targets = resolve_targets(model_obj)
        method = method_at("omp", sparsity, args.scope, 0)
        pretrained = compute_masks(targets, method)
        finetuned = load_file(str(dense_weights))
        for t in targets:
            t.param.data.copy_(finetuned[t.name])
        return mask_similarity(compute_masks(targets, method), pretrained)

    def noise_notes(result: SweepResult) -> list[str]:
        """Flag a tolerance finer than the test set can resolve (binomial standard error)."""
        dense = result.dense
        se = math.sqrt(max(dense * (1 - dense), 0.0) / n_test)
        slack = config.tolerance * abs(dense) if config.tolerance_kind == "relative" else config.tolerance
        if slack >= 2 * se:
            return []
        return [
            f"the tolerance ({slack:.4f} accuracy) is below twice the test set's standard error "
            f"({se:.4f} for {n_test} examples): with {len(config.seeds)} seed(s) the essential sparsity is "
            "within evaluation noise; the knee is the steadier number. Add --seeds, a larger --test, "
            "or a wider --tolerance."
        ]

    label = (
        "OMP of the pre-trained weights vs OMP of the fine-tuned dense weights — the mask one IMP round "
        "would choose — at the essential sparsity"
    )
    return _sweep_one(
        args, name, spec, config, out / name, title, command, identity, omp_vs_one_imp_round, noise_notes, label
    )


_POSITIVE = {
    "tokens": "--tokens",
    "eval_seq_len": "--eval-seq-len",
    "calib_samples": "--calib-samples",
    "train": "--train",
    "test": "--test",
    "epochs": "--epochs",
    "lr": "--lr",
    "batch_size": "--batch-size",
    "max_length": "--max-length",
}


def _check_positive(args: argparse.Namespace) -> None:
    """Numeric options must be > 0: a negative epoch count or batch size is a typo, not a request."""
    for attr, flag in _POSITIVE.items():
        value = getattr(args, attr, None)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise SparsityConfigError(f"{flag} must be > 0, got {value}")


SWEEP_ARGS_FILE = "sweep_args.json"
_RUN_ONLY = ("backend", "ray_address", "cpus_per_point", "gpus_per_point", "max_retries", "shard", "merge")


def _merged_args(args: argparse.Namespace) -> argparse.Namespace:
    """``--merge FOLDER``: the settings the shards ran with, this run's backend options."""
    folder = Path(args.merge)
    saved = folder / SWEEP_ARGS_FILE
    if not saved.is_file():
        raise SparsityConfigError(
            f"--merge {args.merge}: no {SWEEP_ARGS_FILE} (not a folder that `sweep --shard` wrote)"
        )
    try:
        settings = json.loads(saved.read_text())
    except (OSError, ValueError) as exc:
        raise SparsityConfigError(f"--merge {args.merge}: {SWEEP_ARGS_FILE} is damaged ({exc})") from None
    merged = argparse.Namespace(**{**settings, **{k: getattr(args, k) for k in _RUN_ONLY}})
    merged.output, merged.shard, merged.merge = str(folder), None, None
    return merged


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.merge:
        args = _merged_args(args)
    _parse_shard(args.shard)  # a malformed --shard fails before any work
    if args.backend == "ray":
        require_ray()
    preset = QUICK if args.quick else FULL
    _check_positive(args)
    resolve_device(args.device, flag="--device")  # a missing GPU is an error before any work
    inputs = [resolve_model_path(args.model)] if args.model else []
    out = check_output(args.output, inputs=inputs, resume=True, flag="--output")  # resumes only its own folder
    command = "es-plugins " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    results: list[tuple[str, SweepResult]] = []
    if args.model is None:
        if args.task or args.text or args.data:
            raise SparsityConfigError("--task/--text/--data need --model (without it the packaged defaults run)")
        texts, labels = rotten_tomatoes(seed=0)
        results.append(
            (
                "smollm2-perplexity",
                _perplexity_sweep(
                    args,
                    preset,
                    resolve_model_path("packaged:smollm2"),
                    bbc_news("eval"),
                    "smollm2-perplexity",
                    f"SmolLM2-135M, BBC News perplexity, {args.method}",
                    out,
                    command,
                    default_calib="packaged:bbc-calib",
                ),
            )
        )
        if not is_calibrated(args.method):
            results.append(
                (
                    "minilm-finetune",
                    _finetune_sweep(
                        args,
                        preset,
                        resolve_model_path("packaged:minilm"),
                        (texts, labels, ["rotten", "fresh"]),
                        "minilm-finetune",
                        f"all-MiniLM-L6-v2, Rotten Tomatoes accuracy after fine-tuning, {args.method}",
                        out,
                        command,
                    ),
                )
            )
        else:
            log(f"[minilm-finetune] skipped: {args.method} sweeps the perplexity task only")
    else:
        model = resolve_model_path(args.model)
        check_checkpoint_dir(model)
        name = f"{model.name}-{args.task}"
        if args.task == "perplexity":
            if not args.text:
                raise SparsityConfigError("--task perplexity needs --text PATH (a .txt file or a folder of them)")
            results.append(
                (
                    name,
                    _perplexity_sweep(
                        args, preset, model, read_texts(args.text), name, f"{model.name}, perplexity", out, command
                    ),
                )
            )
        elif args.task == "finetune":
            if not args.data:
                raise SparsityConfigError("--task finetune needs --data PATH (CSV, JSON or a folder of class folders)")
            data = load_labeled(args.data, args.text_column, args.label_column)
            results.append(
                (name, _finetune_sweep(args, preset, model, data, name, f"{model.name}, accuracy", out, command))
            )
        else:
            raise SparsityConfigError("--model needs --task perplexity or --task finetune")
    if args.shard is not None:
        return 0
    lines = [
        "# Essential sparsity",
        "",
        f"Command: `{command}`",
        "",
        "| run | metric | dense | essential sparsity | first failing | knee | report |",
        "|---|---|---|---|---|---|---|",
    ]

    def fmt(x: float | None) -> str:
        return "–" if x is None else f"{x:.1%}"

    for name, r in results:
        lines.append(
            f"| {name} | {r.config.metric} | {r.dense:.4g} | **{fmt(r.essential_sparsity)}** | "
            f"{fmt(r.first_failing)} | {fmt(r.knee)} | [{name}/summary.md]({name}/summary.md) |"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    emit("\n".join(lines[4:]))
    emit(f"\nreport: {out.resolve() / 'summary.md'}")
    return 0


# --------------------------------------------------------------------- compare-masks
def _load_masks(path: str) -> SparsityState:
    p = Path(path)
    return SparsityState.load(p / MASKS_FILENAME if p.is_dir() else p)


def cmd_compare_masks(args: argparse.Namespace) -> int:
    if args.output:
        check_output(args.output, inputs=[args.a, args.b], overwrite=args.overwrite, flag="--output")
    a, b = _load_masks(args.a).masks, _load_masks(args.b).masks
    check_comparable(a, b)
    similarity = mask_similarity(a, b)
    emit(json.dumps(similarity.to_dict(), indent=2) if args.json else similarity.format_table())
    if args.output:

        def write(out: Path) -> None:
            (out / "mask_similarity.json").write_text(json.dumps(similarity.to_dict(), indent=2))
            plot_similarity(similarity, out / "mask_similarity.png", f"{Path(args.a).name} vs {Path(args.b).name}")

        write_folder_atomically(
            args.output,
            write,
            inputs=[args.a, args.b],
            overwrite=args.overwrite,
            command="compare-masks",
            flag="--output",
        )
    return 0


# --------------------------------------------------------------------- zeros
def cmd_zeros(args: argparse.Namespace) -> int:
    sources = [resolve_model_path(spec) for spec in args.checkpoints]
    if args.output:
        check_output(args.output, inputs=sources, overwrite=args.overwrite, flag="--output")
    stats = {}
    for spec, source in zip(args.checkpoints, sources):
        model = load_hf_model(source)
        masks = None
        if args.exclude_masked:
            if not (source / MASKS_FILENAME).is_file():
                raise SparsityConfigError(f"--exclude-masked: {spec} has no {MASKS_FILENAME}")
            masks = SparsityState.load(source / MASKS_FILENAME, model).masks
        stats[spec] = near_zero_stats(resolve_targets(model), args.threshold, args.mode, masks)
    data = {spec: s.to_dict() for spec, s in stats.items()}
    if args.json:
        emit(json.dumps(data, indent=2))
    else:
        unit = "x mean|w| of the layer" if args.mode == "relative" else "absolute"
        emit(f"near-zero weights: |w| < {args.threshold:g} ({unit})")
        for spec, s in stats.items():
            emit(f"  {s.overall:8.3%}  {spec}  ({len(s.layers)} targeted layers)")
    if args.output:

        def write(out: Path) -> None:
            (out / "near_zero.json").write_text(json.dumps(data, indent=2))
            with open(out / "near_zero.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["checkpoint", "layer", "fraction"])
                for spec, s in stats.items():
                    writer.writerow([spec, "overall", s.overall])
                    writer.writerows([spec, name, frac] for name, frac in s.fractions().items())
            plot_near_zero(
                {spec: s.overall for spec, s in stats.items()},
                out / "near_zero.png",
                f"near-zero weights (|w| < {args.threshold:g}, {args.mode})",
            )

        write_folder_atomically(
            args.output, write, inputs=sources, overwrite=args.overwrite, command="zeros", flag="--output"
        )
    return 0


COMMANDS = {"sweep": cmd_sweep, "compare-masks": cmd_compare_masks, "zeros": cmd_zeros}
