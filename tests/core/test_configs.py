"""Bad configuration fails at construction with the parameter name and allowed values."""

from __future__ import annotations

import math

import pytest
import torch

from es_plugins import (
    NMConfig,
    NonFiniteWeightError,
    OMPConfig,
    RandomConfig,
    SparsityConfigError,
    SparsityPlan,
    sparsify_,
)
from es_plugins.methods import config_from_dict, parse_pattern


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, math.nan, "half", None])
def test_sparsity_outside_unit_interval(value):
    with pytest.raises(SparsityConfigError, match=r"sparsity must be .*\[0, 1\)"):
        OMPConfig(sparsity=value)
    with pytest.raises(SparsityConfigError, match="sparsity"):
        RandomConfig(sparsity=value)


def test_scope_lists_allowed_values():
    with pytest.raises(SparsityConfigError, match="scope must be one of 'global', 'layer'; got 'model'"):
        OMPConfig(0.3, scope="model")


@pytest.mark.parametrize("n,m", [(4, 4), (5, 4), (0, 4), (-1, 4), (1, 1), (2, 300)])
def test_bad_nm(n, m):
    with pytest.raises(SparsityConfigError, match="N:M|m must be"):
        NMConfig(n=n, m=m)


def test_nm_types_and_pattern_parsing():
    with pytest.raises(SparsityConfigError, match="integer"):
        NMConfig(n=2.0, m=4)
    assert parse_pattern("4:8") == (4, 8)
    with pytest.raises(SparsityConfigError, match="N:M"):
        parse_pattern("2-4")
    assert NMConfig(2, 4).target_sparsity == 0.5


def test_random_seed_validated():
    with pytest.raises(SparsityConfigError, match="seed"):
        RandomConfig(0.5, seed=-1)


def test_config_round_trip_and_unknown_method():
    for cfg in (OMPConfig(0.3, "layer"), RandomConfig(0.2, seed=4), NMConfig(4, 8, True)):
        assert config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(
        SparsityConfigError, match="method must be one of omp, nm, random, wanda, sparsegpt; got .lottery."
    ):
        config_from_dict({"method": "lottery"})
    with pytest.raises(SparsityConfigError, match="unknown option"):
        config_from_dict({"method": "omp", "sparsity": 0.1, "pattern": "2:4"})


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_weights_rejected(tiny_blocks, bad):
    with torch.no_grad():
        tiny_blocks.blocks[1].up.weight[0, 0] = bad
    before = tiny_blocks.blocks[0].up.weight.clone()
    with pytest.raises(NonFiniteWeightError, match=r"blocks\.1\.up\.weight"):
        sparsify_(tiny_blocks, SparsityPlan(OMPConfig(0.5)))
    assert torch.equal(tiny_blocks.blocks[0].up.weight, before)  # nothing was pruned
