"""Mask similarity against hand-computed values, near-zero counts, schedules, Sparsifier."""

from __future__ import annotations

import math

import pytest
import torch

from es_plugins import CubicSchedule, MaskMismatchError, OMPConfig, RandomConfig, Sparsifier, SparsityConfigError
from es_plugins.analysis import mask_similarity, near_zero_stats
from es_plugins.masks.targets import resolve_targets


def test_similarity_hand_computed():
    a = {
        "x": torch.tensor([1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.bool),
        "y": torch.tensor([[1, 0], [0, 0]], dtype=torch.bool),
    }
    b = {
        "x": torch.tensor([1, 1, 0, 0, 1, 0, 0, 0], dtype=torch.bool),
        "y": torch.tensor([[1, 0], [0, 1]], dtype=torch.bool),
    }
    sim = mask_similarity(a, b)
    x = sim.layers["x"]
    assert (x.kept_a, x.kept_b, x.both) == (4, 3, 2)
    assert x.cosine == pytest.approx(2 / math.sqrt(12))
    assert x.iou == pytest.approx(2 / 5)
    assert x.hamming == pytest.approx(3 / 8)
    assert x.chance["cosine"] == pytest.approx(math.sqrt(0.5 * 0.375))
    overall = sim.overall  # 12 positions, |A|=5, |B|=5, both=3
    assert overall.cosine == pytest.approx(3 / 5) and overall.iou == pytest.approx(3 / 7)
    assert overall.hamming == pytest.approx(4 / 12)
    assert "overall" in sim.format_table() and sim.to_dict()["overall"]["cosine"] == pytest.approx(0.6)


def test_random_masks_score_at_chance_and_identical_masks_score_one():
    gen = torch.Generator().manual_seed(0)
    a = {"w": torch.rand(400, 400, generator=gen) < 0.6}
    b = {"w": torch.rand(400, 400, generator=gen) < 0.6}
    sim = mask_similarity(a, b).overall
    assert sim.cosine == pytest.approx(sim.chance["cosine"], abs=0.01)
    assert sim.iou == pytest.approx(sim.chance["iou"], abs=0.01)
    assert sim.hamming == pytest.approx(sim.chance["hamming"], abs=0.01)
    same = mask_similarity(a, a).overall
    assert same.cosine == 1.0 and same.iou == 1.0 and same.hamming == 0.0


def test_similarity_mismatch_errors():
    with pytest.raises(MaskMismatchError, match=r"mask set B does not match mask set A: names not in the model: .b."):
        mask_similarity({"a": torch.ones(2, dtype=torch.bool)}, {"b": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(MaskMismatchError, match="shape"):
        mask_similarity({"a": torch.ones(2, dtype=torch.bool)}, {"a": torch.ones(3, dtype=torch.bool)})


def test_near_zero_absolute_and_relative(tiny_blocks):
    targets = resolve_targets(tiny_blocks)
    stats = near_zero_stats(targets, threshold=0.05, mode="absolute")
    for t in targets:
        w = t.param.detach()
        assert stats.layers[t.name] == (int((w.abs() < 0.05).sum()), w.numel())
    rel = near_zero_stats(targets, threshold=0.5, mode="relative")
    w = targets[0].param.detach()
    assert rel.layers[targets[0].name][0] == int((w.abs() < 0.5 * w.abs().mean()).sum())
    with pytest.raises(SparsityConfigError, match="mode must be one of 'absolute', 'relative'"):
        near_zero_stats(targets, mode="log")


def test_cubic_schedule_values_and_validation():
    schedule = CubicSchedule(start_step=10, end_step=110, initial_sparsity=0.1, frequency=10)
    assert schedule.sparsity_at(0, 0.5) == pytest.approx(0.1)
    assert schedule.sparsity_at(60, 0.5) == pytest.approx(0.5 - 0.4 * 0.5**3)
    assert schedule.sparsity_at(65, 0.5) == schedule.sparsity_at(60, 0.5)  # updates every 10 steps
    assert schedule.sparsity_at(500, 0.5) == 0.5
    levels = [schedule.sparsity_at(s, 0.5) for s in range(0, 120)]
    assert levels == sorted(levels)
    with pytest.raises(SparsityConfigError, match="end_step must be an integer > start_step"):
        CubicSchedule(start_step=5, end_step=5)
    with pytest.raises(SparsityConfigError, match="frequency"):
        CubicSchedule(frequency=0)
    with pytest.raises(SparsityConfigError, match="below initial_sparsity"):
        Sparsifier(OMPConfig(0.1), schedule=CubicSchedule(0, 10, initial_sparsity=0.3))


@pytest.mark.parametrize("config", [OMPConfig(0.6), RandomConfig(0.6, seed=3)])
def test_sparsifier_gradual_masks_are_nested_and_exact(tiny_blocks, config):
    optimizer = torch.optim.AdamW(tiny_blocks.parameters(), lr=1e-2, weight_decay=0.1)
    sparsifier = Sparsifier(config, schedule=CubicSchedule(0, 20, 0.0, 5))
    sparsifier.setup(tiny_blocks, optimizer)
    assert sparsifier.state.sparsity == 0.0
    previous = {n: m.clone() for n, m in sparsifier.state.masks.items()}
    gen = torch.Generator().manual_seed(0)
    for step in range(25):
        changed = sparsifier.step(step)
        assert changed == (step in (5, 10, 15, 20))
        state = sparsifier.state
        assert state.num_pruned == round(sparsifier.level * state.num_weights)
        for name, mask in state.masks.items():
            assert not (mask & ~previous[name]).any()  # never revives a pruned weight
        previous = {n: m.clone() for n, m in state.masks.items()}
        loss = tiny_blocks(torch.randint(0, 50, (4, 6), generator=gen)).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        assert state.count_nonzero_pruned(tiny_blocks) == 0
    assert sparsifier.level == pytest.approx(0.6)
    assert sparsifier.metrics()["sparsity/targets"] == pytest.approx(0.6, abs=1e-3)
    sparsifier.finalize()
    assert not optimizer._optimizer_step_post_hooks


def test_sparsifier_state_round_trip_rebinds(tiny_blocks):
    optimizer = torch.optim.SGD(tiny_blocks.parameters(), lr=0.1)
    first = Sparsifier(OMPConfig(0.5))
    first.setup(tiny_blocks, optimizer)
    saved = first.state_dict()
    first.finalize()
    second = Sparsifier(OMPConfig(0.5))
    second.setup(tiny_blocks, optimizer)
    second.load_state_dict(saved)
    assert all(torch.equal(second.state.masks[n], first.state.masks[n]) for n in saved["packed"])
    assert len(optimizer._optimizer_step_post_hooks) == 1


def test_sparsifier_requires_plan_or_state_and_setup():
    with pytest.raises(SparsityConfigError, match="give a plan"):
        Sparsifier()
    with pytest.raises(RuntimeError, match="setup"):
        Sparsifier(OMPConfig(0.2)).metrics()
    with pytest.raises(SparsityConfigError, match="schedule must be a CubicSchedule"):
        Sparsifier(OMPConfig(0.2), schedule="cubic")
