"""Sparsity reports count what is in the weights, with N:M compliance."""

from __future__ import annotations

import json

import pytest

from es_plugins import NMConfig, build_report, resolve_targets, sparsify_


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
