"""Sparsifier: the whole surface a framework adapter may call.

An adapter translates its framework's events into ``setup`` (train begin), ``step`` (step
begin), ``bind_optimizer`` (a new optimizer), ``metrics`` (logging), ``state_dict`` /
``load_state_dict`` (checkpoints) and ``finalize`` (train end). Enforcement itself runs in
optimizer step hooks, so adapters never need to call anything per optimizer step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .distributed import assert_identical_across_ranks
from .errors import SparsityConfigError
from .methods import MethodConfig, NMConfig, compute_masks
from .plan import SparsityPlan, make_plan
from .schedules import CubicSchedule
from .state import EnforcementHandle, SparsityState
from .targets import Target, resolve_targets


class Sparsifier:
    """Prune a model according to a plan and keep it pruned through training.

    Args:
        plan: method + targets; a bare method config gets default targets.
        schedule: ``None`` for one-shot pruning at ``setup`` (the paper's protocol), or a
            :class:`CubicSchedule` for gradual pruning (unstructured methods only).
        mask_gradients: also zero gradients of pruned weights before each step, so the
            optimizer's moment estimates stay zero for them.
        state: fixed masks to enforce instead of computing new ones (lottery-ticket
            rounds, resumed runs).
        calibration: token ids ``[samples, seq_len]`` for Wanda / SparseGPT plans, which
            prune block by block from activations at ``setup``.

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
        plan: SparsityPlan | MethodConfig | None = None,
        schedule: CubicSchedule | None = None,
        mask_gradients: bool = True,
        state: SparsityState | None = None,
        calibration: torch.Tensor | None = None,
    ):
        if plan is None and state is None:
            raise SparsityConfigError("give a plan (what to prune) or a state (fixed masks to enforce)")
        if plan is not None:
            plan = make_plan(plan)
        needs_calibration = plan is not None and getattr(plan.method, "needs_calibration", False)
        if needs_calibration and calibration is None and state is None:
            raise SparsityConfigError(f"method {plan.method.name!r} needs calibration=<token ids [samples, seq_len]>")
        if needs_calibration and schedule is not None:
            raise SparsityConfigError("a gradual schedule needs an unstructured magnitude/random method, not a calibrated one")
        if schedule is not None:
            if not isinstance(schedule, CubicSchedule):
                raise SparsityConfigError(f"schedule must be a CubicSchedule or None, got {schedule!r}")
            if plan is None or isinstance(plan.method, NMConfig):
                raise SparsityConfigError("a gradual schedule needs an unstructured method (omp or random)")
            schedule.sparsity_at(schedule.end_step, plan.method.target_sparsity)  # validates the ramp
        self.plan = plan
        self.calibration = calibration
        self.schedule = schedule
        self.mask_gradients = mask_gradients
        self.state: SparsityState | None = state
        self.level: float = 0.0
        self._model: nn.Module | None = None
        self._targets: list[Target] = []
        self._optimizer: torch.optim.Optimizer | None = None
        self._handle: EnforcementHandle | None = None

    # ----------------------------------------------------------------- lifecycle
    def setup(
        self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, step: int = 0
    ) -> SparsityState:
        """Prune (or apply the given/restored masks) and start enforcing on ``optimizer``."""
        self._model = model
        if self.plan is not None:
            self._targets = resolve_targets(model, self.plan.targets)
        if self.state is not None:
            self.state.validate(model, expected=self._target_names())
            self.level = float(self.state.meta.get("level", self.state.sparsity))
            self.state.apply_(model)
        else:
            self._prune_to(self._level_at(step))
        if optimizer is not None:
            self.bind_optimizer(optimizer)
        replicated = not self.state.meta.get("sharded", False)  # FSDP masks differ per rank by design
        if replicated and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            assert_identical_across_ranks(self.state)  # DDP: every rank must enforce the same masks
        return self.state

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Enforce on ``optimizer`` (detaching from any previous one)."""
        self._require_setup()
        if self._handle is not None:
            self._handle.remove()
        self._optimizer = optimizer
        self._handle = self.state.attach(self._model, optimizer, mask_gradients=self.mask_gradients)

    def step(self, step: int) -> bool:
        """Advance a gradual schedule to ``step``; returns True if the masks changed."""
        self._require_setup()
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
        self._require_setup()
        self.state.mask_gradients_(self._model)

    def enforce(self) -> None:
        """Zero every pruned weight now (e.g. after loading weights from elsewhere)."""
        self._require_setup()
        self.state.apply_(self._model)

    def finalize(self) -> nn.Module:
        """Apply masks a last time and remove every hook: a plain model is left."""
        self._require_setup()
        self.state.finalize(self._model)
        self._handle = None
        return self._model

    # ----------------------------------------------------------------- reporting
    def metrics(self, prefix: str = "sparsity") -> dict[str, float]:
        """Measured sparsity of the targeted weights (counted from the weights, not the
        masks, so a broken enforcement would show) and the scheduled level."""
        self._require_setup()
        params = dict(self._model.named_parameters())
        zeros = sum(int((params[n].detach() == 0).sum()) for n in self.state.masks)  # vectorises; count_nonzero branches
        total = self.state.num_weights
        return {f"{prefix}/targets": zeros / total if total else 0.0, f"{prefix}/level": self.level}

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        self._require_setup()
        return self.state.state_dict()

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Restore masks (bit-identical) and the schedule level; re-applies and re-binds."""
        self.state = SparsityState.from_state_dict(data)
        if self._model is not None:
            self.state.validate(self._model, expected=self._target_names())
            self.state.apply_(self._model)
            self.level = float(self.state.meta.get("level", self.state.sparsity))
            if self._optimizer is not None:
                self.bind_optimizer(self._optimizer)

    # ----------------------------------------------------------------- internals
    def _target_names(self) -> list[str] | None:
        """Every target of the plan must have a mask; without a plan, those the masks recorded."""
        return [t.name for t in self._targets] if self.plan is not None else None

    def _level_at(self, step: int) -> float:
        final = self.plan.method.target_sparsity
        return final if self.schedule is None else self.schedule.sparsity_at(step, final)

    def _prune_to(self, level: float) -> None:
        method = self.plan.method
        if self.schedule is not None:
            method = dataclasses.replace(method, sparsity=level)
        if getattr(method, "needs_calibration", False):
            from .calibration import calibrated_prune_  # block-wise; updates weights in place

            self.state = calibrated_prune_(self._model, self.plan, self.calibration)
            self.state.meta["level"] = self.level = level
            return
        current = self.state.masks if self.state is not None else None
        masks = compute_masks(self._targets, method, current=current)
        meta = {"plan": self.plan.to_dict(), "targets": [t.name for t in self._targets], "level": level}
        if self.schedule is not None:
            meta["schedule"] = self.schedule.to_dict()
        self.state = SparsityState(masks, meta)
        self.level = level
        self.state.apply_(self._model)

    def _require_setup(self) -> None:
        if self._model is None or self.state is None:
            raise RuntimeError("call Sparsifier.setup(model, optimizer) first")
