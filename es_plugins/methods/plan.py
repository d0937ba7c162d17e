"""SparsityPlan: what to prune (targets) and how (method config), as one validated object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import SparsityConfigError
from ..masks.targets import TargetSpec
from . import MethodConfig, OMPConfig, config_from_dict


@dataclass(frozen=True)
class SparsityPlan:
    """A pruning method plus the target selection it applies to.

    Example:
        >>> from es_plugins import SparsityPlan, OMPConfig
        >>> SparsityPlan(OMPConfig(sparsity=0.4)).method.sparsity
        0.4
    """

    method: MethodConfig = field(default_factory=OMPConfig)
    targets: TargetSpec = field(default_factory=TargetSpec)

    def __post_init__(self) -> None:
        if not isinstance(self.method, MethodConfig):
            raise SparsityConfigError(
                f"method must be a method config (OMPConfig, RandomConfig, NMConfig, ...), got {self.method!r}"
            )
        if not isinstance(self.targets, TargetSpec):
            raise SparsityConfigError(f"targets must be a TargetSpec, got {self.targets!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method.to_dict(), "targets": self.targets.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SparsityPlan":
        targets = dict(data.get("targets") or {})
        targets.pop("filter_fn", None)
        return cls(config_from_dict(data["method"]), TargetSpec(**targets))


def make_plan(
    plan: "SparsityPlan | MethodConfig | str", targets: TargetSpec | None = None, **options: Any
) -> SparsityPlan:
    """Normalise what adapters accept into a :class:`SparsityPlan`.

    ``plan`` may be a plan, a method config, or a method name with its options
    (``make_plan("omp", sparsity=0.4)``); unknown names and options fail here, before
    any training starts.
    """
    if isinstance(plan, str):
        plan = config_from_dict({"method": plan, **options})
    elif options:
        raise SparsityConfigError(f"options {sorted(options)} are only accepted with a method name")
    if isinstance(plan, MethodConfig):
        return SparsityPlan(plan, targets or TargetSpec())
    if isinstance(plan, SparsityPlan):
        if targets is not None:
            raise SparsityConfigError("targets are already part of the SparsityPlan")
        return plan
    raise SparsityConfigError(f"expected a SparsityPlan, a method config or a method name; got {plan!r}")
