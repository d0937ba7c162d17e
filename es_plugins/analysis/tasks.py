"""Sweep tasks: how one sparsity level of one checkpoint is evaluated.

A task owns the loaded model and data and exposes ``evaluate(sparsity, seed)`` (a float, or a
:class:`~.noise.Measurement` with the per-unit evidence the sweep bootstraps) for
:func:`run_sweep`, plus ``layer_sparsity(sparsity)`` for the report. The perplexity task is
framework-free (the model is loaded once and its targeted weights restored between levels);
the fine-tune task drives the Trainer, so it is a plugin (:func:`sweep_task`).
"""

from __future__ import annotations

from importlib.metadata import distributions
from pathlib import Path
from typing import Any, Sequence

import torch

from ..engines.device import resolve_device
from ..engines.sparsify import sparsify_
from ..errors import SparsityConfigError
from ..io.checkpoint import load_hf_model, load_tokenizer
from ..io.datasets import calibration_blocks, token_blocks
from ..masks.targets import TargetSpec, resolve_targets
from ..methods import MethodConfig, compute_masks, config_from_dict, entry_for, method_names
from ..methods.plan import SparsityPlan
from .evaluation import perplexity_measurement
from .noise import Measurement

# Sweep tasks that need a training framework are plugins: an adapter package declares them
# under this entry-point group (es-plugins' own fine-tune task: es_plugins.integrations.hf_sweep),
# so this framework-free core never imports an adapter.
TASK_ENTRY_POINTS = "es_plugins.sweep_tasks"


def sweep_task(name: str) -> Any:
    """The sweep task class registered under ``name`` by an installed adapter."""
    # Every installed distribution, not the name-deduplicated view: a stale egg-info in the
    # working directory must not hide the installed package's entry points.
    found = [
        ep for dist in distributions() for ep in dist.entry_points if ep.group == TASK_ENTRY_POINTS and ep.name == name
    ]
    if not found:
        raise ImportError(
            f"no sweep task {name!r} is installed; the fine-tune task needs the hf extra (pip install 'es-plugins[hf]')"
        )
    return found[0].load()


def sweepable_methods(calibrated: bool) -> tuple[str, ...]:
    """Methods whose sparsity can be swept (N:M fixes it); calibrated ones only if asked."""
    return tuple(
        name
        for name in method_names()
        if "sparsity" in entry_for(name).options and (calibrated or not entry_for(name).calibrated)
    )


def method_at(method: str, sparsity: float, scope: str, seed: int, allow_calibrated: bool = False) -> MethodConfig:
    """The method config for one sweep level: the options the method takes, from the registry."""
    allowed = sweepable_methods(allow_calibrated)
    if method not in allowed:
        raise SparsityConfigError(
            f"sweep method must be one of {', '.join(allowed)} (N:M fixes the sparsity"
            f"{'' if allow_calibrated else '; calibrated methods sweep the perplexity task'}); got {method!r}"
        )
    offered = {"sparsity": sparsity, "scope": scope, "seed": seed}
    return config_from_dict({"method": method, **{k: v for k, v in offered.items() if k in entry_for(method).options}})


def layer_sparsity_at(
    model, method: str, sparsity: float, scope: str, targets: TargetSpec | None = None
) -> dict[str, float]:
    """Per-layer sparsity the method gives at ``sparsity`` (computed on a copy of the masks only)."""
    resolved = resolve_targets(model, targets)
    masks = compute_masks(resolved, method_at(method, sparsity, scope, 0))
    return {name: float((~mask).float().mean()) for name, mask in masks.items()}


class PerplexityTask:
    """Zero-shot perplexity of a causal LM on local text after pruning (the paper's LLM protocol).

    The model, its evaluation and its calibration run on ``device`` (default: cuda when
    available, else the CPU).

    Raises:
        SparsityConfigError: ``seq_len`` beyond the model's maximum, or a model without logits.
    """

    def __init__(
        self,
        model_dir: str | Path,
        texts: Sequence[str],
        num_tokens: int = 4096,
        seq_len: int = 512,
        method: str = "omp",
        scope: str = "global",
        targets: TargetSpec | None = None,
        batch_size: int = 2,
        calib_texts: Sequence[str] | None = None,
        calib_samples: int = 32,
        device: str | torch.device | None = None,
    ):
        calibrated = entry_for(method_at(method, 0.0, scope, 0, allow_calibrated=True)).calibrated  # validates early
        if calibrated and not calib_texts:
            raise SparsityConfigError(f"sweeping {method!r} needs calibration text (--calib)")
        self.device = resolve_device(device)  # default: cuda when available; checked before the load
        self.model = load_hf_model(model_dir, dtype="float32").to(self.device)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and seq_len > limit:
            raise SparsityConfigError(f"seq_len={seq_len} is larger than the model's maximum ({limit})")
        tokenizer = load_tokenizer(model_dir, "the perplexity task")
        self.blocks = token_blocks(tokenizer, texts, num_tokens, seq_len)
        self.calibration = (
            calibration_blocks(tokenizer, calib_texts, calib_samples, seq_len, seed=0)
            if calibrated and calib_texts
            else None
        )
        self.method, self.scope, self.targets, self.batch_size = method, scope, targets, batch_size
        # The unpruned targets wait in CPU memory: a second copy on the GPU would halve the largest model.
        self._original = {t.name: t.param.detach().to("cpu", copy=True) for t in resolve_targets(self.model, targets)}

    @torch.no_grad()
    def restore(self) -> None:
        params = dict(self.model.named_parameters())
        for name, value in self._original.items():
            params[name].copy_(value)

    def evaluate(self, sparsity: float, seed: int) -> Measurement:
        """Perplexity at ``sparsity``, with its per-chunk evidence for the sweep's bootstrap."""
        self.restore()
        if sparsity > 0:
            plan = SparsityPlan(
                method_at(self.method, sparsity, self.scope, seed, allow_calibrated=True), self.targets or TargetSpec()
            )
            sparsify_(self.model, plan, calibration=self.calibration)
        try:
            return perplexity_measurement(self.model, self.blocks, self.batch_size)
        finally:
            self.restore()

    def layer_sparsity(self, sparsity: float) -> dict[str, float]:
        self.restore()
        if self.calibration is None:
            return layer_sparsity_at(self.model, self.method, sparsity, self.scope, self.targets)
        plan = SparsityPlan(
            method_at(self.method, sparsity, self.scope, 0, allow_calibrated=True), self.targets or TargetSpec()
        )
        state = sparsify_(self.model, plan, calibration=self.calibration)
        self.restore()
        return {name: float((~mask).float().mean()) for name, mask in state.masks.items()}
