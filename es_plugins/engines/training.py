"""Sparsifier: the whole surface a framework adapter may call.

An adapter translates its framework's events into ``setup`` (train begin), ``step`` (step
begin), ``bind_optimizer`` (a new optimizer), ``metrics`` (logging), ``state_dict`` /
``load_state_dict`` (checkpoints) and ``finalize`` (train end). Enforcement itself runs in
optimizer step hooks, so adapters never need to call anything per optimizer step.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import SparsityConfigError
from ..io.artifacts import save_with_sparsity_files
from ..masks.naming import canonical_name
from ..masks.state import EnforcementHandle, SparsityState
from ..masks.targets import Target, TargetSpec, resolve_targets
from ..methods import MethodConfig, config_from_dict, entry_for, is_calibrated, method_names
from ..methods.plan import SparsityPlan, make_plan
from ..methods.schedules import CubicSchedule
from .distributed import assert_identical_across_ranks
from .sparsify import sparsify_

logger = logging.getLogger("es_plugins")


class Sparsifier:
    """Prune a model according to a plan and keep it pruned through training.

    Args:
        plan: method + targets; a bare method config gets default targets, a method name
            takes its options as keywords (``Sparsifier("omp", sparsity=0.4)``).
        targets: target selection when ``plan`` is a config or a name.
        schedule: ``None`` for one-shot pruning at ``setup`` (the paper's protocol), or a
            :class:`CubicSchedule` for gradual pruning (unstructured methods only).
        mask_gradients: also zero gradients of pruned weights before each step, so the
            optimizer's moment estimates stay zero for them.
        state: fixed masks to enforce instead of computing new ones (lottery-ticket
            rounds, resumed runs).
        calibration: token ids ``[samples, seq_len]`` for Wanda / SparseGPT plans, which
            prune block by block from activations at ``setup``.
        keep_saved_masks: when resuming from a checkpoint whose masks were made with another
            plan (say sparsity 0.4 while this run asks for 0.6), continue with the saved masks
            instead of failing. By default that mismatch is an error naming both settings.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from es_plugins import OMPConfig, Sparsifier
        >>> model = nn.Sequential(nn.Linear(8, 8))
        >>> sparsifier = Sparsifier(OMPConfig(0.5))
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> state = sparsifier.setup(model, optimizer)
        >>> round(state.sparsity, 2)
        0.5
    """

    def __init__(
        self,
        plan: SparsityPlan | MethodConfig | str | None = None,
        *,
        targets: TargetSpec | None = None,
        schedule: CubicSchedule | None = None,
        mask_gradients: bool = True,
        state: SparsityState | None = None,
        calibration: torch.Tensor | None = None,
        keep_saved_masks: bool = False,
        **options: Any,
    ):
        if plan is not None:
            plan = make_plan(plan, targets, **options)
        elif targets is not None or options:
            raise SparsityConfigError("targets and method options need a plan (a method name or config)")
        if plan is None and state is None:
            raise SparsityConfigError("give a plan (what to prune) or a state (fixed masks to enforce)")
        needs_calibration = plan is not None and is_calibrated(plan.method)
        if plan is not None and needs_calibration and calibration is None and state is None:
            raise SparsityConfigError(f"method {plan.method.name!r} needs calibration=<token ids [samples, seq_len]>")
        if needs_calibration and schedule is not None:
            raise SparsityConfigError(
                "a gradual schedule needs an unstructured magnitude/random method, not a calibrated one"
            )
        if schedule is not None:
            if not isinstance(schedule, CubicSchedule):
                raise SparsityConfigError(f"schedule must be a CubicSchedule or None, got {schedule!r}")
            schedulable = [name for name in method_names() if entry_for(name).schedulable]
            if plan is None or not entry_for(plan.method).schedulable:
                raise SparsityConfigError(
                    f"a gradual schedule needs an unstructured method ({' or '.join(schedulable)})"
                )
            schedule.sparsity_at(schedule.end_step, plan.method.target_sparsity)  # validates the ramp
        self.plan = plan
        self.calibration = calibration
        self.schedule = schedule
        self.mask_gradients = mask_gradients
        self.keep_saved_masks = bool(keep_saved_masks)
        self.state: SparsityState | None = state
        self.level: float = 0.0
        self._model: nn.Module | None = None
        self._targets: list[Target] = []
        self._optimizer: torch.optim.Optimizer | None = None
        self._handle: EnforcementHandle | None = None

    @property
    def is_setup(self) -> bool:
        """Whether :meth:`setup` has bound a model (adapters whose framework restores state
        before or after setup ask this instead of reading internals)."""
        return self._model is not None

    # ----------------------------------------------------------------- lifecycle
    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, step: int = 0) -> SparsityState:
        """Prune (or apply the given/restored masks) and start enforcing on ``optimizer``."""
        self._model = model
        if self.plan is not None:
            self._targets = resolve_targets(model, self.plan.targets)
        if self.state is not None:
            self._reapply()
        else:
            self._prune_to(self._level_at(step))
        if optimizer is not None:
            self.bind_optimizer(optimizer)
        _, state = self._bound()
        replicated = not state.meta.get("sharded", False)  # FSDP masks differ per rank by design
        if replicated and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            assert_identical_across_ranks(state)  # DDP: every rank must enforce the same masks
        return state

    def check_schedule_fits(self, max_steps: int) -> None:
        """Fail before any step when a gradual schedule ends after training does
        (``max_steps`` <= 0 means unknown, and passes)."""
        if self.schedule is not None and 0 < max_steps < self.schedule.end_step:
            raise SparsityConfigError(
                f"schedule end_step={self.schedule.end_step} is beyond training (max_steps={max_steps})"
            )

    def save_masks(self, path: str | Path, **meta: Any) -> Path:
        """Write the masks (and ``meta`` such as the global step) beside a checkpoint."""
        _, state = self._bound()
        state.meta.update(meta)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        state.save(target)
        return target

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Enforce on ``optimizer`` (detaching from any previous one)."""
        model, state = self._bound()
        if self._handle is not None:
            self._handle.remove()
        self._optimizer = optimizer
        self._handle = state.attach(model, optimizer, mask_gradients=self.mask_gradients)

    def step(self, step: int) -> bool:
        """Advance a gradual schedule to ``step``; returns True if the masks changed."""
        self._bound()
        if self.schedule is None:
            return False
        level = self._level_at(step)
        if level <= self.level + 1e-12:
            return False
        self._prune_to(level)
        if self._optimizer is not None:
            self.bind_optimizer(self._optimizer)
        return True

    def mask_gradients_now(self) -> None:
        """Zero pruned gradients now; adapters whose framework runs backward inside the
        optimizer closure (Lightning) call this after backward instead of a step pre-hook."""
        model, state = self._bound()
        state.mask_gradients_(model)

    def enforce(self) -> None:
        """Zero every pruned weight now (e.g. after loading weights from elsewhere)."""
        model, state = self._bound()
        state.apply_(model)

    def finalize(self) -> nn.Module:
        """Apply masks a last time and remove every hook: a plain model is left.

        Its ``save_pretrained`` (and that of HF models inside it) then also writes the masks,
        the report and a model-card section beside the weights.
        """
        model, state = self._bound()
        state.finalize(model)
        self._handle = None
        save_with_sparsity_files(model, state)
        return model

    # ----------------------------------------------------------------- reporting
    def metrics(self, prefix: str = "sparsity", per_layer: bool = False) -> dict[str, float]:
        """Measured sparsity of the targeted weights (counted from the weights, not the
        masks, so a broken enforcement would show) and the scheduled level; with
        ``per_layer`` also ``{prefix}/layer/{name}`` for every target."""
        model, state = self._bound()
        params = dict(model.named_parameters())
        zeros = {n: int((params[n].detach() == 0).sum()) for n in state.masks}  # count_nonzero branches
        total = state.num_weights
        metrics = {f"{prefix}/targets": sum(zeros.values()) / total if total else 0.0, f"{prefix}/level": self.level}
        if per_layer:
            metrics.update(
                {f"{prefix}/layer/{canonical_name(n)}": zeros[n] / m.numel() for n, m in state.masks.items()}
            )
        return metrics

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return self._bound()[1].state_dict()

    def restore(self, state: SparsityState) -> None:
        """Resume from masks saved in a checkpoint (before or after ``setup``).

        Raises:
            SparsityConfigError: the masks were made with another plan than this run's,
                unless ``keep_saved_masks`` was set.
        """
        self._check_saved_plan(state)
        self.state = state
        if self._model is not None:
            self._reapply()

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Restore masks (bit-identical) and the schedule level; re-applies and re-binds."""
        self.restore(SparsityState.from_state_dict(data))

    def _check_saved_plan(self, state: SparsityState) -> None:
        saved = state.meta.get("plan")
        if self.plan is None or self.keep_saved_masks or not isinstance(saved, dict):
            return
        current = json.loads(json.dumps(self.plan.to_dict()))  # the form it takes in a saved file
        try:  # normalise spellings of older files (n=2, m=4 -> pattern "2:4")
            saved = {**saved, "method": config_from_dict(dict(saved.get("method") or {})).to_dict()}
        except (SparsityConfigError, TypeError):
            pass
        if saved.get("method") != current["method"] or saved.get("targets") != current["targets"]:

            def show(plan: dict) -> str:
                return json.dumps({"method": plan.get("method"), "targets": plan.get("targets")}, sort_keys=True)

            raise SparsityConfigError(
                f"the checkpoint's masks were made with {show(saved)}, but this run asks for {show(current)}; "
                "resume with the same settings, or pass keep_saved_masks=True to continue with the saved masks"
            )

    def _reapply(self) -> None:
        """Validate restored masks against the model, zero its pruned weights, re-bind."""
        model, state = self._bound()
        state.validate(model, expected=self._target_names())
        logger.info(
            "applying saved masks: %d layers, %d of %d weights (%.2f%%) pruned",
            len(state.masks),
            state.num_pruned,
            state.num_weights,
            100 * state.sparsity,
        )
        state.apply_(model)
        self.level = float(state.meta.get("level", state.sparsity))
        if self._optimizer is not None:
            self.bind_optimizer(self._optimizer)

    # ----------------------------------------------------------------- internals
    def _target_names(self) -> list[str] | None:
        """Every target of the plan must have a mask; without a plan, those the masks recorded."""
        return [t.name for t in self._targets] if self.plan is not None else None

    def _level_at(self, step: int) -> float:
        final = self._plan().method.target_sparsity
        return final if self.schedule is None else self.schedule.sparsity_at(step, final)

    def _prune_to(self, level: float) -> None:
        started = time.perf_counter()
        self._compute(level)
        _, state = self._bound()
        logger.info(
            "pruned %d layers (%s): %d of %d weights (%.2f%%) in %.2fs",
            len(state.masks),
            self._plan().method.name,
            state.num_pruned,
            state.num_weights,
            100 * state.sparsity,
            time.perf_counter() - started,
        )

    def _compute(self, level: float) -> None:
        plan, model = self._plan(), self._model
        if model is None:
            raise RuntimeError("call Sparsifier.setup(model, optimizer) first")
        if self.calibration is not None:  # block-wise from activations; updates weights in place
            self.state = sparsify_(model, plan, calibration=self.calibration, meta={"level": level})
        else:
            schedule = {"schedule": self.schedule.to_dict()} if self.schedule is not None else {}
            self.state = sparsify_(
                model,
                plan,
                current=self.state,
                level=level if self.schedule is not None else None,
                meta={"level": level, **schedule},
            )
        self.level = level

    def _plan(self) -> SparsityPlan:
        if self.plan is None:
            raise RuntimeError("this Sparsifier enforces given masks only; it has no plan to prune with")
        return self.plan

    def _bound(self) -> tuple[nn.Module, SparsityState]:
        """The model and masks after :meth:`setup`, or a clear error before it."""
        if self._model is None or self.state is None:
            raise RuntimeError("call Sparsifier.setup(model, optimizer) first")
        return self._model, self.state
