"""Sparsity reports count what is in the weights, with N:M compliance."""

from __future__ import annotations

import json

import pytest
import torch

from es_plugins import NMConfig, sparsify_
from es_plugins.masks.report import build_report, count_zeros
from es_plugins.masks.targets import resolve_targets


def test_report_counts_zeros_and_n_m_compliance(tiny_blocks):
    sparsify_(tiny_blocks, NMConfig("2:4"))
    targets = resolve_targets(tiny_blocks)
    report = build_report(tiny_blocks, targets, pattern=(2, 4), meta={"source": "test"})
    assert report.target_sparsity == pytest.approx(0.5)
    assert all(layer.nm_ok for layer in report.layers)
    data = json.loads(report.to_json())
    assert data["meta"]["source"] == "test" and len(data["layers"]) == len(targets)
    assert "2:4" in report.format_table()
    assert not all(layer.nm_ok for layer in build_report(tiny_blocks, targets, pattern=(1, 4)).layers)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64, torch.int8, torch.bool])
def test_count_zeros_matches_comparison_with_zero(dtype):
    values = torch.tensor([0.0, -0.0, 1.0, -2.0, 1e-30, 3.0, 0.0, float("nan"), float("inf")])
    tensor = values.nan_to_num(0.5).to(dtype) if not dtype.is_floating_point else values.to(dtype)
    for chunk in (1, 4, 1 << 24):  # chunk boundaries inside and outside the tensor
        assert count_zeros(tensor, chunk=chunk) == int((tensor == 0).sum()), chunk
    assert count_zeros(tensor.reshape(3, 3).t()) == int((tensor == 0).sum())  # non-contiguous
