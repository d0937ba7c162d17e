"""Cross-rank helpers on a real (one-process, gloo) group; the 2-process DDP/FSDP cases run
in tests/integrations (test_accelerate, test_fsdp) with real torch.distributed."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist

from es_plugins import OMPConfig, RandomConfig, SparsityConfigError, SparsityPlan, SparsityState, sparsify_
from es_plugins.engines.distributed import assert_identical_across_ranks, masks_checksum, sparsify_sharded_


@pytest.fixture
def gloo_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_checksum_changes_with_any_bit():
    a = SparsityState({"w": torch.tensor([True, False, True])})
    b = SparsityState({"w": torch.tensor([True, True, True])})
    assert masks_checksum(a) == masks_checksum(SparsityState({"w": a.masks["w"].clone()}))
    assert masks_checksum(a) != masks_checksum(b)


def test_sharded_omp_equals_the_single_process_masks(gloo_group, tiny_blocks):
    reference = sparsify_(copy.deepcopy(tiny_blocks), OMPConfig(0.4))
    state = sparsify_(tiny_blocks, SparsityPlan(OMPConfig(0.4)), sharded=True)
    assert state.meta["sharded"] and all(torch.equal(state.masks[n], reference.masks[n]) for n in reference.masks)
    assert assert_identical_across_ranks(state) == masks_checksum(state)
    with pytest.raises(SparsityConfigError, match="supports omp"):
        sparsify_(tiny_blocks, SparsityPlan(RandomConfig(0.4)), sharded=True)


def test_sparsify_sharded_is_a_deprecated_spelling_of_sparsify_sharded(gloo_group, tiny_blocks):
    reference = sparsify_(copy.deepcopy(tiny_blocks), OMPConfig(0.4), sharded=True)
    with pytest.warns(FutureWarning, match=r"sparsify_\(model, plan, sharded=True\)"):
        state = sparsify_sharded_(tiny_blocks, SparsityPlan(OMPConfig(0.4)))
    assert all(torch.equal(state.masks[n], reference.masks[n]) for n in reference.masks)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])  # bf16: the search runs on int16 keys
def test_the_rank_combine_hook_selects_like_one_process(gloo_group, dtype):
    from es_plugins.engines.sharding import RankCombine
    from es_plugins.masks import select
    from es_plugins.masks.select import keep_largest_masks
    from es_plugins.methods.magnitude import magnitude_score

    weights = [torch.tensor([0.5, -0.1, 0.5, 2.0], dtype=dtype), torch.tensor([0.5, 0.3], dtype=dtype)]
    scores, numels = [magnitude_score(w) for w in weights], [w.numel() for w in weights]
    combine = RankCombine()
    assert combine.shards == 1 and combine.sum(7) == 7
    alone = keep_largest_masks(scores, numels, 3)
    across = keep_largest_masks(scores, numels, 3, combine=combine)  # ties at 0.5 split by rank order
    assert all(torch.equal(a, b) for a, b in zip(alone, across))
    equal = select.kth_smallest_threshold(scores, numels, 3).equal  # scores equal to t = 0.5, per tensor
    assert equal == [2, 1] and combine.tie_quotas(equal, 2) == [2, 0]


def test_tie_quotas_across_ranks_are_spent_in_tensor_then_rank_order(monkeypatch):
    """Three ranks hold ties of two tensors; a budget of 5 goes tensor 0 (ranks 0, 1, 2), then tensor 1."""
    from es_plugins.engines import sharding

    per_rank = [[1, 4], [2, 0], [1, 3]]  # scores equal to t: per rank, per tensor
    monkeypatch.setattr(sharding, "_all_gather_objects", lambda value, group=None: per_rank)
    monkeypatch.setattr(sharding.dist, "get_world_size", lambda group=None: 3)
    quotas = {}
    for rank in range(3):
        monkeypatch.setattr(sharding.dist, "get_rank", lambda group=None, rank=rank: rank)
        quotas[rank] = sharding.RankCombine().tie_quotas(per_rank[rank], 5)
    assert quotas == {0: [1, 1], 1: [2, 0], 2: [1, 0]}
