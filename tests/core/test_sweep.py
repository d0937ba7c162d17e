"""Sweep logic on synthetic curves: tolerance, refinement count, knee, NaN, resume."""

from __future__ import annotations

import json
import math

import pytest

from es_plugins import SparsityConfigError
from es_plugins.analysis.sweep import SweepConfig, find_knee, run_sweep


def accuracy_curve(essential: float, dense: float = 0.9):
    """Flat until `essential`, then falling fast (higher is better)."""
    return lambda s, seed: dense if s <= essential else dense - 2.0 * (s - essential)


def test_monotone_curve_refined_to_resolution():
    calls = []
    curve = accuracy_curve(0.43)
    result = run_sweep(lambda s, seed: calls.append(s) or curve(s, seed), SweepConfig(resolution=0.025))
    assert result.first_failing - result.essential_sparsity <= 0.025 + 1e-9
    assert result.essential_sparsity <= 0.43 < result.first_failing
    # 10 grid levels, then bisection of [0.4, 0.5]: 0.45 fails, 0.425 passes -> gap 0.025, done
    assert len(calls) == 12 and result.evaluations == 12
    assert result.essential_sparsity == pytest.approx(0.425) and result.first_failing == pytest.approx(0.45)
    assert sum(lv.refined for lv in result.levels) == 2


def test_relative_and_absolute_tolerance():
    curve = lambda s, seed: 1.0 - 0.2 * s  # loses 2 % per 10 %
    rel = run_sweep(curve, SweepConfig(tolerance=0.05, resolution=0.05))
    assert rel.essential_sparsity == pytest.approx(0.25)  # 1 - 0.2*0.25 = 0.95 = dense*(1-5%)
    absolute = run_sweep(curve, SweepConfig(tolerance=0.1, tolerance_kind="absolute", resolution=0.05))
    assert absolute.essential_sparsity == pytest.approx(0.5)


def test_lower_is_better_perplexity_and_log_knee():
    ppl = {
        0.0: 30.0,
        0.1: 29.4,
        0.2: 32.1,
        0.3: 46.8,
        0.4: 90.8,
        0.5: 447.0,
        0.6: 4000.0,
        0.7: 66649.0,
        0.8: 9e4,
        0.9: 1e5,
    }
    config = SweepConfig(higher_is_better=False, tolerance=0.1, resolution=0.1)
    result = run_sweep(lambda s, seed: ppl[round(s, 1)], config)
    assert result.essential_sparsity == pytest.approx(0.2) and result.first_failing == pytest.approx(0.3)
    assert result.evaluations == 10  # already 0.1 apart: no refinement
    assert 0.2 <= result.knee <= 0.5


def test_noisy_curve_uses_contiguous_run_from_dense():
    values = {0.0: 0.80, 0.1: 0.801, 0.2: 0.78, 0.3: 0.799, 0.4: 0.70}
    config = SweepConfig(levels=(0.1, 0.2, 0.3, 0.4), resolution=0.1)
    result = run_sweep(lambda s, seed: values[round(s, 1)], config)
    assert result.essential_sparsity == pytest.approx(0.1)  # 0.3 passing again does not extend it
    assert result.first_failing == pytest.approx(0.2)


def test_flat_curve_has_no_knee_and_everything_passes():
    result = run_sweep(lambda s, seed: 0.5, SweepConfig())
    assert result.essential_sparsity == pytest.approx(0.9) and result.first_failing is None
    assert result.knee is None and result.evaluations == 10


def test_immediate_collapse():
    result = run_sweep(lambda s, seed: 0.9 if s == 0 else 0.1, SweepConfig(resolution=0.025))
    assert result.essential_sparsity == 0.0 and result.first_failing <= 0.025
    assert result.evaluations == 10 + 2  # 0.05, 0.025


def test_seeds_mean_and_spread():
    result = run_sweep(
        lambda s, seed: 0.8 + 0.01 * seed - s, SweepConfig(levels=(0.5,), seeds=(0, 1, 2), resolution=0.5)
    )
    dense = result.levels[0]
    assert dense.mean == pytest.approx(0.81) and dense.std == pytest.approx(0.01)
    assert result.evaluations == 6


def test_nan_is_flagged_and_counts_as_failure():
    values = lambda s, seed: math.nan if s >= 0.6 else 1.0
    result = run_sweep(values, SweepConfig(resolution=0.1))
    flagged = [lv.sparsity for lv in result.levels if lv.flagged]
    assert flagged == pytest.approx([0.6, 0.7, 0.8, 0.9])
    assert result.essential_sparsity == pytest.approx(0.5)
    assert all(math.isnan(lv.mean) for lv in result.levels if lv.flagged)
    data = result.to_dict()
    assert [row["flagged_nan"] for row in data["levels"]].count(True) == 4


def test_dense_nan_is_an_error():
    with pytest.raises(SparsityConfigError, match="dense model"):
        run_sweep(lambda s, seed: math.nan, SweepConfig(levels=(0.1,)))


def test_resume_skips_evaluated_levels(tmp_path):
    store = tmp_path / "evaluations.json"
    curve = accuracy_curve(0.43)
    seen = []

    def flaky(s, seed):
        if len(seen) == 7:
            raise KeyboardInterrupt
        seen.append(s)
        return curve(s, seed)

    with pytest.raises(KeyboardInterrupt):
        run_sweep(flaky, SweepConfig(), store)
    assert len(json.loads(store.read_text())["evaluations"]) == 7
    again = []
    result = run_sweep(lambda s, seed: again.append(s) or curve(s, seed), SweepConfig(), store)
    assert len(again) == 12 - 7 and result.evaluations == 5
    assert result.essential_sparsity == pytest.approx(0.425)
    with pytest.raises(SparsityConfigError, match="different sweep"):
        run_sweep(curve, SweepConfig(tolerance=0.02), store)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(tolerance=1.5), r"tolerance must be in \[0, 1\)"),
        (dict(tolerance=-0.1, tolerance_kind="absolute"), "tolerance must be in"),
        (dict(tolerance_kind="percent"), "tolerance_kind must be one of"),
        (dict(levels=(0.5, 1.0)), r"levels must be in \[0, 1\)"),
        (dict(resolution=0), "resolution"),
        (dict(seeds=()), "seeds"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(SparsityConfigError, match=message):
        SweepConfig(**kwargs)


def test_find_knee_simple_shapes():
    xs = [0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert find_knee(xs, [0, 0, 0, 0, 0.5, 1.0]) == pytest.approx(0.3)
    assert find_knee(xs, [0, 0.2, 0.4, 0.6, 0.8, 1.0]) is None  # a straight line has no knee
    assert find_knee([0, 0.1], [0, 1]) is None


def test_the_report_writes_every_file_with_the_located_sparsity(tmp_path):
    from es_plugins.analysis.plots import plot_layer_sparsity, plot_near_zero
    from es_plugins.analysis.sweep_report import write_sweep_report

    result = run_sweep(accuracy_curve(0.43), SweepConfig(resolution=0.05, metric="accuracy"))
    folder = write_sweep_report(tmp_path / "r", result, "synthetic", "es-plugins sweep", {"l0": 0.4, "l1": 0.5})
    for name in ("results.json", "results.csv", "summary.md", "metric_vs_sparsity.png"):
        assert (folder / name).is_file(), name
    saved = json.loads((folder / "results.json").read_text())
    assert saved["essential_sparsity"] == pytest.approx(result.essential_sparsity)
    assert f"{result.essential_sparsity:.1%}" in (folder / "summary.md").read_text()
    png = plot_layer_sparsity({"a": 0.2, "b": 0.6}, tmp_path / "layers.png", "layers")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_near_zero({"x": 0.1}, tmp_path / "nz.png", "zeros").stat().st_size > 0


def test_the_per_layer_plot_groups_hundreds_of_layers_by_block_and_type(tmp_path):
    from es_plugins.analysis.plots import BAR_CHART_MAX_LAYERS, block_grid, plot_layer_sparsity

    kinds = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.up_proj")
    names = [f"model.layers.{b}.{k}.weight" for b in range(48) for k in kinds]  # 240 layers
    blocks, columns, where = block_grid(names)
    assert len(blocks) == 48 and list(columns) == list(kinds)
    assert where["model.layers.7.mlp.up_proj.weight"] == (7, 4)
    assert block_grid(["encoder.weight", "decoder.weight"]) is None  # no block index: bars
    grid_png = plot_layer_sparsity({n: 0.5 for n in names}, tmp_path / "grid.png", "240 layers")
    bars_png = plot_layer_sparsity({n: 0.5 for n in names[:BAR_CHART_MAX_LAYERS]}, tmp_path / "bars.png", "few")
    from PIL import Image

    grid_height = Image.open(grid_png).size[1]
    assert grid_height < Image.open(bars_png).size[1] * 2  # 240 rows of bars would be ~5x taller
