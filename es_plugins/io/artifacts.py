"""What travels with a pruned model: masks, report and a model-card section, beside the weights.

Every path that saves a final model writes the same three things: the CLI's ``prune``, and
``save_pretrained`` after training with any adapter (``Sparsifier.finalize`` installs a small
instance-level wrapper, so ``trainer.save_model()``, ``model.save_pretrained(dir)`` in
Lightning or Accelerate scripts all get them without an extra call). The weights stay a plain
checkpoint; these files are extras that load without this package.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from torch import nn

from ..masks.report import SparsityReport, build_report
from ..masks.state import MASKS_FILENAME, SparsityState
from ..masks.targets import Target, TargetSpec, resolve_targets
from .output import atomic_write_text

REPORT_FILENAME = "sparsity_report.json"
CARD_FILENAME = "README.md"
CARD_HEADING = "## Sparsity (es-plugins)"


def masked_targets(model: nn.Module, state: SparsityState) -> list[Target]:
    """The model's targets that ``state`` holds masks for, in model order."""
    state = SparsityState(dict(state.masks), dict(state.meta))  # validate renames: keep the caller's intact
    state.validate(model)
    modules = [name.rsplit(".", 1)[0] for name in state.masks]
    return [t for t in resolve_targets(model, TargetSpec(include=modules)) if t.name in state.masks]


def sparsity_report(model: nn.Module, state: SparsityState, meta: dict[str, Any] | None = None) -> SparsityReport:
    method = state.recorded_method
    pattern = method.nm_pattern if method is not None else None
    return build_report(
        model, masked_targets(model, state), pattern, meta={"plan": state.meta.get("plan"), **(meta or {})}
    )


def model_card_section(report: SparsityReport, command: str | None = None) -> str:
    """A model-card paragraph saying the model is pruned, how, and where the masks are."""
    data = report.to_dict()
    targets = data["targets"]
    plan = data["meta"].get("plan") or {}
    method = (plan.get("method") or {}).get("method", "unknown")
    lines = [
        CARD_HEADING,
        "",
        f"This model is pruned: {targets['sparsity']:.2%} of the weights of its {targets['layers']} targeted layers "
        f"are exactly zero (method `{method}`; {data['all_parameters']['sparsity']:.2%} of all parameters).",
        "",
        f"- plan: `{json.dumps(plan, sort_keys=True)}`",
    ]
    if command:
        lines.append(f"- command: `{command}`")
    lines += [
        f"- masks: `{MASKS_FILENAME}` (bit-packed safetensors); per-layer report: `{REPORT_FILENAME}`",
        "- the weights are a plain checkpoint with exact zeros: they load without es-plugins.",
        "",
    ]
    return "\n".join(lines)


def write_sparsity_files(
    folder: str | Path,
    model: nn.Module,
    state: SparsityState,
    meta: dict[str, Any] | None = None,
    command: str | None = None,
) -> SparsityReport:
    """Write masks, report and the model-card section into ``folder`` (beside the weights)."""
    folder = Path(folder)
    report = sparsity_report(model, state, meta)
    state.save(folder / MASKS_FILENAME)
    write_report_files(folder, report, command)
    return report


def write_report_files(folder: str | Path, report: SparsityReport, command: str | None = None) -> None:
    """The report JSON and the model-card section (out-of-core runs write their masks file
    themselves, one mask at a time)."""
    folder = Path(folder)
    atomic_write_text(folder / REPORT_FILENAME, report.to_json())
    card = folder / CARD_FILENAME
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    if CARD_HEADING in text:  # replace our section from an earlier save, keep the rest
        text = text[: text.index(CARD_HEADING)].rstrip() + "\n"
    atomic_write_text(card, (text + "\n" if text else "") + model_card_section(report, command))


def save_with_sparsity_files(model: nn.Module, state: SparsityState) -> None:
    """Make every ``save_pretrained`` of ``model`` (and its HF sub-models) also write the
    sparsity files: the final save of an adapter-driven training run carries its report.
    Calling it again (a later round, a new run) points the saves at the newer ``state``."""
    for module in model.modules():
        original = getattr(module, "save_pretrained", None)
        if not callable(original):
            continue
        module.__dict__["_es_plugins_state"] = state
        if getattr(original, "_es_plugins", False):
            continue

        @functools.wraps(original)
        def save_pretrained(save_directory, *args, _original=original, _owner=module, **kwargs):
            result = _original(save_directory, *args, **kwargs)
            if kwargs.get("is_main_process", True):
                write_sparsity_files(save_directory, _owner, _owner.__dict__["_es_plugins_state"])
            return result

        save_pretrained._es_plugins = True  # type: ignore[attr-defined]
        module.save_pretrained = save_pretrained
