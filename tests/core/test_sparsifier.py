"""Sparsifier: the whole surface an adapter calls (setup, step, restore, finalize, metrics)."""

from __future__ import annotations

import pytest
import torch

from es_plugins import CubicSchedule, OMPConfig, Sparsifier, SparsityConfigError, SparsityState, TargetSpec


def _steps(model, optimizer, n: int, on_step=None) -> None:
    for step in range(n):
        if on_step is not None:
            on_step(step)
        loss = model(torch.randint(0, 50, (4, 6))).logsumexp(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_setup_prunes_and_keeps_masks_through_adamw(tiny_blocks):
    optimizer = torch.optim.AdamW(tiny_blocks.parameters(), lr=1e-2, weight_decay=0.1)
    sparsifier = Sparsifier("omp", sparsity=0.5)  # a method name with its options
    assert not sparsifier.is_setup
    state = sparsifier.setup(tiny_blocks, optimizer)
    assert sparsifier.is_setup and state.sparsity == pytest.approx(0.5, abs=1e-3)
    _steps(tiny_blocks, optimizer, 5)
    assert state.count_nonzero_pruned(tiny_blocks) == 0
    assert sparsifier.metrics()["sparsity/targets"] == pytest.approx(state.sparsity)
    sparsifier.finalize()
    _steps(tiny_blocks, optimizer, 2)  # hooks removed: a plain model that may regrow
    assert state.count_nonzero_pruned(tiny_blocks) > 0


def test_gradual_schedule_gives_nested_masks_up_to_the_target(tiny_blocks):
    optimizer = torch.optim.SGD(tiny_blocks.parameters(), lr=0.1)
    sparsifier = Sparsifier(OMPConfig(0.6), schedule=CubicSchedule(0, 8, 0.0, 2))
    sparsifier.setup(tiny_blocks, optimizer)
    history = []

    def on_step(step):
        if sparsifier.step(step):
            history.append({n: m.clone() for n, m in sparsifier.state.masks.items()})

    _steps(tiny_blocks, optimizer, 10, on_step)
    assert sparsifier.level == pytest.approx(0.6) and len(history) >= 3
    for earlier, later in zip(history, history[1:]):
        assert all(bool((later[n] <= earlier[n]).all()) for n in earlier)
    with pytest.raises(SparsityConfigError, match="beyond training"):
        sparsifier.check_schedule_fits(max_steps=5)


def test_restore_refuses_another_plan_unless_told(tiny_blocks, tmp_path):
    saved = Sparsifier(OMPConfig(0.4))
    saved.setup(tiny_blocks)
    path = saved.save_masks(tmp_path / "masks.safetensors", global_step=7)
    state = SparsityState.load(path)
    assert state.meta["global_step"] == 7
    with pytest.raises(SparsityConfigError, match="keep_saved_masks"):
        Sparsifier(OMPConfig(0.6)).restore(state)
    kept = Sparsifier(OMPConfig(0.6), keep_saved_masks=True)
    kept.restore(SparsityState.load(path))
    assert kept.setup(tiny_blocks).sparsity == pytest.approx(0.4, abs=1e-3)


def test_bad_construction_fails_early():
    with pytest.raises(SparsityConfigError, match="plan"):
        Sparsifier()
    with pytest.raises(SparsityConfigError, match="need a plan"):
        Sparsifier(targets=TargetSpec())
    with pytest.raises(SparsityConfigError, match="needs calibration"):
        Sparsifier("wanda")
    with pytest.raises(SparsityConfigError, match="unstructured"):
        Sparsifier("nm", schedule=CubicSchedule())
    with pytest.raises(RuntimeError, match="setup"):
        Sparsifier("omp").metrics()
