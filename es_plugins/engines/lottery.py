"""Lottery tickets: iterative magnitude pruning (IMP) with rewinding — the paper's expensive
baseline, done so that the rewind really happens.

One round: train → prune ``prune_fraction`` of the *remaining* targeted weights by global
magnitude → write the rewind-point values into the real parameters of the surviving weights
(pruned ones become exactly zero) → the caller resets optimizer and LR schedule. After ``r``
rounds the sparsity is ``1 - (1 - p) ** r``, with exactly ``round(s * n)`` weights pruned.

This module is framework-free; ``es_plugins.integrations`` drives it from a training loop.
Progress (round records, masks, the rewind point) lives in one folder so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import SparsityConfigError, check_choice
from ..io.output import atomic_write_text
from ..masks.state import MASKS_FILENAME, SparsityState
from ..masks.targets import TargetSpec
from ..methods import OMPConfig
from ..methods.plan import SparsityPlan
from .sparsify import sparsify_

Rewind = Union[str, int]
LEGACY_ROUND_MASKS = "masks.safetensors"  # a round's masks file before 0.2
PROGRESS_FILE = "lottery_progress.json"
REWIND_FILE = "rewind_point.safetensors"


@dataclass(frozen=True)
class LotteryConfig:
    """Args:
    prune_fraction: fraction of the remaining weights pruned each round, in (0, 1).
    rounds: number of prune-and-rewind rounds (>= 1).
    rewind: ``"pretrained"`` (the paper's default: the weights before any training) or
        an optimizer step ``k`` of the first round's training (>= 0).
    scope: ``"global"`` (one threshold, as in the paper) or ``"layer"``.
    targets: which weights take part (default: Linear/Conv1D inside blocks).
    """

    prune_fraction: float = 0.2
    rounds: int = 3
    rewind: Rewind = "pretrained"
    scope: str = "global"
    targets: TargetSpec = field(default_factory=TargetSpec)

    def __post_init__(self) -> None:
        try:
            ok = 0.0 < float(self.prune_fraction) < 1.0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise SparsityConfigError(f"prune_fraction must be in (0, 1), got {self.prune_fraction!r}")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise SparsityConfigError(f"rounds must be an integer >= 1, got {self.rounds!r}")
        if isinstance(self.rewind, str):
            check_choice("rewind", self.rewind, ("pretrained",))
        elif isinstance(self.rewind, bool) or not isinstance(self.rewind, int) or self.rewind < 0:
            raise SparsityConfigError(f"rewind must be 'pretrained' or a step >= 0, got {self.rewind!r}")
        check_choice("scope", self.scope, ("global", "layer"))

    @property
    def rewind_step(self) -> int:
        return 0 if self.rewind == "pretrained" else int(self.rewind)

    def sparsity_after(self, rounds_done: int) -> float:
        return 1.0 - (1.0 - self.prune_fraction) ** rounds_done

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "targets"}
        return {**data, "targets": self.targets.to_dict()}


@dataclass
class RoundRecord:
    """One trained round: the sparsity its mask had while training, the metric the caller
    measured after it, and that mask's file (``None`` for the dense first round)."""

    round: int
    sparsity: float
    metric: dict[str, float] | None
    masks_file: str | None


class LotteryTicket:
    """Round bookkeeping: rewind point, nested masks, rewinding, and resumable progress.

    Rounds are numbered from 0: round 0 trains the dense model, round ``r`` trains with
    sparsity ``1 - (1 - p) ** r``; ``config.rounds`` pruning steps give ``rounds + 1``
    trained rounds, the last one training the final ticket.

    Args:
        config: the lottery-ticket settings.
        folder: where progress, per-round masks and the rewind point are written.
    """

    def __init__(self, config: LotteryConfig, folder: str | Path):
        if not isinstance(config, LotteryConfig):
            raise SparsityConfigError(f"config must be a LotteryConfig, got {config!r}")
        self.config = config
        self.folder = Path(folder)
        self.records: list[RoundRecord] = []
        self.state: SparsityState | None = None
        self._rewind: dict[str, torch.Tensor] | None = None
        self._load_progress()

    # ----------------------------------------------------------------- progress
    @property
    def current_round(self) -> int:
        return len(self.records)

    @property
    def finished(self) -> bool:
        return self.current_round > self.config.rounds

    @property
    def has_rewind_point(self) -> bool:
        return self._rewind is not None

    def round_dir(self, index: int) -> Path:
        return self.folder / f"round-{index}"

    def _masks_path(self, index: int) -> Path:
        """``round-R/sparsity_masks.safetensors``: the name every other masks file has, so
        ``compare-masks round-1 round-3`` finds it. Rounds written before 0.2 used
        ``masks.safetensors``; those are still read (resume)."""
        path = self.round_dir(index) / MASKS_FILENAME
        legacy = self.round_dir(index) / LEGACY_ROUND_MASKS
        return legacy if legacy.is_file() and not path.is_file() else path

    def _load_progress(self) -> None:
        path = self.folder / PROGRESS_FILE
        if path.is_file():
            data = json.loads(path.read_text())
            if data.get("config") != self.config.to_dict():
                raise SparsityConfigError(
                    f"{path} was written with a different lottery config {data.get('config')}; "
                    f"use a new folder or the same config ({self.config.to_dict()})"
                )
            self.records = [RoundRecord(**r) for r in data["records"]]
        if (self.folder / REWIND_FILE).is_file():
            self._rewind = load_file(str(self.folder / REWIND_FILE))

    def _save_progress(self) -> None:
        data = {"config": self.config.to_dict(), "records": [asdict(r) for r in self.records]}
        atomic_write_text(self.folder / PROGRESS_FILE, json.dumps(data, indent=2))

    # ----------------------------------------------------------------- rewind point
    @torch.no_grad()
    def capture_rewind_point(self, model: nn.Module) -> None:
        """Keep a CPU copy of every parameter (saved to disk) to rewind to later."""
        self._rewind = {n: p.detach().to("cpu", copy=True).contiguous() for n, p in model.named_parameters()}
        self.folder.mkdir(parents=True, exist_ok=True)
        save_file(self._rewind, str(self.folder / REWIND_FILE))

    @torch.no_grad()
    def rewind_(self, model: nn.Module) -> None:
        """Write the rewind point into the real parameters, then zero the pruned weights:
        afterwards ``w == w_rewind * mask`` exactly."""
        if self._rewind is None:
            raise RuntimeError("no rewind point captured: call capture_rewind_point(model) first")
        params = dict(model.named_parameters())
        missing = sorted(set(params) - set(self._rewind))
        if missing:
            raise SparsityConfigError(f"rewind point lacks parameters {missing[:5]}: was it taken from another model?")
        for name, param in params.items():
            param.copy_(self._rewind[name])
        if self.state is not None:
            self.state.apply_(model)

    # ----------------------------------------------------------------- rounds
    def begin_round(self, model: nn.Module) -> SparsityState | None:
        """Load the current round's mask; for rounds after the first, rewind ``model`` to
        the rewind point with that mask applied. Returns the mask to enforce (``None`` in
        the dense first round)."""
        index = self.current_round
        if self.finished:
            raise RuntimeError(f"all {self.config.rounds + 1} rounds are done")
        if index == 0:
            self.state = None
            return None
        self.state = SparsityState.load(self._masks_path(index), model)
        self.rewind_(model)
        return self.state

    def end_round(self, model: nn.Module, metric: dict[str, float] | None = None) -> SparsityState | None:
        """Record the trained round; unless it was the last, prune ``prune_fraction`` of the
        remaining weights (nested in the current mask, exact count) and save the next
        round's mask. Returns that mask (``None`` after the last round)."""
        index = self.current_round
        trained = self.state
        record = RoundRecord(
            round=index,
            sparsity=trained.sparsity if trained is not None else 0.0,
            metric=metric,
            masks_file=str(self._masks_path(index).relative_to(self.folder)) if trained is not None else None,
        )
        next_state = None
        if index < self.config.rounds:
            level = self.config.sparsity_after(index + 1)
            plan = SparsityPlan(OMPConfig(level, self.config.scope), self.config.targets)
            next_state = sparsify_(  # chosen on the trained weights; applied after the rewind
                model,
                plan,
                current=trained,
                apply=False,
                meta={"lottery_round": index + 1, "level": level, "lottery": self.config.to_dict()},
            )
            self._masks_path(index + 1).parent.mkdir(parents=True, exist_ok=True)
            next_state.save(self._masks_path(index + 1))
        self.records.append(record)
        self._save_progress()
        return next_state

    def current_masks(self, model: nn.Module) -> SparsityState | None:
        """The masks of the round in progress (loaded from its file on resume); ``None`` while
        the dense first round trains."""
        if self.state is None and 0 < self.current_round <= self.config.rounds:
            self.state = SparsityState.load(self._masks_path(self.current_round), model)
        return self.state

    # ----------------------------------------------------------------- drivers
    def run(
        self, model: nn.Module, train_round: Callable[[int, SparsityState | None], Mapping[str, float] | None]
    ) -> list[RoundRecord]:
        """The whole lottery loop for frameworks that train one round per call (HF Trainer).

        ``train_round(index, masks)`` trains ``model`` for one round with ``masks`` enforced
        (``None``: dense) from a fresh optimizer and LR schedule, and returns the round's
        metric. Interrupted runs resume at the round where they stopped.
        """
        if self.config.rewind == "pretrained" and not self.has_rewind_point:
            if self.current_round > 0:
                raise RuntimeError(f"{self.folder} has finished rounds but no rewind point file")
            self.capture_rewind_point(model)
        while not self.finished:
            index = self.current_round
            metric = train_round(index, self.begin_round(model))
            if index == 0 and not self.has_rewind_point:
                raise RuntimeError("the rewind point was never reached during the first round")
            self.end_round(model, dict(metric) if metric is not None else None)
        return self.records

    def check_step_budget(self, steps_per_round: int, max_steps: int) -> None:
        """For step-driven loops: every round fits in ``max_steps`` (<= 0: unbounded) and the
        rewind step falls inside the first round."""
        if isinstance(steps_per_round, bool) or not isinstance(steps_per_round, int) or steps_per_round < 1:
            raise SparsityConfigError(f"steps_per_round must be an integer >= 1, got {steps_per_round!r}")
        needed = steps_per_round * (self.config.rounds + 1)
        if max_steps > 0 and max_steps < needed:
            raise SparsityConfigError(
                f"{self.config.rounds + 1} rounds of {steps_per_round} steps need "
                f"max_steps >= {needed}, got {max_steps}"
            )
        if self.config.rewind_step > steps_per_round:
            raise SparsityConfigError(
                f"rewind step {self.config.rewind_step} is beyond the first round ({steps_per_round} steps)"
            )

    def start(self, model: nn.Module) -> SparsityState | None:
        """Start or resume a step-driven run: capture the rewind point now when it is step 0
        of the first round, and return the masks to enforce (``None`` while dense)."""
        if self.current_round == 0 and self.config.rewind_step == 0 and not self.has_rewind_point:
            self.capture_rewind_point(model)
        return self.current_masks(model)

    def after_step(
        self, model: nn.Module, step: int, steps_per_round: int, metric: Callable[[], Mapping[str, float]]
    ) -> SparsityState | None:
        """The lottery loop for frameworks with one long fit (Lightning): call after every
        optimizer step. Captures the rewind point at its step; at a round boundary records the
        round, prunes and rewinds. Returns the new round's masks when a round began (the
        caller then resets its optimizer and LR schedule and enforces them), else ``None``."""
        if self.current_round == 0 and step == self.config.rewind_step and not self.has_rewind_point:
            self.capture_rewind_point(model)
        if step == 0 or step % steps_per_round or self.finished:
            return None
        if step // steps_per_round != self.current_round + 1:
            return None  # this boundary was handled before a resume
        if self.end_round(model, dict(metric())) is None:
            return None
        return self.begin_round(model)
