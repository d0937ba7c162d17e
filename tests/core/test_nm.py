"""N:M masks: exactly N per group along the input axis, deterministic under ties."""

from __future__ import annotations

import pytest
import torch

from es_plugins import NMConfig, SparsityConfigError, SparsityPlan, TargetSpec, sparsify_
from es_plugins.masks import nm_compliance, nm_keep_mask


def reference_nm(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the n largest per group of m along dim 1; ties keep the lower index."""
    groups = scores.reshape(-1, m)
    order = torch.sort(-groups, dim=1, stable=True).indices
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, order[:, :n], True)
    return keep.reshape(scores.shape)


@pytest.mark.parametrize("chunk", [None, 100])
@pytest.mark.parametrize("n,m", [(1, 2), (2, 4), (4, 8), (3, 8), (1, 16)])
def test_exact_n_per_group_matches_reference(monkeypatch, n, m, chunk):
    if chunk:
        monkeypatch.setattr("es_plugins.masks.patterns.CHUNK", chunk)
    scores = torch.randn(24, 64, generator=torch.Generator().manual_seed(0)).abs()
    keep = nm_keep_mask(scores, n, m, in_axis=1)
    assert (keep.reshape(-1, m).sum(1) == n).all()
    assert torch.equal(keep, reference_nm(scores, n, m))


def test_ties_keep_lower_index():
    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, 2.0, 2.0, 2.0]])
    keep = nm_keep_mask(scores, 2, 4, in_axis=1)
    assert keep.tolist() == [[True, True, False, False, False, True, True, False]]


def test_input_axis_zero_groups_along_rows():
    # Conv1D weights are (in, out): groups run down the columns.
    scores = torch.randn(16, 3, generator=torch.Generator().manual_seed(1)).abs()
    keep = nm_keep_mask(scores, 2, 4, in_axis=0)
    assert torch.equal(keep, reference_nm(scores.t().contiguous(), 2, 4).t())
    assert nm_compliance(keep.float(), 2, 4, in_axis=0) == (12, 12)


def test_compliance_counts_violations():
    weight = torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]])
    assert nm_compliance(weight, 2, 4, in_axis=1) == (2, 1)
    assert nm_compliance(torch.ones(2, 6), 2, 4, in_axis=1) == (0, 0)


def test_gpt2_conv1d_nm_on_real_input_axis(tiny_gpt2):
    state = sparsify_(tiny_gpt2, SparsityPlan(NMConfig("2:4")))
    params = dict(tiny_gpt2.named_parameters())
    for name in state.masks:
        weight = params[name]
        assert nm_compliance(weight.detach(), 2, 4, in_axis=0)[1] == weight.numel() // 4
    assert state.sparsity == pytest.approx(0.5)


def test_incompatible_input_dim_errors_or_skips(tiny_blocks):
    tiny_blocks.blocks[0].up = torch.nn.Linear(16, 32)
    tiny_blocks.blocks[1].down = torch.nn.Linear(30, 16)  # 30 not divisible by 4
    plan = SparsityPlan(NMConfig("2:4"), TargetSpec(include=["up", "down"], exclude=["blocks.1.up"]))
    with pytest.raises(SparsityConfigError, match=r"blocks\.1\.down\.weight \(in=30\)"):
        sparsify_(tiny_blocks, plan)
    skip = SparsityPlan(
        NMConfig(2, 4, skip_incompatible=True), TargetSpec(include=["up", "down"], exclude=["blocks.1.up"])
    )
    with pytest.warns(UserWarning, match="leaving 1 layer"):
        state = sparsify_(tiny_blocks, skip)
    assert state.masks["blocks.1.down.weight"].all()
    assert not state.masks["blocks.0.up.weight"].all()


@pytest.mark.parametrize("n", [1, 2, 3])
def test_the_m4_fast_path_keeps_the_n_highest_and_the_lower_index_on_ties(n):
    from es_plugins.masks.patterns import nm_keep_mask

    generator = torch.Generator().manual_seed(n)
    scores = torch.randint(0, 3, (64, 32), generator=generator).float()  # many ties per group
    groups = scores.reshape(-1, 4)
    order = torch.sort(groups, dim=1, descending=True, stable=True).indices[:, :n]  # stable: lower index first
    expected = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, order, True).reshape(scores.shape)
    assert torch.equal(nm_keep_mask(scores, n, 4, in_axis=1), expected)
    assert torch.equal(nm_keep_mask(scores.t().contiguous(), n, 4, in_axis=0), expected.t())
