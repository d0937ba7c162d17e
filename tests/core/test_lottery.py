"""LotteryTicket: the round loop, rewinding, nesting, exact counts and resume — driven by a
plain torch loop here (the HF and Lightning adapters only map their events onto it)."""

from __future__ import annotations

import pytest
import torch

from es_plugins import LotteryConfig, LotteryTicket, Sparsifier, SparsityConfigError, TargetSpec
from es_plugins.masks.targets import resolve_targets


def _train(model, state, steps: int = 5, seed: int = 0) -> dict[str, float]:
    """A few AdamW steps with the round's masks enforced (a fresh optimizer each round)."""
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sparsifier = Sparsifier(state=state) if state is not None else None
    if sparsifier is not None:
        sparsifier.setup(model, optimizer)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        ids = torch.randint(0, 50, (4, 6))
        loss = model(ids).logsumexp(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if sparsifier is not None:
        sparsifier.finalize()
    return {"loss": float(loss.detach())}


def test_run_prunes_nested_exact_masks_and_rewinds(tiny_blocks, tmp_path):
    config = LotteryConfig(prune_fraction=0.3, rounds=2)
    ticket = LotteryTicket(config, tmp_path / "lth")
    pretrained = {n: p.detach().clone() for n, p in tiny_blocks.named_parameters()}
    seen = []

    def train_round(index, state):
        if state is not None:  # rewound: survivors hold their pre-trained values exactly
            params = dict(tiny_blocks.named_parameters())
            for name, mask in state.masks.items():
                assert torch.equal(params[name].detach(), pretrained[name] * mask)
        seen.append(None if state is None else {n: m.clone() for n, m in state.masks.items()})
        return _train(tiny_blocks, state)

    records = ticket.run(tiny_blocks, train_round)
    assert [r.round for r in records] == [0, 1, 2]
    total = sum(t.numel for t in resolve_targets(tiny_blocks))
    for r, masks in enumerate(seen[1:], start=1):
        pruned = sum(int((~m).sum()) for m in masks.values())
        assert pruned == round(config.sparsity_after(r) * total)  # exact count per round
    first, second = seen[1], seen[2]
    assert all(bool((second[n] <= first[n]).all()) for n in first)  # nested: nothing revived
    assert records[2].sparsity == pytest.approx(config.sparsity_after(2), abs=1e-3)


def test_run_resumes_at_the_interrupted_round(tiny_blocks, tmp_path):
    config = LotteryConfig(prune_fraction=0.2, rounds=2)
    calls = []

    def crashing(index, state):
        calls.append(index)
        if index == 1:
            raise KeyboardInterrupt
        return _train(tiny_blocks, state)

    with pytest.raises(KeyboardInterrupt):
        LotteryTicket(config, tmp_path).run(tiny_blocks, crashing)
    resumed = LotteryTicket(config, tmp_path)
    assert resumed.current_round == 1
    records = resumed.run(tiny_blocks, lambda index, state: calls.append(index) or _train(tiny_blocks, state))
    assert calls == [0, 1, 1, 2] and len(records) == 3


def test_a_folder_of_another_config_is_refused(tiny_blocks, tmp_path):
    LotteryTicket(LotteryConfig(rounds=1), tmp_path).run(tiny_blocks, lambda i, s: _train(tiny_blocks, s))
    with pytest.raises(SparsityConfigError, match="different lottery config"):
        LotteryTicket(LotteryConfig(rounds=2), tmp_path)


def test_step_driver_captures_rewind_prunes_at_boundaries_and_checks_budget(tiny_blocks, tmp_path):
    config = LotteryConfig(prune_fraction=0.5, rounds=1, rewind=2, targets=TargetSpec())
    ticket = LotteryTicket(config, tmp_path)
    with pytest.raises(SparsityConfigError, match="max_steps >= 8"):
        ticket.check_step_budget(steps_per_round=4, max_steps=7)
    with pytest.raises(SparsityConfigError, match="beyond the first round"):
        ticket.check_step_budget(steps_per_round=1, max_steps=0)
    assert ticket.start(tiny_blocks) is None and not ticket.has_rewind_point  # rewind step 2, not 0
    began = [ticket.after_step(tiny_blocks, step, 4, lambda: {"loss": 1.0}) for step in range(1, 9)]
    assert ticket.has_rewind_point
    assert [b is not None for b in began] == [False, False, False, True, False, False, False, False]
    assert ticket.finished and [r.metric for r in ticket.records] == [{"loss": 1.0}, {"loss": 1.0}]
    assert began[3].sparsity == pytest.approx(0.5, abs=1e-3)


def test_round_masks_have_the_one_masks_file_name_and_compare_masks_finds_them(tiny_blocks, tmp_path, capsys):
    from es_plugins.cli import main as cli
    from es_plugins.masks.state import MASKS_FILENAME

    ticket = LotteryTicket(LotteryConfig(prune_fraction=0.3, rounds=2), tmp_path / "lth")
    ticket.run(tiny_blocks, lambda index, state: _train(tiny_blocks, state))
    for index in (1, 2):
        assert (tmp_path / "lth" / f"round-{index}" / MASKS_FILENAME).is_file()
    assert cli(["compare-masks", str(tmp_path / "lth" / "round-1"), str(tmp_path / "lth" / "round-2")]) == 0
    assert "overall" in capsys.readouterr().out
    # a run saved before the rename still resumes from round-R/masks.safetensors
    legacy = tmp_path / "lth" / "round-2" / "masks.safetensors"
    (tmp_path / "lth" / "round-2" / MASKS_FILENAME).rename(legacy)
    assert ticket._masks_path(2) == legacy
