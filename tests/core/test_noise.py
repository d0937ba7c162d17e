"""The sweep's bootstrap: intervals for the essential sparsity and the knee, and the warning
when the tolerance is below the noise of the dense value."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from es_plugins.analysis.evaluation import perplexity, perplexity_measurement
from es_plugins.analysis.noise import Measurement, bootstrap
from es_plugins.analysis.sweep import SweepConfig, run_sweep
from es_plugins.analysis.sweep_report import write_sweep_report
from es_plugins.errors import SparsityConfigError

TURN = 0.43


FLIP_WRONG, FLIP_RIGHT = 0.02, 0.18  # per pruned level: 0.9 * 0.02 == 0.1 * 0.18, accuracy unchanged on average


class ExamplesTask:
    """Accuracy on ``n`` fixed test examples, like a real test set: 90 % are right when dense;
    any pruning flips a few answers both ways (no change on average: noise), and past ``TURN``
    the right answers break one after another (the true edge)."""

    def __init__(self, n: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.n, self.dense = n, rng.random(n) < 0.9
        self.breaks = TURN + rng.random(n) * (1 - TURN) * 0.3  # where each right answer breaks

    def evaluate(self, sparsity: float, seed: int) -> Measurement:
        correct = self.dense & (self.breaks > sparsity)
        if sparsity > 0:
            rng = np.random.default_rng(int(sparsity * 1e6))
            flips = np.where(correct, rng.random(self.n) < FLIP_WRONG, rng.random(self.n) < FLIP_RIGHT)
            correct = correct ^ flips
        values = correct.astype(float)
        return Measurement(tuple(values), (1.0,) * self.n, transform="mean", unit="examples")


def test_measurement_checks_and_value():
    m = Measurement((1.0, 0.0, 1.0), (1.0, 1.0, 1.0))
    assert m.value == pytest.approx(2 / 3) and m.units == 3 and m.size == 3
    assert Measurement.from_dict(m.to_dict()) == m
    lm = Measurement((2.0, 4.0), (2.0, 2.0), transform="exp", unit="tokens")
    assert lm.value == pytest.approx(math.exp(1.5))
    assert math.isnan(Measurement((float("inf"),), (1.0,), transform="exp").value)
    with pytest.raises(SparsityConfigError, match="transform must be one of mean, exp"):
        Measurement((1.0,), (1.0,), transform="log")
    with pytest.raises(SparsityConfigError, match="same length"):
        Measurement((1.0, 2.0), (1.0,))


def test_small_test_set_gives_a_wide_interval_and_a_warning_naming_the_size_needed():
    result = run_sweep(ExamplesTask(150).evaluate, SweepConfig(higher_is_better=True, resolution=0.02))
    u = result.uncertainty
    assert u is not None and u.noisy
    low, high = u.essential_interval
    assert low <= result.essential_sparsity <= high and high - low >= 0.05
    expected = math.sqrt(2 * 0.9 * FLIP_WRONG / 150)  # sd of a paired difference of flipped answers
    assert u.noise == pytest.approx(expected, rel=0.5)
    assert u.needed_size > 150
    warning = u.warning("accuracy")
    assert f"{u.needed_size:,} examples" in warning and "below twice the noise" in warning


def test_large_test_set_gives_a_narrow_interval_around_the_true_edge_and_no_warning():
    result = run_sweep(ExamplesTask(20000).evaluate, SweepConfig(higher_is_better=True, resolution=0.01))
    u = result.uncertainty
    assert not u.noisy and u.warning("accuracy") is None and u.needed_size is None
    low, high = u.essential_interval
    assert low <= result.essential_sparsity <= high and high - low <= 0.03
    assert TURN - 0.01 <= low and high <= TURN + 0.05  # within tolerance a little past the turn
    assert u.knee_interval is not None


def test_plain_floats_resample_seeds_or_say_there_is_no_interval(tmp_path):
    def curve(sparsity: float, seed: int) -> float:
        return (0.9 if sparsity <= TURN else 0.9 - 2 * (sparsity - TURN)) + 0.004 * seed

    one_seed = run_sweep(curve, SweepConfig(higher_is_better=True))
    assert one_seed.uncertainty.essential_interval is None and one_seed.uncertainty.noise is None
    write_sweep_report(tmp_path, one_seed, "t", "cmd")
    assert "intervals: none" in (tmp_path / "summary.md").read_text()
    seeds = run_sweep(curve, SweepConfig(higher_is_better=True, seeds=(0, 1, 2)))
    assert seeds.uncertainty.resampled == "3 seeds" and seeds.uncertainty.essential_interval is not None


def test_evidence_survives_resume_and_the_report_carries_the_intervals(tmp_path):
    task = ExamplesTask(300)
    store = tmp_path / "evaluations.json"
    first = run_sweep(task.evaluate, SweepConfig(higher_is_better=True), store)

    def never(sparsity: float, seed: int) -> float:
        raise AssertionError("a resumed sweep evaluated a recorded point again")

    resumed = run_sweep(never, SweepConfig(higher_is_better=True), store)
    assert resumed.uncertainty.to_dict() == first.uncertainty.to_dict()
    write_sweep_report(tmp_path / "report", resumed, "t", "cmd")
    data = json.loads((tmp_path / "report" / "results.json").read_text())
    assert data["uncertainty"]["essential_sparsity_interval"] == list(first.uncertainty.essential_interval)
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "90% bootstrap intervals" in summary and "noise: standard error of the difference from dense" in summary


def test_mismatched_evidence_falls_back_to_seeds():
    config = SweepConfig(higher_is_better=True, seeds=(0, 1))
    values = [{0: 0.9, 1: 0.91}, {0: 0.9, 1: 0.9}]
    evidence = [{0: Measurement((1.0,) * 4, (1.0,) * 4), 1: Measurement((1.0,) * 5, (1.0,) * 5)}, {}]
    u = bootstrap(config, [0.0, 0.5], values, evidence)
    assert u.resampled == "2 seeds"


def test_perplexity_measurement_matches_perplexity_and_counts_every_token():
    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(50, 16)
            self.out = torch.nn.Linear(16, 50)

        def forward(self, input_ids):
            return type("Out", (), {"logits": self.out(self.emb(input_ids))})()

    model = Tiny()
    blocks = torch.randint(0, 50, (5, 300))
    measured = perplexity_measurement(model, blocks, batch_size=2, chunk=128)
    assert measured.size == 5 * 299 and measured.units == 5 * 3  # 299 losses per window: 128 + 128 + 43
    assert measured.value == pytest.approx(perplexity(model, blocks), rel=1e-6)
