"""sparsify_: one entry point for every registered method, calibrated or not."""

from __future__ import annotations

import pytest
import torch

from es_plugins import (
    OMPConfig,
    SparseGPTConfig,
    SparsityConfigError,
    SparsityPlan,
    SparsityState,
    WandaConfig,
    sparsify_,
)
from es_plugins.engines.sparsify import calibrated_prune_
from es_plugins.masks.targets import resolve_targets
from tests.conftest import make_tiny_gpt2


def _calibration(samples: int = 4, length: int = 16) -> torch.Tensor:
    return torch.randint(0, 99, (samples, length), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("config", [WandaConfig(0.5), SparseGPTConfig(pattern="2:4")])
def test_calibrated_methods_prune_through_the_one_entry_point(config):
    model = make_tiny_gpt2()
    state = sparsify_(model, config, calibration=_calibration())
    assert state.sparsity == pytest.approx(config.target_sparsity, abs=1e-3)
    assert state.count_nonzero_pruned(model) == 0
    assert state.meta["calibration"] == {"samples": 4, "seq_len": 16}
    assert state.meta["targets"] == [t.name for t in resolve_targets(model)]  # from_plan recorded them


def test_the_deprecated_alias_warns_and_gives_the_same_masks():
    a, b = make_tiny_gpt2(), make_tiny_gpt2()
    plan = SparsityPlan(WandaConfig(0.4))
    masks_a = sparsify_(a, plan, calibration=_calibration()).masks
    with pytest.warns(
        FutureWarning, match=r"calibrated_prune_\(model, plan, calibration\) is deprecated .* use sparsify_"
    ):
        masks_b = calibrated_prune_(b, plan, _calibration()).masks
    assert all(torch.equal(masks_a[n], masks_b[n]) for n in masks_a)


def test_sparsegpt_refines_a_given_mask_exactly():
    dense = make_tiny_gpt2()
    omp = sparsify_(make_tiny_gpt2(), OMPConfig(0.5))
    refined = sparsify_(dense, SparseGPTConfig(0.5), calibration=_calibration(), masks=omp)
    assert all(torch.equal(refined.masks[n], omp.masks[n]) for n in omp.masks)
    assert refined.meta["refined_from"]["method"]["method"] == "omp"


def test_wrong_inputs_name_the_problem(tiny_blocks):
    with pytest.raises(SparsityConfigError, match="needs no calibration"):
        sparsify_(tiny_blocks, OMPConfig(0.5), calibration=_calibration())
    with pytest.raises(SparsityConfigError, match="masks= refines"):
        sparsify_(tiny_blocks, OMPConfig(0.5), masks=SparsityState({}))
    with pytest.raises(SparsityConfigError, match="non-empty"):
        sparsify_(make_tiny_gpt2(), WandaConfig(0.5))
    with pytest.raises(SparsityConfigError, match="only be refined with sparsegpt"):
        sparsify_(make_tiny_gpt2(), WandaConfig(0.5), calibration=_calibration(), masks=SparsityState({}))
    with pytest.raises(TypeError, match="nn.Module"):
        sparsify_("model", OMPConfig(0.5))


def test_former_top_level_plumbing_names_warn_and_name_their_module():
    import es_plugins
    from es_plugins.methods import compute_masks

    with pytest.warns(FutureWarning, match=r"es_plugins.compute_masks is deprecated .* use es_plugins.methods"):
        assert es_plugins.compute_masks is compute_masks
    assert "compute_masks" not in es_plugins.__all__
    assert es_plugins.__all__ == sorted(es_plugins.__all__, key=lambda name: (not name[0].isupper(), name))
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        es_plugins.nonsense  # noqa: B018


def test_pre_regrouping_module_paths_import_the_new_modules_with_a_warning():
    """`from es_plugins.state import SparsityState` (and every other moved path) keeps working
    until 0.3, warning with the new path; the object is the new module's, not a copy."""
    import subprocess
    import sys

    from es_plugins._deprecation import MOVED_MODULES

    script = (
        "import importlib, warnings\n"
        "warnings.simplefilter('always')\n"
        "import es_plugins\n"
        f"moved = {MOVED_MODULES!r}\n"
        "for old, new in moved.items():\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        module = importlib.import_module(old)\n"
        "    assert module is importlib.import_module(new), old\n"
        "    assert any(f'use {new}' in str(w.message) for w in caught), old\n"
        "from es_plugins.outofcore.files import ShardedCheckpoint\n"
        "from es_plugins.engines.outofcore.files import ShardedCheckpoint as New\n"
        "assert ShardedCheckpoint is New\n"
        "print(len(moved))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert int(result.stdout) == len(MOVED_MODULES) >= 20
