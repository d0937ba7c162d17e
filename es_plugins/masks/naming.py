"""Canonical parameter names, so masks travel between namings of the same weights.

The same weight is ``encoder.layer.0.attention.self.query.weight`` in a base checkpoint,
``bert.encoder...`` under a task head, ``model.bert.encoder...`` inside a LightningModule,
``base_model.model.bert.encoder....query.base_layer.weight`` under PEFT, and gains
``module.`` / ``_orig_mod.`` / ``_fsdp_wrapped_module.`` under DDP, ``torch.compile`` and FSDP.
``canonical_name`` removes what wrappers add (never what the model itself names), and
``match_names`` pairs two namings one to one: equal canonical names first, then a unique
match of one as a dotted suffix of the other (the task-head or attribute prefix), with equal
shapes. Anything else is an error that shows the closest candidates.
"""

from __future__ import annotations

import difflib
from typing import Mapping, Sequence

from ..errors import MaskMismatchError

# Path components that wrappers insert and the wrapped model never has.
WRAPPER_PARTS = frozenset(
    {"_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module", "_forward_module", "base_layer"}
)
_LEADING = (("module",), ("base_model", "model"))  # DDP/DataParallel; PEFT's PeftModel + LoraModel

Shape = Sequence[int]


def canonical_name(name: str) -> str:
    """``name`` without the components that DDP, FSDP, torch.compile, Lightning and PEFT add.

    Example:
        >>> canonical_name("module._orig_mod.base_model.model.bert.encoder.q.base_layer.weight")
        'bert.encoder.q.weight'
    """
    parts = [p for p in name.split(".") if p not in WRAPPER_PARTS]
    changed = True
    while changed:
        changed = False
        for lead in _LEADING:
            if tuple(parts[: len(lead)]) == lead and len(parts) > len(lead):
                parts = parts[len(lead) :]
                changed = True
    return ".".join(parts)


def canonical_names(names: list[str]) -> list[str]:
    """Canonical forms of ``names`` (how masks are stored), or the names unchanged if two would
    collide."""
    canon = [canonical_name(n) for n in names]
    return canon if len(set(canon)) == len(canon) else list(names)


def _suffix_related(a: str, b: str) -> bool:
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def match_names(
    source: Mapping[str, Shape],
    target: Mapping[str, Shape],
    what: str = "masks do not match the model",
) -> dict[str, str]:
    """Map each ``source`` name to the one ``target`` name for the same weight.

    Args:
        source: names and shapes to place (e.g. the masks of a file).
        target: names and shapes to place them on (e.g. the model's parameters).

    Raises:
        MaskMismatchError: a source name with no match, with several, with another shape, or
            two source names claiming one target; the message lists the closest candidates.
    """
    canon_target: dict[str, list[str]] = {}
    for name in target:
        canon_target.setdefault(canonical_name(name), []).append(name)
    mapping: dict[str, str] = {}
    problems: list[str] = []
    for name, shape in source.items():
        canon = canonical_name(name)
        found = canon_target.get(canon) or [
            t for c, names in canon_target.items() if _suffix_related(c, canon) for t in names
        ]
        if not found:
            close = difflib.get_close_matches(canon, list(canon_target), n=3, cutoff=0.5)
            problems.append(f"names not in the model: {name!r} (closest: {close or 'none'})")
            continue
        if len(found) > 1:
            problems.append(f"ambiguous name: {name!r} fits {len(found)} parameters {found[:3]}")
            continue
        if tuple(target[found[0]]) != tuple(shape):
            label = name if found[0] == name else f"{name} -> {found[0]}"
            problems.append(f"shape mismatch: {label}: mask {tuple(shape)} vs weight {tuple(target[found[0]])}")
            continue
        mapping[name] = found[0]
    claimed: dict[str, list[str]] = {}
    for name, matched in mapping.items():
        claimed.setdefault(matched, []).append(name)
    problems += [f"not one to one: {names} all fit {matched!r}" for matched, names in claimed.items() if len(names) > 1]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} problems)" if len(problems) > 5 else "")
        raise MaskMismatchError(f"{what}: {shown}")
    return mapping
