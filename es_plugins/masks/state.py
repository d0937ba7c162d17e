"""SparsityState: the hand-off between "finding a mask" and everything else.

It holds bool keep-masks keyed by parameter name. Masks are applied *in place*, so the
model keeps its own parameters (no ``weight_orig``, no forward hooks, unchanged
state-dict keys), and enforcement runs after each real optimizer step so momentum,
weight decay and AMP cannot regrow a pruned weight.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from ..errors import MaskMismatchError, SparsityConfigError
from ..methods import config_from_dict
from .masks_file import MASKS_FILENAME as MASKS_FILENAME  # re-exported: the public name
from .masks_file import MASKS_FORMAT, MASKS_VERSION, MasksFileWriter, mask_record
from .naming import canonical_names, match_names
from .packing import pack_mask, unpack_mask

if TYPE_CHECKING:  # annotations only: plan and targets never need the state at import time
    from ..methods.plan import SparsityPlan
    from .targets import Target


def _local_view(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's part of a (possibly DTensor-sharded) tensor; the tensor itself otherwise."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if callable(to_local) else tensor.data


@dataclass
class EnforcementHandle:
    """Hooks that keep masks applied on an optimizer; ``remove()`` detaches them."""

    hooks: list[Any] = field(default_factory=list)

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks.clear()

    @property
    def active(self) -> bool:
        return bool(self.hooks)


class SparsityState:
    """Bool keep-masks by parameter name plus metadata (method, step, round).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from es_plugins import SparsityState
        >>> model = nn.Sequential(nn.Linear(4, 4))
        >>> state = SparsityState({"0.weight": torch.rand(4, 4) > 0.5})
        >>> state.apply_(model)
        >>> bool((model[0].weight[~state.masks["0.weight"]] == 0).all())
        True
    """

    def __init__(self, masks: Mapping[str, torch.Tensor], meta: Mapping[str, Any] | None = None):
        for name, mask in masks.items():
            if mask.dtype != torch.bool:
                raise TypeError(f"mask {name!r} must be a bool tensor, got {mask.dtype}")
        self.masks: dict[str, torch.Tensor] = dict(masks)
        self.meta: dict[str, Any] = dict(meta or {})
        self._handles: list[EnforcementHandle] = []

    @classmethod
    def from_plan(
        cls, masks: Mapping[str, torch.Tensor], plan: SparsityPlan, targets: Sequence[Target] | None = None, **meta: Any
    ) -> "SparsityState":
        """The one way a pruning run builds its state: masks plus the plan and the targets it
        resolved (so a file that later loses a mask is refused), plus run-specific ``meta``
        (level, schedule, calibration, lottery round...)."""
        names = [t.name for t in targets] if targets is not None else list(masks)
        return cls(masks, {"plan": plan.to_dict(), "targets": names, **meta})

    @property
    def recorded_method(self) -> Any:
        """The method config these masks were made with (read from the saved plan through the
        registry, so every spelling a config accepts is parsed once), or None."""
        return _recorded_method(self.meta)

    # ----------------------------------------------------------------- counting
    @property
    def num_weights(self) -> int:
        return sum(m.numel() for m in self.masks.values())

    @property
    def num_pruned(self) -> int:
        return sum(int((~m).sum()) for m in self.masks.values())

    @property
    def sparsity(self) -> float:
        total = self.num_weights
        return self.num_pruned / total if total else 0.0

    # ----------------------------------------------------------------- model binding
    def _bind(self, model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(this rank's view of each masked parameter, its mask): the full tensor normally,
        the local shard under FSDP (masks then hold shard-shaped local masks)."""
        self.validate(model)
        params = dict(model.named_parameters())
        pairs = []
        for name, mask in self.masks.items():
            view = _local_view(params[name])
            if mask.device != view.device:
                mask = mask.to(view.device)
                self.masks[name] = mask
            pairs.append((view, mask))
        return pairs

    def validate(self, model: nn.Module, expected: Iterable[str] | None = None) -> None:
        """Check the masks against ``model`` and adopt the model's parameter names.

        Masks made under another naming of the same weights (a base checkpoint vs one with a
        task head, a LightningModule attribute, PEFT, DDP/FSDP/compile wrappers) are renamed
        to this model's names when each matches exactly one parameter of the same shape
        (:func:`es_plugins.masks.naming.match_names`).

        Args:
            expected: names that must be present (e.g. the plan's resolved targets); by
                default the targets recorded in the masks' metadata, so a file that lost
                some of its masks never loads as if it covered the model.

        Raises:
            MaskMismatchError: listing unmatched names (with the closest candidates), shape
                mismatches and targets without a mask.
        """
        if expected is None:
            recorded = self.meta.get("targets")
            self._check_covers(recorded if isinstance(recorded, list) else [])
        params = {n: tuple(_local_view(p).shape) for n, p in model.named_parameters()}
        mapping = match_names({n: tuple(m.shape) for n, m in self.masks.items()}, params)
        if any(old != new for old, new in mapping.items()):
            self.masks = {mapping[n]: m for n, m in self.masks.items()}
            if isinstance(self.meta.get("targets"), list):
                self.meta["targets"] = [mapping.get(n, n) for n in self.meta["targets"]]
        if expected is not None:
            self._check_covers(list(expected))

    def _check_covers(self, expected: list[str]) -> None:
        missing = [n for n in expected if n not in self.masks]
        if missing:
            raise MaskMismatchError(
                f"masks do not match the model: targets without a mask: {missing[:10]}"
                f"{' ...' if len(missing) > 10 else ''} ({len(missing)} in all; partial masks would let them regrow)"
            )

    def in_order(self, names: Sequence[str]) -> "SparsityState":
        """The masks reordered to follow ``names`` (e.g. the model's parameter order)."""
        rank = {n: i for i, n in enumerate(names)}
        ordered = sorted(self.masks, key=lambda n: (rank.get(n, len(rank)), n))
        return SparsityState({n: self.masks[n] for n in ordered}, self.meta)

    @torch.no_grad()
    def count_nonzero_pruned(self, model: nn.Module) -> int:
        """Weights of ``model`` that are non-zero where these masks prune: 0 for a model that
        honours the masks (the invariant every adapter and test checks)."""
        params = dict(model.named_parameters())
        return sum(
            int((_local_view(params[name]).detach()[~mask.to(params[name].device)] != 0).sum())
            for name, mask in self.masks.items()
        )

    @torch.no_grad()
    def apply_(self, model: nn.Module) -> None:
        """Zero every pruned weight of ``model`` in place."""
        for param, mask in self._bind(model):
            param.mul_(mask)

    @torch.no_grad()
    def mask_gradients_(self, model: nn.Module) -> None:
        """Zero the gradients of pruned weights now (for loops whose optimizer runs the
        backward inside ``step(closure)``, where a step pre-hook would see stale gradients)."""
        self._bind(model)
        params = dict(model.named_parameters())
        for name, mask in self.masks.items():
            grad = params[name].grad
            if grad is not None:
                _local_view(grad).mul_(mask)

    def attach(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, mask_gradients: bool = False
    ) -> EnforcementHandle:
        """Keep the masks through training on ``optimizer``.

        A step post-hook re-zeroes pruned weights after every *real* step (so gradient
        accumulation, skipped AMP steps and clipping are handled by construction). With
        ``mask_gradients`` a step pre-hook also zeroes their gradients, which keeps the
        optimizer's moment estimates at zero for pruned weights.
        """
        pairs = self._bind(model)
        params = dict(model.named_parameters())

        @torch.no_grad()
        def zero_weights(*_: Any) -> None:
            for param, mask in pairs:
                param.mul_(mask)

        grads = [(params[name], mask) for name, mask in self.masks.items()] if mask_gradients else []

        @torch.no_grad()
        def zero_grads(*_: Any) -> None:
            for param, mask in grads:
                if param.grad is not None:
                    _local_view(param.grad).mul_(mask)

        handle = EnforcementHandle([optimizer.register_step_post_hook(zero_weights)])
        if mask_gradients:
            handle.hooks.append(optimizer.register_step_pre_hook(zero_grads))
        self._handles.append(handle)
        return handle

    def detach_all(self) -> None:
        """Remove every hook this state registered."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def finalize(self, model: nn.Module) -> nn.Module:
        """Apply the masks a last time and remove all hooks: a plain model is left."""
        self.apply_(model)
        self.detach_all()
        return model

    # ----------------------------------------------------------------- (de)serialise
    def state_dict(self) -> dict[str, Any]:
        """Bit-packed masks, their shapes, and metadata (for framework checkpoints and files).

        Names are canonical (wrapper prefixes such as ``module.`` or PEFT's ``base_layer``
        removed), so a saved state loads under any wrapping of the same model.
        """
        names = canonical_names(list(self.masks))
        meta = self._saved_meta()
        packed = {names[i]: pack_mask(m) for i, m in enumerate(self.masks.values())}
        shapes = {names[i]: list(m.shape) for i, m in enumerate(self.masks.values())}
        integrity = {}
        for name, blob in packed.items():
            kept, digest = mask_record(blob.numpy().tobytes(), math.prod(shapes[name]))
            integrity[name] = {"kept": kept, "digest": digest}
        return {
            "format": MASKS_FORMAT,
            "version": MASKS_VERSION,
            "packed": packed,
            "shapes": shapes,
            "meta": meta,
            "integrity": integrity,
        }

    def _saved_meta(self) -> dict[str, Any]:
        """The metadata as saved: recorded target names made canonical, like the mask names."""
        meta = dict(self.meta)
        if isinstance(meta.get("targets"), list):
            meta["targets"] = canonical_names(meta["targets"])
        return meta

    @classmethod
    def from_state_dict(cls, data: Mapping[str, Any]) -> "SparsityState":
        if data.get("format") != MASKS_FORMAT:
            raise MaskMismatchError(f"not an es-plugins masks state (format={data.get('format')!r})")
        packed, shapes = data.get("packed"), data.get("shapes")
        if not isinstance(packed, Mapping) or not isinstance(shapes, Mapping):
            raise MaskMismatchError("masks state is corrupt: 'packed' and 'shapes' must both be mappings by name")
        if set(packed) != set(shapes):
            raise MaskMismatchError("masks state is corrupt: packed masks and shapes disagree")
        meta = data.get("meta") or {}
        if not isinstance(meta, Mapping):
            raise MaskMismatchError(f"masks state is corrupt: 'meta' must be a mapping, got {type(meta).__name__}")
        integrity = data.get("integrity")
        if integrity is not None and (not isinstance(integrity, Mapping) or set(integrity) != set(packed)):
            raise MaskMismatchError("masks state is corrupt: its integrity records do not name the same masks")
        masks = {}
        for name, blob in packed.items():
            shape = shapes[name]
            if not (isinstance(shape, (list, tuple)) and all(isinstance(d, int) and d >= 0 for d in shape)):
                raise MaskMismatchError(f"mask {name!r}: shape must be a list of non-negative integers, got {shape!r}")
            if not isinstance(blob, torch.Tensor) or blob.dtype != torch.uint8:
                kind = blob.dtype if isinstance(blob, torch.Tensor) else type(blob).__name__
                raise MaskMismatchError(f"mask {name!r}: expected bit-packed uint8 data, got {kind}")
            try:
                masks[name] = unpack_mask(blob, shapes[name])
            except ValueError as exc:
                raise MaskMismatchError(f"mask {name!r}: {exc}") from None
            if integrity is not None:
                _check_record(name, blob, masks[name].numel(), integrity[name])
        recorded = meta.get("targets")
        state = cls(masks, meta)
        state.check_against_plan()
        return state.in_order(recorded) if isinstance(recorded, list) else state

    def check_against_plan(self) -> None:
        """Refuse masks that contradict what they claim (every resume and load runs this):
        all weights pruned (as a ``sparsity`` that prunes everything is refused), all kept while
        the recorded plan or level prunes some (a reset file would let pruned weights regrow),
        or a layer emptied by a plan that gives every layer its own quota.

        Raises:
            MaskMismatchError: naming the masks and what their plan says.
        """
        total, pruned = self.num_weights, self.num_pruned
        if total == 0:
            return
        if pruned == total:
            raise MaskMismatchError(
                f"the masks prune all {total:,} target weights: a model with no weights left is refused, "
                "as a sparsity that rounds to pruning everything is"
            )
        config = _recorded_method(self.meta)
        level = self.meta.get("level")
        if not isinstance(level, (int, float)) or isinstance(level, bool):
            level = config.target_sparsity if config is not None else None
        if pruned == 0 and level:
            raise MaskMismatchError(
                f"the masks keep every weight, but their plan prunes {level:.2%}: the masks were reset or "
                "edited, and using them would let every pruned weight grow back"
            )
        if config is not None and not config.selects_globally:
            emptied = [name for name, mask in self.masks.items() if mask.numel() and not bool(mask.any())]
            if emptied:
                raise MaskMismatchError(
                    f"the masks prune every weight of {emptied[:3]}, which their plan ({config.name}, one quota "
                    "per layer) never does"
                )

    def load_state_dict(self, data: Mapping[str, Any]) -> None:
        """Replace masks and metadata in place (hooks already attached keep working
        only if re-attached; adapters call this before ``attach``)."""
        other = SparsityState.from_state_dict(data)
        self.masks, self.meta = other.masks, other.meta

    def save(self, path: str | Path) -> Path:
        """Write a safetensors file: one uint8 bit-packed tensor per mask, with integrity records
        (through :class:`~es_plugins.masks.masks_file.MasksFileWriter`, as out-of-core runs do)."""
        path = Path(path)
        names = canonical_names(list(self.masks))
        meta = self._saved_meta()
        writer = MasksFileWriter(path, {n: tuple(m.shape) for n, m in zip(names, self.masks.values())}, meta)
        for name, mask in zip(names, self.masks.values()):
            writer.write(name, mask)
        writer.close()
        return path

    @classmethod
    def load(cls, path: str | Path, model: nn.Module | None = None) -> "SparsityState":
        """Read a masks file; with ``model`` it is validated against it.

        Raises:
            MaskMismatchError: not a masks file, corrupt, or not matching ``model``.
        """
        if not isinstance(path, (str, Path)):
            raise MaskMismatchError(f"the masks file must be a path (str or Path), got {type(path).__name__}")
        path = Path(path)
        if not path.is_file():
            raise MaskMismatchError(f"masks file {str(path)!r} does not exist")
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            packed = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise MaskMismatchError(f"{str(path)!r} is not a safetensors masks file: {exc}") from None
        if metadata.get("format") != MASKS_FORMAT:
            raise MaskMismatchError(
                f"{str(path)!r} is a safetensors file but not an es-plugins masks file "
                f"(metadata format={metadata.get('format')!r})"
            )
        fields = {}
        for key, default in (("shapes", None), ("meta", "{}"), ("integrity", None)):
            text = metadata.get(key, default)
            try:
                fields[key] = json.loads(text) if text is not None else None
            except json.JSONDecodeError as exc:
                raise MaskMismatchError(f"{str(path)!r}: metadata {key!r} is not valid JSON ({exc})") from None
        if fields["shapes"] is None:
            raise MaskMismatchError(f"{str(path)!r}: metadata has no 'shapes' entry (the file is damaged)")
        if fields["integrity"] is not None:
            fields["integrity"] = _parse_integrity(fields["integrity"], str(path))
        try:
            state = cls.from_state_dict({"format": MASKS_FORMAT, "packed": packed, **fields})
        except MaskMismatchError as exc:
            raise MaskMismatchError(f"{str(path)!r}: {exc}") from None
        if model is not None:
            state.validate(model)
        return state


def _parse_integrity(records: Any, where: str) -> dict[str, dict[str, Any]]:
    """The file form ``{name: ["000123", digest]}`` as the state form ``{name: {kept, digest}}``."""
    if not isinstance(records, dict):
        raise MaskMismatchError(f"{where!r}: metadata 'integrity' must be an object")
    parsed = {}
    for name, record in records.items():
        if not (isinstance(record, list) and len(record) == 2 and all(isinstance(v, str) for v in record)):
            raise MaskMismatchError(f"{where!r}: integrity record of {name!r} is damaged: {record!r}")
        if not record[0].isdigit():
            raise MaskMismatchError(f"{where!r}: integrity record of {name!r} has no count: {record[0]!r}")
        parsed[name] = {"kept": int(record[0]), "digest": record[1]}
    return parsed


def _check_record(name: str, blob: torch.Tensor, numel: int, record: Any) -> None:
    """The bits against the count and digest written with them: a flipped bit, an edit or a
    truncated copy is an error, not a different model."""
    if not isinstance(record, Mapping) or not isinstance(record.get("kept"), int):
        raise MaskMismatchError(f"mask {name!r}: its integrity record is damaged: {record!r}")
    kept, digest = mask_record(blob.numpy().tobytes(), numel)
    if kept != record["kept"] or digest != record.get("digest"):
        what = (
            f"{kept:,} kept weights where {record['kept']:,} were written"
            if kept != record["kept"]
            else ("the same count but other bits than were written")
        )
        raise MaskMismatchError(
            f"mask {name!r} has {what}: the file was changed after it was saved (bit flips or an edit); "
            "re-create the masks instead of using them"
        )


def _recorded_method(meta: Mapping[str, Any]) -> Any:
    """The method config recorded in ``meta['plan']``, or None (none recorded, or a method this
    installation does not know)."""
    plan = meta.get("plan")
    method = plan.get("method") if isinstance(plan, Mapping) else None
    if not isinstance(method, Mapping):
        return None
    try:
        return config_from_dict(dict(method))
    except (SparsityConfigError, TypeError, KeyError):
        return None
