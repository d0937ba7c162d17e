"""OMP (global/layer), random and N:M through the public one-call API."""

from __future__ import annotations

import pytest
import torch

from es_plugins import NMConfig, OMPConfig, RandomConfig, SparsityPlan, sparsify_
from es_plugins.masks.report import build_report
from es_plugins.masks.targets import resolve_targets


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.77])
def test_omp_global_exact_count_and_smallest_magnitudes(tiny_bert, sparsity):
    targets = resolve_targets(tiny_bert)
    weights = {t.name: t.param.detach().clone() for t in targets}
    state = sparsify_(tiny_bert, SparsityPlan(OMPConfig(sparsity)))
    total = sum(w.numel() for w in weights.values())
    assert state.num_pruned == round(sparsity * total)
    if 0 < sparsity:
        pruned_max = max(float(weights[n][~m].abs().max()) for n, m in state.masks.items() if (~m).any())
        kept_min = min(float(weights[n][m].abs().min()) for n, m in state.masks.items())
        assert pruned_max <= kept_min
    for t in targets:  # zeros are in the real weights, exactly where the mask says
        assert torch.equal(t.param.detach() == 0, ~state.masks[t.name])


def test_omp_layer_scope_same_fraction_each_layer(tiny_bert):
    state = sparsify_(tiny_bert, SparsityPlan(OMPConfig(0.4, scope="layer")))
    for name, mask in state.masks.items():
        assert int((~mask).sum()) == round(0.4 * mask.numel()), name


def test_global_differs_from_layer(tiny_gpt2):
    import copy

    other = copy.deepcopy(tiny_gpt2)
    global_state = sparsify_(tiny_gpt2, SparsityPlan(OMPConfig(0.5)))
    layer_state = sparsify_(other, SparsityPlan(OMPConfig(0.5, scope="layer")))
    fractions = [float((~m).float().mean()) for m in global_state.masks.values()]
    assert max(fractions) - min(fractions) > 0.01
    assert any(not torch.equal(global_state.masks[n], layer_state.masks[n]) for n in global_state.masks)


def test_bf16_model_exact(tiny_bert):
    tiny_bert.to(torch.bfloat16)
    state = sparsify_(tiny_bert, SparsityPlan(OMPConfig(0.5)))
    assert state.num_pruned == round(0.5 * state.num_weights)
    assert build_report(tiny_bert, resolve_targets(tiny_bert)).target_zeros >= state.num_pruned


def test_random_is_seeded_and_exact(tiny_bert):
    import copy

    a, b, c = tiny_bert, copy.deepcopy(tiny_bert), copy.deepcopy(tiny_bert)
    sa = sparsify_(a, SparsityPlan(RandomConfig(0.3, seed=1)))
    sb = sparsify_(b, SparsityPlan(RandomConfig(0.3, seed=1)))
    sc = sparsify_(c, SparsityPlan(RandomConfig(0.3, seed=2)))
    assert all(torch.equal(sa.masks[n], sb.masks[n]) for n in sa.masks)
    assert any(not torch.equal(sa.masks[n], sc.masks[n]) for n in sa.masks)
    assert sa.num_pruned == round(0.3 * sa.num_weights)


def test_random_is_not_magnitude(tiny_bert):
    import copy

    other = copy.deepcopy(tiny_bert)
    omp = sparsify_(tiny_bert, SparsityPlan(OMPConfig(0.5)))
    rnd = sparsify_(other, SparsityPlan(RandomConfig(0.5)))
    overlap = sum(int((omp.masks[n] & rnd.masks[n]).sum()) for n in omp.masks) / (0.5 * omp.num_weights)
    assert 0.4 < overlap < 0.6  # chance level for independent masks of density 0.5


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8)])
def test_nm_report_compliance(tiny_bert, n, m):
    state = sparsify_(tiny_bert, SparsityPlan(NMConfig(n, m)))
    report = build_report(tiny_bert, resolve_targets(tiny_bert), pattern=(n, m))
    assert all(layer.nm_ok for layer in report.layers)
    assert report.target_sparsity == pytest.approx(1 - n / m)
    assert state.sparsity == pytest.approx(1 - n / m)


def test_sparsegpt_block_selection_equals_a_stable_sort_under_ties():
    from es_plugins.methods.sparsegpt import lowest

    generator = torch.Generator().manual_seed(0)
    for trial in range(60):
        n = int(torch.randint(1, 3000, (1,), generator=generator))
        scores = (
            torch.randint(0, 20, (n,), generator=generator).float() if trial % 2 else torch.rand(n, generator=generator)
        )
        count = int(torch.randint(0, n + 1, (1,), generator=generator))
        expected = torch.zeros(n, dtype=torch.bool)
        expected[torch.sort(scores, stable=True).indices[:count]] = True
        assert torch.equal(lowest(scores, count), expected)


def test_sparsegpt_group_selection_equals_the_n_m_mask_under_ties():
    from es_plugins.masks.patterns import nm_keep_mask
    from es_plugins.methods.sparsegpt import _prune_in_groups_

    generator = torch.Generator().manual_seed(1)
    for m, n in ((4, 2), (8, 4), (4, 1)):
        scores = torch.randint(0, 4, (m, 300), generator=generator).float()  # many ties; (M, rows) as in the loop
        pruned = torch.zeros(m, 300, dtype=torch.bool)
        assert _prune_in_groups_(pruned, scores, n) is pruned
        assert torch.equal(pruned, ~nm_keep_mask(scores, n, m, in_axis=0))


def test_each_method_module_scores_as_its_docstring_says(tiny_blocks):
    from es_plugins.methods.magnitude import magnitude_score
    from es_plugins.methods.nm import nm_masks
    from es_plugins.methods.random import random_masks
    from es_plugins.methods.selection import PRUNED_SCORE, respecting, select_by_scores

    weight = torch.tensor([[-3.0, 1.0], [0.5, -2.0]])
    out = torch.empty(4)
    assert torch.equal(magnitude_score(weight)(0, 4, out), torch.tensor([3.0, 1.0, 0.5, 2.0]))
    keep = torch.tensor([True, False, True, True])
    masked = respecting(magnitude_score(weight), keep)(0, 4, torch.empty(4))
    assert masked[1] == PRUNED_SCORE and masked[0] == 3.0
    targets = resolve_targets(tiny_blocks)
    progress = lambda items: items  # noqa: E731
    chosen = dict(select_by_scores(targets, [magnitude_score(t.param) for t in targets], 0.5, "layer", progress, {}))
    assert all(int((~m).sum()) == round(0.5 * m.numel()) for m in chosen.values())
    nm = dict(nm_masks(targets, NMConfig("2:4"), progress, {}))
    assert all(int(m.view(-1, 4).sum(1).max()) == 2 for m in nm.values())
    first = dict(random_masks(targets, RandomConfig(0.3, seed=1), progress, {}))
    again = dict(random_masks(targets, RandomConfig(0.3, seed=1), progress, {}))
    assert all(torch.equal(first[n], again[n]) for n in first)


@pytest.mark.parametrize("scope, sparsity", [("global", 0.5), ("global", 0.0), ("layer", 0.5)])
def test_omp_names_the_weight_holding_a_nan_and_global_omp_reads_it_once(tiny_bert, monkeypatch, scope, sparsity):
    """Global OMP refuses NaN/Inf in the selection pass it makes anyway (no separate read of
    the weights: the finiteness scan is never called); per layer, the up-front scan does."""
    import es_plugins.methods as methods
    from es_plugins.errors import NonFiniteWeightError

    scans = []
    scan = methods._finite_range
    monkeypatch.setattr(methods, "_finite_range", lambda values: scans.append(1) or scan(values))
    with torch.no_grad():
        tiny_bert.bert.encoder.layer[1].output.dense.weight[0, 3] = float("nan")
    with pytest.raises(NonFiniteWeightError, match=r"layer\.1\.output\.dense"):
        sparsify_(tiny_bert, OMPConfig(sparsity, scope))
    assert bool(scans) == (scope == "layer")
