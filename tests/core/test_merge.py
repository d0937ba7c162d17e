"""Sparse merge arithmetic (framework-free; the PEFT adapter feeds it merged LoRA weights)."""

from __future__ import annotations

import pytest
import torch

from es_plugins.engines.merge import DISCARD_WARNING_FRACTION, MergedLayer, sparsify_merged_


def test_merge_re_masks_and_reports_the_discarded_share():
    base = torch.tensor([[1.0, 0.0, 2.0, 0.0]])
    mask = base != 0
    update = torch.tensor([[0.0, 3.0, 0.0, 4.0]])  # entirely outside the mask
    weight = base + update
    with pytest.warns(UserWarning, match="discarded 100.0%"):
        report = sparsify_merged_({"w": MergedLayer(weight, base, mask)})
    assert torch.equal(weight, base) and report.discarded_ratio == pytest.approx(1.0)


def test_update_trained_inside_the_mask_discards_nothing():
    base = torch.tensor([[1.0, 0.0, 2.0, 0.0]])
    mask = base != 0
    weight = base + torch.tensor([[0.5, 9.0, 0.5, 9.0]])
    report = sparsify_merged_({"w": MergedLayer(weight, base, mask, trained_in_mask=True)})
    assert report.discarded_ratio == 0.0 and report.layers == {"w": 0.0}
    assert torch.equal(weight, torch.tensor([[1.5, 0.0, 2.5, 0.0]]))


def test_pattern_projects_to_n_m_within_the_mask():
    torch.manual_seed(0)
    base = torch.randn(4, 8)
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[:, 0] = False  # already pruned: never revived by the projection
    weight = base * mask + 0.01
    sparsify_merged_({"w": MergedLayer(weight, base * mask, mask)}, pattern="2:4")
    groups = (weight != 0).reshape(-1, 4).sum(dim=1)
    assert int(groups.max()) <= 2 and bool((weight[:, 0] == 0).all())
    assert 0 < DISCARD_WARNING_FRACTION < 1
