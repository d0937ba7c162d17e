"""SparsityPlan and make_plan: what adapters accept, normalised and validated up front."""

from __future__ import annotations

import pytest

from es_plugins import NMConfig, OMPConfig, SparsityConfigError, SparsityPlan, TargetSpec
from es_plugins.methods.plan import make_plan


def test_plan_round_trip_and_type_checks():
    plan = SparsityPlan(NMConfig(2, 4), TargetSpec(include=["query"], exclude=r".*0.*"))
    assert SparsityPlan.from_dict(plan.to_dict()) == plan
    with pytest.raises(SparsityConfigError, match="method must be a method config"):
        SparsityPlan("omp")


def test_make_plan_accepts_names_configs_and_plans():
    assert make_plan("omp", sparsity=0.3) == SparsityPlan(OMPConfig(0.3))
    spec = TargetSpec(include=["up"])
    assert make_plan(OMPConfig(0.3), spec).targets == spec
    plan = SparsityPlan(OMPConfig(0.3))
    assert make_plan(plan) is plan
    with pytest.raises(SparsityConfigError, match="only accepted with a method name"):
        make_plan(OMPConfig(0.3), sparsity=0.4)
    with pytest.raises(SparsityConfigError, match="already part of the SparsityPlan"):
        make_plan(plan, spec)
