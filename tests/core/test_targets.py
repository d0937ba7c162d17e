"""Target selection: defaults, PEFT-style include/exclude, filter_fn, tied weights, errors."""

from __future__ import annotations

import pytest
from torch import nn

from es_plugins import NoTargetsError, OMPConfig, SparsityConfigError, SparsityPlan, TargetSpec, sparsify_
from es_plugins.masks.targets import resolve_targets


def test_default_targets_are_block_linears_of_bert(tiny_bert):
    names = [t.name for t in resolve_targets(tiny_bert)]
    assert len(names) == 2 * 6  # q, k, v, attn-out, intermediate, output per layer
    assert all(n.startswith("bert.encoder.layer.") and n.endswith(".weight") for n in names)
    assert not any("embeddings" in n or "pooler" in n or "classifier" in n or "LayerNorm" in n for n in names)


def test_default_targets_gpt2_conv1d_use_input_axis_zero_and_skip_tied_head(tiny_gpt2):
    targets = resolve_targets(tiny_gpt2)
    assert {t.module_name.split(".")[-1] for t in targets} == {"c_attn", "c_proj", "c_fc"}
    assert all(t.in_axis == 0 for t in targets)
    assert not any("wte" in t.name or "lm_head" in t.name for t in targets)


def test_include_list_matches_names_and_suffixes(tiny_bert):
    spec = TargetSpec(include=["query", "bert.encoder.layer.1.output.dense"])
    names = [t.name for t in resolve_targets(tiny_bert, spec)]
    assert names == [
        "bert.encoder.layer.0.attention.self.query.weight",
        "bert.encoder.layer.1.attention.self.query.weight",
        "bert.encoder.layer.1.output.dense.weight",
    ]


def test_include_regex_must_match_whole_name_and_exclude_wins(tiny_bert):
    spec = TargetSpec(include=r".*\.(query|value)", exclude=r".*layer\.0\..*")
    names = [t.name for t in resolve_targets(tiny_bert, spec)]
    assert names == [
        "bert.encoder.layer.1.attention.self.query.weight",
        "bert.encoder.layer.1.attention.self.value.weight",
    ]


def test_partial_regex_does_not_match():
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(NoTargetsError):
        resolve_targets(model, TargetSpec(include="ery"))


def test_filter_fn(tiny_bert):
    spec = TargetSpec(filter_fn=lambda module, name: module.out_features > 32)
    names = [t.name for t in resolve_targets(tiny_bert, spec)]
    assert names == ["bert.encoder.layer.0.intermediate.dense.weight", "bert.encoder.layer.1.intermediate.dense.weight"]


def test_tied_weight_pruned_once():
    model = nn.Module()
    shared = nn.Linear(8, 8, bias=False)
    model.blocks = nn.ModuleList([shared, nn.Linear(8, 8)])
    model.alias = shared
    targets = resolve_targets(model, TargetSpec(include=["0", "alias", "1"]))
    assert [t.name for t in targets] == ["blocks.0.weight", "blocks.1.weight"]
    state = sparsify_(model, SparsityPlan(OMPConfig(0.5), TargetSpec(include=["0", "alias", "1"])))
    assert state.num_weights == 128 and state.num_pruned == 64


def test_model_without_blocks_excludes_heads():
    model = nn.Sequential()
    model.add_module("fc1", nn.Linear(4, 4))
    model.add_module("classifier", nn.Linear(4, 2))
    assert [t.name for t in resolve_targets(model)] == ["fc1.weight"]


def test_no_match_error_lists_candidates(tiny_bert):
    with pytest.raises(NoTargetsError) as err:
        resolve_targets(tiny_bert, TargetSpec(include=["nonexistent"]))
    assert "bert.encoder.layer.0.attention.self.query" in str(err.value)
    assert "include=('nonexistent',)" in str(err.value)


def test_no_linear_layers_at_all():
    with pytest.raises(NoTargetsError, match="no Linear or Conv1D"):
        resolve_targets(nn.Sequential(nn.Conv2d(1, 1, 3)))


@pytest.mark.parametrize("bad", [dict(include="("), dict(exclude=[]), dict(include=[3]), dict(filter_fn=5)])
def test_bad_spec_rejected_at_construction(bad):
    with pytest.raises(SparsityConfigError):
        TargetSpec(**bad)
