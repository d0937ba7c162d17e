"""Which weights get pruned.

Default: the weight matrices of ``nn.Linear`` (and Hugging Face ``Conv1D``) inside the
repeated transformer blocks, i.e. below an ``nn.ModuleList``; PEFT adapter layers
(``lora_A``/``lora_B``) are never targets, their frozen ``base_layer`` is. Embeddings, LM heads,
classifiers and poolers sit outside the blocks and stay dense, as in the paper. Users
override with the matching rules PEFT uses for ``target_modules``: a string is a regex
that must match the whole module name; a list matches a module whose name equals an
entry or ends with ``"." + entry``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence, Union, cast

import torch
from torch import nn

from ..errors import NoTargetsError, SparsityConfigError

ModuleMatch = Union[str, Sequence[str], None]
FilterFn = Callable[[nn.Module, str], bool]

# Outside block lists (models without nn.ModuleList blocks) these names stay dense.
_HEAD_WORDS = ("embed", "lm_head", "classifier", "pooler", "score", "head", "wte", "wpe")


@dataclass(frozen=True)
class TargetSpec:
    """How to choose the weights to prune.

    Args:
        include: PEFT-style module matcher; when given it replaces the default
            "Linear/Conv1D inside transformer blocks" selection.
        exclude: PEFT-style module matcher; wins over ``include``.
        filter_fn: extra predicate ``filter_fn(module, module_name) -> bool``.

    Example:
        >>> TargetSpec(include=["query", "value"], exclude=r".*\\.0\\..*")
        TargetSpec(include=('query', 'value'), exclude='.*\\\\.0\\\\..*', filter_fn=None)
    """

    include: ModuleMatch = None
    exclude: ModuleMatch = None
    filter_fn: FilterFn | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for attr in ("include", "exclude"):
            value = getattr(self, attr)
            if value is None or isinstance(value, str):
                if isinstance(value, str):
                    _compile(attr, value)
                continue
            items = tuple(value)
            if not items or not all(isinstance(v, str) and v for v in items):
                raise SparsityConfigError(
                    f"{attr} must be a regex string or a non-empty list of module names, got {value!r}"
                )
            object.__setattr__(self, attr, items)
        if self.filter_fn is not None and not callable(self.filter_fn):
            raise SparsityConfigError("filter_fn must be callable as filter_fn(module, name)")

    @classmethod
    def from_options(
        cls,
        include: Sequence[str] | None = None,
        include_regex: str | None = None,
        exclude: Sequence[str] | None = None,
        exclude_regex: str | None = None,
    ) -> "TargetSpec":
        """The spec of the commands' target options (``--include NAME ...`` or
        ``--include-regex``, likewise for exclude): one of each pair, not both."""
        if include and include_regex:
            raise SparsityConfigError("use either --include or --include-regex, not both")
        if exclude and exclude_regex:
            raise SparsityConfigError("use either --exclude or --exclude-regex, not both")
        return cls(include=include or include_regex, exclude=exclude or exclude_regex)

    def to_dict(self) -> dict:
        """JSON-friendly form (a ``filter_fn`` cannot be serialised and is noted by name)."""
        return {
            "include": list(self.include) if isinstance(self.include, tuple) else self.include,
            "exclude": list(self.exclude) if isinstance(self.exclude, tuple) else self.exclude,
            "filter_fn": getattr(self.filter_fn, "__name__", None) if self.filter_fn else None,
        }


@dataclass(frozen=True)
class Target:
    """One prunable weight: its parameter name and the axis that holds the inputs.

    ``in_axis`` matters for N:M patterns: sparse tensor cores group consecutive weights
    along the reduction (input) dimension, which is dim 1 of ``nn.Linear.weight`` but
    dim 0 of Hugging Face ``Conv1D.weight``.
    """

    name: str
    module_name: str
    param: torch.nn.Parameter
    in_axis: int

    @property
    def numel(self) -> int:
        return self.param.numel()


def _compile(attr: str, pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise SparsityConfigError(f"{attr}={pattern!r} is not a valid regex: {exc}") from None


def module_matches(rule: ModuleMatch, module_name: str) -> bool:
    """PEFT ``target_modules`` semantics: full-regex for a string, name/suffix for a list."""
    if rule is None:
        return False
    if isinstance(rule, str):
        return re.fullmatch(rule, module_name) is not None
    return any(module_name == key or module_name.endswith("." + key) for key in rule)


def _input_axis(module: nn.Module) -> int | None:
    if isinstance(module, nn.Linear):
        return 1
    # transformers.pytorch_utils.Conv1D (GPT-2 style) stores weight as (in, out);
    # matched by name so the core never imports transformers.
    weight = getattr(module, "weight", None)
    if type(module).__name__ == "Conv1D" and isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return 0
    return None


def _block_prefixes(model: nn.Module) -> list[str]:
    prefixes: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList):
            prefixes.extend(f"{name}.{i}." if name else f"{i}." for i in range(len(module)))
    return prefixes


def candidate_modules(model: nn.Module) -> list[tuple[str, nn.Module, int]]:
    """All modules whose ``weight`` this package knows how to prune, in model order."""
    return [(name, module, axis) for name, module in model.named_modules() if (axis := _input_axis(module)) is not None]


def _is_adapter(name: str) -> bool:
    """PEFT adapter sub-layers (``lora_A``, ``lora_B``, ...) are trained, not pruned."""
    return any(part.startswith("lora_") for part in name.split("."))


def _default_selected(name: str, block_prefixes: list[str]) -> bool:
    if block_prefixes:
        return any(name.startswith(prefix) for prefix in block_prefixes)
    leaf = name.lower()
    return not any(word in leaf for word in _HEAD_WORDS)


def resolve_targets(model: nn.Module, spec: TargetSpec | None = None) -> list[Target]:
    """Resolve ``spec`` against ``model`` into an ordered, de-duplicated target list.

    Tied weights (one Parameter reachable from several modules) appear once, under the
    name ``model.named_parameters()`` gives them, so they are pruned once.

    Raises:
        NoTargetsError: nothing matched; the message lists the candidate module names.
    """
    spec = spec or TargetSpec()
    canonical = {id(p): n for n, p in model.named_parameters()}
    prefixes = [] if spec.include is not None else _block_prefixes(model)
    candidates = candidate_modules(model)
    targets: list[Target] = []
    seen: set[int] = set()
    for name, module, axis in candidates:
        if _is_adapter(name):
            continue
        chosen = module_matches(spec.include, name) if spec.include is not None else _default_selected(name, prefixes)
        if not chosen or module_matches(spec.exclude, name):
            continue
        if spec.filter_fn is not None and not spec.filter_fn(module, name):
            continue
        param = cast(nn.Parameter, module.weight)  # checked below: only registered parameters are kept
        if id(param) in seen or id(param) not in canonical:
            continue  # tied weight already chosen, or a frozen non-parameter buffer
        seen.add(id(param))
        targets.append(Target(canonical[id(param)], name, param, axis))
    if not targets:
        names = [name for name, _, _ in candidates]
        shown = ", ".join(names[:40]) + (f", ... ({len(names)} in all)" if len(names) > 40 else "")
        raise NoTargetsError(
            "no prunable layers matched "
            f"include={spec.include!r}, exclude={spec.exclude!r}"
            f"{', filter_fn=' + getattr(spec.filter_fn, '__name__', 'fn') if spec.filter_fn else ''}. "
            f"Candidate modules (nn.Linear / Conv1D): {shown or 'none: the model has no Linear or Conv1D layers'}"
        )
    return targets


def target_names(targets: Iterable[Target]) -> list[str]:
    return [t.name for t in targets]
