"""``sweep``: the essential-sparsity sweep of ``es-plugins sweep`` as a library call.

:class:`SweepOptions` holds every option of the command (the CLI builds it from its flags,
field for field); :func:`sweep` runs the points on the chosen backend, refines the knee,
writes the report folder and returns the results. A sweep resumes in its own folder, and
``--shard``/``--merge`` split its points across independent jobs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from safetensors.torch import load_file

from ..analysis.backends import BACKENDS, LocalBackend, PointRecord, RayBackend, TaskSpec, require_ray
from ..analysis.similarity import mask_similarity
from ..analysis.sweep import DEFAULT_LEVELS, SweepConfig, SweepResult, run_sweep
from ..analysis.sweep_report import write_sweep_report
from ..analysis.tasks import PerplexityTask, method_at, sweep_task, sweepable_methods
from ..engines.device import resolve_device
from ..errors import SparsityConfigError, check_choice, option_flag
from ..io.assets import resolve_model_path
from ..io.checkpoint import check_checkpoint_dir
from ..io.datasets import bbc_news, load_labeled, resolve_texts, rotten_tomatoes
from ..io.output import atomic_write_text, check_output, write_marker
from ..masks.targets import TargetSpec, resolve_targets
from ..methods import compute_masks, is_calibrated

logger = logging.getLogger("es_plugins")

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
    "lm_levels": (0.1, 0.3, 0.5, 0.7, 0.9),  # half the full grid; refinement then locates the edge
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
    "lm_levels": DEFAULT_LEVELS,
    "resolution": 0.025,
    "lm_resolution": 0.025,
}
SWEEP_ARGS_FILE = "sweep_args.json"
DEFAULT_OUTPUT = "runs/essential-sparsity"
# How a sweep runs, not what it measures: left out of sweep_args.json, this run's own for --merge.
RUN_ONLY = ("backend", "ray_address", "cpus_per_point", "gpus_per_point", "max_retries", "shard", "merge")
_POSITIVE = (
    "tokens",
    "eval_seq_len",
    "calib_samples",
    "train",
    "test",
    "epochs",
    "lr",
    "batch_size",
    "max_length",
)


@dataclass
class SweepOptions:
    """Every option of ``es-plugins sweep``, by the same names (``eval_seq_len`` is
    ``--eval-seq-len``). ``None`` means the preset's value (``quick`` or full)."""

    output: str = DEFAULT_OUTPUT
    model: Optional[str] = None
    task: Optional[str] = None
    quick: bool = False
    method: str = "omp"
    scope: str = "global"
    levels: Optional[list[float]] = None
    tolerance: float = 0.01
    tolerance_kind: str = "relative"
    resolution: Optional[float] = None
    seeds: list[int] = field(default_factory=lambda: [0])
    device: Optional[str] = None
    text: Optional[str] = None
    tokens: Optional[int] = None
    eval_seq_len: Optional[int] = None
    calib: Optional[str] = None
    calib_samples: int = 32
    data: Optional[str] = None
    text_column: str = "text"
    label_column: str = "label"
    train: Optional[int] = None
    test: Optional[int] = None
    epochs: Optional[float] = None
    lr: Optional[float] = None
    batch_size: int = 16
    max_length: int = 48
    bf16: bool = False
    fp16: bool = False
    include: Optional[list[str]] = None
    include_regex: Optional[str] = None
    exclude: Optional[list[str]] = None
    exclude_regex: Optional[str] = None
    backend: str = "local"
    ray_address: Optional[str] = None
    cpus_per_point: float = 1.0
    gpus_per_point: float = 0.0
    max_retries: int = 2
    shard: Optional[str] = None
    merge: Optional[str] = None

    def __post_init__(self) -> None:
        check_choice("method", self.method, sweepable_methods(calibrated=True))
        check_choice("scope", self.scope, ("global", "layer"))
        check_choice("tolerance_kind", self.tolerance_kind, ("relative", "absolute"))
        check_choice("backend", self.backend, BACKENDS)
        if self.task is not None:
            check_choice("task", self.task, ("perplexity", "finetune"))
        if self.bf16 and self.fp16:
            raise SparsityConfigError("give bf16 or fp16 (--bf16/--fp16), not both")
        for name in _POSITIVE:
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise SparsityConfigError(f"{option_flag(name)} must be > 0, got {value}")
        self.shard_index()  # a malformed shard fails before any work
        self.target_spec()

    def shard_index(self) -> tuple[int, int] | None:
        """``shard`` (``"I/N"``, 0 <= I < N) as a pair."""
        if self.shard is None:
            return None
        try:
            index, count = (int(v) for v in self.shard.split("/"))
        except ValueError:
            raise SparsityConfigError(f"--shard must be I/N (e.g. 0/4), got {self.shard!r}") from None
        if not 0 <= index < count:
            raise SparsityConfigError(f"--shard {self.shard}: I must be in [0, N), got I={index}, N={count}")
        return index, count

    def target_spec(self) -> TargetSpec:
        return TargetSpec.from_options(self.include, self.include_regex, self.exclude, self.exclude_regex)

    def settings(self) -> dict[str, Any]:
        """What the sweep measures (saved for ``merge``), without how it runs."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in RUN_ONLY}

    def merged(self) -> "SweepOptions":
        """``merge=FOLDER``: the settings the shards ran with, this run's backend options."""
        folder = Path(str(self.merge))
        saved = folder / SWEEP_ARGS_FILE
        if not saved.is_file():
            raise SparsityConfigError(
                f"--merge {self.merge}: no {SWEEP_ARGS_FILE} (not a folder that `sweep --shard` wrote)"
            )
        try:
            settings = json.loads(saved.read_text())
        except (OSError, ValueError) as exc:
            raise SparsityConfigError(f"--merge {self.merge}: {SWEEP_ARGS_FILE} is damaged ({exc})") from None
        if not isinstance(settings, dict):
            raise SparsityConfigError(f"--merge {self.merge}: {SWEEP_ARGS_FILE} is not a JSON object")
        known = {f.name for f in dataclasses.fields(self)} - set(RUN_ONLY)
        kept = {k: v for k, v in settings.items() if k in known}
        run = {k: getattr(self, k) for k in RUN_ONLY}
        return SweepOptions(**{**kept, **run, "output": str(folder), "shard": None, "merge": None})


@dataclass
class SweepRun:
    """The sweeps one call ran (one per model and task) and the summary it wrote."""

    results: list[tuple[str, SweepResult]]
    summary: Path | None
    command: str

    def table(self) -> list[str]:
        """The summary's table rows (markdown)."""

        rows = [
            "| run | metric | dense | essential sparsity [interval] | first failing | knee [interval] | noise "
            "| report |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, r in self.results:
            noisy = "tolerance below noise" if r.uncertainty and r.uncertainty.noisy else "ok"
            rows.append(
                f"| {name} | {r.config.metric} | {r.dense:.4g} | **{_percent(r.essential_sparsity)}**"
                f"{_interval(r, 'essential')} | {_percent(r.first_failing)} | "
                f"{_percent(r.knee)}{_interval(r, 'knee')} | {noisy} | [{name}/summary.md]({name}/summary.md) |"
            )
        return rows


def sweep(options: SweepOptions | None = None, *, command: str | None = None, **kwargs: Any) -> SweepRun:
    """Run the essential-sparsity sweep ``es-plugins sweep`` runs, with the same options
    (``sweep(model="path", task="perplexity", text="a.txt", output="runs/x")`` or a
    :class:`SweepOptions`). Without ``model``: both packaged models and data sets.

    Raises:
        SparsityConfigError: options that do not fit together, before any point runs.
        OutputPathError: ``output`` is not a sweep folder of ours (a sweep resumes only its own).
    """
    if options is None:
        options = SweepOptions(**kwargs)
    elif kwargs:
        options = dataclasses.replace(options, **kwargs)
    if options.merge:
        options = options.merged()
    if options.backend == "ray":
        require_ray()
    preset = QUICK if options.quick else FULL
    resolve_device(options.device, flag="--device")  # a missing GPU is an error before any work
    inputs = [resolve_model_path(options.model)] if options.model else []
    out = check_output(options.output, inputs=inputs, resume=True, flag="--output")  # resumes only its own folder
    command = command or f"es_plugins.sweep({options.output!r})"
    runner = _Runner(options, preset, out, command)
    if options.model is None:
        if options.task or options.text or options.data:
            raise SparsityConfigError("--task/--text/--data need --model (without it the packaged defaults run)")
        runner.packaged()
    else:
        runner.given_model()
    if options.shard is not None:
        return SweepRun(runner.results, None, command)
    run = SweepRun(runner.results, out / "summary.md", command)
    lines = ["# Essential sparsity", "", f"Command: `{command}`", "", *run.table()]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    return run


def _percent(value: float | None, missing: str = "–") -> str:
    """One format for every sparsity a sweep prints, in the summary and on the console."""
    return missing if value is None else f"{value:.1%}"


def _interval(result: SweepResult, which: str) -> str:
    """`` [10.0 %, 20.0 %]`` (the bootstrap interval of the essential sparsity or the knee), or ''."""
    u = result.uncertainty
    bounds = (u.essential_interval if which == "essential" else u.knee_interval) if u else None
    if u is None or bounds is None:
        return ""
    return f" [{_percent(bounds[0])}, {_percent(bounds[1])}, {u.confidence:.0%} interval]"


def model_label(spec: str) -> str:
    """A readable name for a model argument, for run folders and titles: ``packaged:minilm`` ->
    ``minilm``, ``org/name@rev`` -> ``name``, a folder -> its name (never a hub cache's hash)."""
    if spec.startswith("packaged:"):
        return spec.removeprefix("packaged:")
    path = Path(spec)
    if path.exists():
        return path.resolve().name
    return spec.split("@", 1)[0].rstrip("/").rsplit("/", 1)[-1]


class _Runner:
    """One call's sweeps: each model and task, its points, its report."""

    def __init__(self, options: SweepOptions, preset: dict, out: Path, command: str):
        self.options, self.preset, self.out, self.command = options, preset, out, command
        self.results: list[tuple[str, SweepResult]] = []

    def packaged(self) -> None:
        o = self.options
        self.perplexity(
            resolve_model_path("packaged:smollm2"),
            bbc_news("eval"),
            "smollm2-perplexity",
            f"SmolLM2-135M, BBC News perplexity, {o.method}",
            default_calib="packaged:bbc-calib",
        )
        if is_calibrated(o.method):
            logger.info(f"[minilm-finetune] skipped: {o.method} sweeps the perplexity task only")
            return
        texts, labels = rotten_tomatoes(seed=0)
        self.finetune(
            resolve_model_path("packaged:minilm"),
            (texts, labels, ["rotten", "fresh"]),
            "minilm-finetune",
            f"all-MiniLM-L6-v2, Rotten Tomatoes accuracy after fine-tuning, {o.method}",
        )

    def given_model(self) -> None:
        o = self.options
        model = resolve_model_path(str(o.model))
        check_checkpoint_dir(model)
        name = f"{model_label(str(o.model))}-{o.task}"
        if o.task == "perplexity":
            if not o.text:
                raise SparsityConfigError("--task perplexity needs --text PATH (a .txt file or a folder of them)")
            self.perplexity(
                model, resolve_texts(o.text, flag="--text"), name, f"{model_label(str(o.model))}, perplexity"
            )
        elif o.task == "finetune":
            if not o.data:
                raise SparsityConfigError("--task finetune needs --data PATH (CSV, JSON or a folder of class folders)")
            data = load_labeled(o.data, o.text_column, o.label_column)
            self.finetune(model, data, name, f"{model_label(str(o.model))}, accuracy")
        else:
            raise SparsityConfigError("--model needs --task perplexity or --task finetune")

    def config(self, metric: str, higher: bool, levels, resolution: float) -> SweepConfig:
        o = self.options
        return SweepConfig(
            levels=tuple(o.levels) if o.levels else tuple(levels),
            tolerance=o.tolerance,
            tolerance_kind=o.tolerance_kind,
            higher_is_better=higher,
            resolution=o.resolution or resolution,
            seeds=tuple(o.seeds),
            metric=metric,
        )

    def targets_identity(self) -> dict:
        """Target options in a sweep's identity only when given, so earlier sweeps still resume."""
        spec = self.options.target_spec()
        return {"targets": spec.to_dict()} if (spec.include or spec.exclude) else {}

    def perplexity(self, model: Path, texts, name: str, title: str, default_calib: str | None = None) -> None:
        o, preset = self.options, self.preset
        tokens, seq_len = o.tokens or preset["tokens"], o.eval_seq_len or preset["seq_len"]
        config = self.config(f"perplexity ({tokens} tokens)", False, preset["lm_levels"], preset["lm_resolution"])
        calib = (o.calib or default_calib) if is_calibrated(o.method) else None
        logger.info(f"[{name}] {model}")
        spec = TaskSpec(
            PerplexityTask,
            dict(
                model_dir=model,
                texts=list(texts),
                num_tokens=tokens,
                seq_len=seq_len,
                method=o.method,
                scope=o.scope,
                calib_texts=resolve_texts(calib) if calib else None,
                calib_samples=o.calib_samples,
                device=o.device,
                targets=o.target_spec(),
            ),
        )
        identity = {
            "task": "perplexity",
            "model": str(model),
            "tokens": tokens,
            "seq_len": seq_len,
            "method": o.method,
            "scope": o.scope,
            **({"calib": str(calib), "calib_samples": o.calib_samples} if calib else {}),
            **self.targets_identity(),
        }
        self.one(name, spec, config, title, identity)

    def finetune(self, model: Path, data, name: str, title: str) -> None:
        o, preset = self.options, self.preset
        texts, labels, names = data
        n_train, n_test = o.train or preset["train"], o.test or preset["test"]
        if n_train + n_test > len(texts):
            raise SparsityConfigError(
                f"--train {n_train} + --test {n_test} exceeds the {len(texts)} examples available"
            )
        train = (texts[:n_train], labels[:n_train])
        test = (texts[n_train : n_train + n_test], labels[n_train : n_train + n_test])
        config = self.config(f"accuracy ({n_test} test examples)", True, preset["ft_levels"], preset["resolution"])
        dense_weights = self.out / name / "dense_finetuned_targets.safetensors"
        epochs, lr = o.epochs or preset["epochs"], o.lr or preset["lr"]
        spec = TaskSpec(
            sweep_task("finetune"),
            dict(
                model_dir=model,
                train=train,
                test=test,
                num_labels=len(names),
                method=o.method,
                scope=o.scope,
                epochs=epochs,
                batch_size=o.batch_size,
                learning_rate=lr,
                max_length=o.max_length,
                keep_dense_weights=dense_weights,
                device=o.device,
                precision="bf16" if o.bf16 else "fp16" if o.fp16 else None,
                targets=o.target_spec(),
            ),
        )
        identity = {
            "task": "finetune",
            "model": str(model),
            "train": n_train,
            "test": n_test,
            "epochs": epochs,
            "lr": lr,
            "batch_size": o.batch_size,
            "max_length": o.max_length,
            "method": o.method,
            "scope": o.scope,
            **self.targets_identity(),
        }

        def omp_vs_one_imp_round(task, sparsity: float):
            """OMP of the pre-trained weights vs OMP of the fine-tuned dense weights (= the mask
            one round of IMP would choose) at the essential sparsity."""
            if not dense_weights.is_file():
                return None
            model_obj = task.load_model()
            targets = resolve_targets(model_obj)
            method = method_at("omp", sparsity, o.scope, 0)
            pretrained = compute_masks(targets, method)
            finetuned = load_file(str(dense_weights))
            for t in targets:
                t.param.data.copy_(finetuned[t.name])
            return mask_similarity(compute_masks(targets, method), pretrained)

        label = (
            "OMP of the pre-trained weights vs OMP of the fine-tuned dense weights — the mask one IMP round "
            "would choose — at the essential sparsity"
        )
        self.one(name, spec, config, title, identity, omp_vs_one_imp_round, label)

    def one(
        self,
        name: str,
        spec: TaskSpec,
        config: SweepConfig,
        title: str,
        identity: dict,
        similarity_fn: Callable | None = None,
        similarity_label: str = "",
    ) -> None:
        """One sweep: its points on the chosen backend, then (unless this is one shard of a
        job array) the report, for which this process builds the task once (layer sparsity,
        masks)."""
        o, out = self.options, self.out / name
        started = time.perf_counter()
        out.parent.mkdir(parents=True, exist_ok=True)  # the output folder, claimed once the inputs are valid
        write_marker(out.parent, "sweep")
        atomic_write_text(out.parent / SWEEP_ARGS_FILE, json.dumps(o.settings(), indent=1, sort_keys=True))
        shard = o.shard_index()
        task = spec.build() if o.backend == "local" else None  # validates before any point runs
        backend: LocalBackend | RayBackend = (
            LocalBackend(task.evaluate)
            if task is not None
            else RayBackend(spec, o.ray_address, o.cpus_per_point, o.gpus_per_point, o.max_retries)
        )
        if backend.slots > 1:
            logger.info(f"[{name}] {backend.name}: {backend.slots} points at a time")

        def progress(point: PointRecord) -> None:
            where = f"{point.worker}, {point.seconds:.1f}s" if point.error is None else f"FAILED: {point.error}"
            logger.info(
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
        self.results.append((name, result))
        if shard is not None:
            logger.info(
                f"[{name}] shard {shard[0]}/{shard[1]}: {result.evaluations} point(s) evaluated; when every shard "
                f"is done: es-plugins sweep --merge {out.parent}"
            )
            return
        for point in result.failed:
            logger.info(f"[{name}] point {point.sparsity:.2%} seed {point.seed} failed: {point.error}")
        at = result.essential_sparsity or 0.0
        task = task if task is not None else spec.build()
        layers = task.layer_sparsity(at) if at > 0 else None
        similarity = similarity_fn(task, at) if (similarity_fn and at > 0) else None
        noise = result.uncertainty.warning(config.metric) if result.uncertainty else None
        notes = [noise] if noise else []
        if result.failed:
            notes.append(f"{len(result.failed)} point(s) failed after their retries and count as failing levels")
        for note in notes:
            logger.info(f"[{name}] note: {note}")
        write_sweep_report(
            out,
            result,
            title,
            self.command,
            layers,
            similarity,
            meta={
                "seconds": round(time.perf_counter() - started, 1),
                **identity,
                "notes": notes,
                "backend": backend.name,
            },
            similarity_label=similarity_label,
        )
        logger.info(
            f"[{name}] essential sparsity {at:.1%}{_interval(result, 'essential')} (first failing "
            f"{_percent(result.first_failing, 'none')}), knee {_percent(result.knee, 'none')}"
            f"{_interval(result, 'knee')}; report: {out / 'summary.md'}"
        )


__all__ = ["FULL", "QUICK", "SweepOptions", "SweepRun", "sweep"]
