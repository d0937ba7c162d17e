"""The one method registry: config type -> mask function, and whether it needs calibration.

Every method registers here, calibrated or not, so "which function prunes this config?" and
"does it need activations?" are answered in exactly one place. The entry point
(:func:`es_plugins.sparsify_`), the :class:`~es_plugins.Sparsifier`, the CLI and the sweep all
ask the registry instead of testing method names.

Two function shapes exist, because the two families see the model differently:

* whole-model methods (magnitude, random, N:M): ``fn(targets, config, progress, current)``
  returns ``{name: keep_mask}`` (or yields its pairs); ``current`` holds masks already in
  force (nested schedules). Entries registered ``shardable`` also take ``combine=``, the
  selection's hook for weights sharded across ranks (:mod:`es_plugins.engines.distributed`).
* calibrated methods (Wanda, SparseGPT): ``fn(target, config, inputs, keep)`` prunes *one*
  layer in place from its input statistics (``inputs``) and returns its keep-mask; ``keep``
  is a given mask to preserve exactly (refinement), when the entry allows it.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch

from ..errors import SparsityConfigError, option_flag
from .configs import MethodConfig


class LayerInputs(Protocol):
    """Input statistics of one layer, accumulated over the calibration set."""

    sq_norms: torch.Tensor  # per input feature: sum of x_j^2
    hessian: torch.Tensor | None  # sum of x x^T, when the entry asks for it
    rows: int  # number of input vectors seen


MaskFn = Callable[..., Any]


@dataclass(frozen=True)
class MethodEntry:
    """What the registry knows about one method.

    Attributes:
        config_type: the config dataclass; its ``name`` is the CLI/plan key.
        fn: the mask function (see the module docstring for the two shapes).
        calibrated: ``fn`` works per layer from activations (needs ``calibration=``).
        needs_hessian: calibrated methods only: collect ``sum x x^T`` as well as the norms.
        refines_masks: calibrated methods only: accepts a fixed mask and only reconstructs.
        schedulable: its sparsity can ramp over training (a gradual schedule), mask inside mask.
        shardable: the sharded (FSDP) engine computes its exact global masks across ranks.
        checks_finite: with ``scope="global"`` its selection ranks the weights' magnitudes and
            refuses NaN/Inf in the pass it makes anyway, before any mask (so no read pass of
            its own: a full pass of a model, or of a checkpoint out of core).
    """

    config_type: type[MethodConfig]
    fn: MaskFn
    calibrated: bool = False
    needs_hessian: bool = False
    refines_masks: bool = False
    schedulable: bool = False
    shardable: bool = False
    checks_finite: bool = False

    @property
    def out_of_core_driver(self) -> str:
        """How a checkpoint larger than memory is pruned: ``"blocks"`` (one transformer block
        onloaded at a time, calibrated) or ``"tensors"`` (one memory-mapped tensor at a time)."""
        return "blocks" if self.calibrated else "tensors"

    @property
    def name(self) -> str:
        return self.config_type.name

    @property
    def options(self) -> tuple[str, ...]:
        """Keyword options the config accepts (what the CLI and ``config_from_dict`` allow)."""
        return tuple(inspect.signature(self.config_type).parameters)


@dataclass(frozen=True)
class OptionSpec:
    """One keyword option of a method config, as the command line sees it: its help and
    choices from the field (:func:`es_plugins.methods.configs.option`), its value type from
    the annotation, and the methods that take it."""

    name: str
    type: type
    help: str
    choices: tuple | None
    default: Any
    methods: tuple[str, ...]

    @property
    def flag(self) -> str:
        return option_flag(self.name)


def _value_type(annotation: Any) -> type:
    """``float | None`` -> float: the type a flag's text converts to."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def method_options() -> dict[str, OptionSpec]:
    """Every keyword option of every registered method, merged by name, in registry order:
    the table the CLI's method flags are generated from."""
    table: dict[str, OptionSpec] = {}
    for entry in _ENTRIES.values():
        cls = entry.config_type
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        signature = inspect.signature(cls).parameters
        for name in entry.options:
            meta = dict(fields[name].metadata) if name in fields else dict(cls.init_options.get(name, {}))
            if name in table:
                table[name] = dataclasses.replace(table[name], methods=(*table[name].methods, entry.name))
                continue
            annotation = hints.get(name, str)
            default = signature[name].default
            table[name] = OptionSpec(
                name,
                _value_type(annotation),
                meta.get("help", ""),
                meta.get("choices"),
                None if default is inspect.Parameter.empty else default,
                (entry.name,),
            )
    return table


_ENTRIES: dict[str, MethodEntry] = {}


def register_method(
    config_type: type[MethodConfig],
    fn: MaskFn | None = None,
    *,
    calibrated: bool = False,
    needs_hessian: bool = False,
    refines_masks: bool = False,
    schedulable: bool = False,
    shardable: bool = False,
    checks_finite: bool = False,
) -> Any:
    """Register ``fn`` as the mask function of ``config_type``; usable as a decorator.

    A new method is one config dataclass plus one function (see "Adding a method" in
    docs/design.md); the registry then serves it to ``sparsify_``, the Sparsifier, every
    adapter and the CLI.

    Example:
        >>> from es_plugins.methods import entry_for
        >>> entry = entry_for("sparsegpt")
        >>> entry.calibrated, entry.needs_hessian, entry.refines_masks
        (True, True, True)
        >>> entry_for("omp").options
        ('sparsity', 'scope')
    """
    if not (isinstance(config_type, type) and issubclass(config_type, MethodConfig)) or not config_type.name:
        raise SparsityConfigError(f"register_method needs a MethodConfig subclass with a name, got {config_type!r}")
    if not calibrated and (needs_hessian or refines_masks):
        raise SparsityConfigError("needs_hessian and refines_masks apply to calibrated methods only")
    if calibrated and (schedulable or shardable or checks_finite):
        raise SparsityConfigError("schedulable, shardable and checks_finite apply to whole-model methods only")

    def wrap(function: MaskFn) -> MaskFn:
        _ENTRIES[config_type.name] = MethodEntry(
            config_type, function, calibrated, needs_hessian, refines_masks, schedulable, shardable, checks_finite
        )
        return function

    return wrap if fn is None else wrap(fn)


def method_names() -> tuple[str, ...]:
    return tuple(_ENTRIES)


def entry_for(method: object) -> MethodEntry:
    """The registry entry of a config (or a method name); an error lists the known ones."""
    name = method if isinstance(method, str) else getattr(method, "name", None)
    entry = _ENTRIES.get(name) if isinstance(name, str) else None
    if entry is None or (not isinstance(method, str) and not isinstance(method, entry.config_type)):
        raise SparsityConfigError(f"method must be one of {', '.join(method_names())}; got {method!r}")
    return entry


def is_calibrated(method: MethodConfig | str) -> bool:
    """Whether the method prunes from activations (and so needs calibration data)."""
    return entry_for(method).calibrated


def config_from_dict(data: dict[str, Any]) -> MethodConfig:
    """Build a method config from ``{"method": name, **options}`` (inverse of ``to_dict``).

    Example:
        >>> config_from_dict({"method": "nm", "pattern": "2:4"}).target_sparsity
        0.5
    """
    data = dict(data)
    entry = entry_for(data.pop("method", None))
    unknown = sorted(set(data) - set(entry.options))
    if unknown:
        raise SparsityConfigError(
            f"unknown option(s) {unknown} for method {entry.name!r}; allowed: {sorted(entry.options)}"
        )
    return entry.config_type(**data)
