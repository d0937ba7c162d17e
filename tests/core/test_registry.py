"""The method registry: one place that maps configs to functions and knows which need
calibration; a new method is one config class plus one function."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from es_plugins import MethodConfig, SparsityConfigError, register_method, sparsify_
from es_plugins.methods import compute_masks, config_from_dict, entry_for, is_calibrated, method_names, registry


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test disappear after it."""
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))


def test_builtin_methods_and_their_kinds():
    assert method_names() == ("omp", "nm", "random", "wanda", "sparsegpt")
    assert [is_calibrated(name) for name in method_names()] == [False, False, False, True, True]
    assert entry_for("sparsegpt").refines_masks and not entry_for("wanda").refines_masks
    assert entry_for("nm").options == ("pattern", "m", "skip_incompatible", "n")


def test_a_new_method_is_one_config_and_one_function(scratch_registry, tiny_blocks):
    @dataclass(frozen=True)
    class FirstColumnsConfig(MethodConfig):
        """Prune the first ``columns`` input columns of every layer (a toy structured method)."""

        name: ClassVar[str] = "first-columns"
        columns: int = 2

        @property
        def target_sparsity(self) -> float:
            return 0.0

    @register_method(FirstColumnsConfig)
    def first_columns(targets, config, progress, current):
        masks = {}
        for target in progress(list(targets)):
            keep = torch.ones_like(target.param, dtype=torch.bool)
            keep.narrow(target.in_axis, 0, config.columns).fill_(False)
            masks[target.name] = keep
        return masks

    assert "first-columns" in method_names()
    config = config_from_dict({"method": "first-columns", "columns": 3})
    state = sparsify_(tiny_blocks, config)
    assert all(not bool(m.narrow(1, 0, 3).any()) and bool(m.narrow(1, 3, 1).all()) for m in state.masks.values())
    assert state.meta["plan"]["method"] == {"method": "first-columns", "columns": 3}


def test_calibrated_registration_is_routed_by_the_registry(scratch_registry, tiny_blocks):
    @dataclass(frozen=True)
    class NeedsDataConfig(MethodConfig):
        name: ClassVar[str] = "needs-data"
        target_sparsity: ClassVar[float] = 0.0

    register_method(NeedsDataConfig, lambda target, config, inputs, keep: keep, calibrated=True)
    assert is_calibrated(NeedsDataConfig())
    with pytest.raises(SparsityConfigError, match="needs calibration"):
        compute_masks([], NeedsDataConfig())
    with pytest.raises(SparsityConfigError, match="non-empty"):
        sparsify_(tiny_blocks, NeedsDataConfig())


def test_bad_registrations_and_lookups_are_refused():
    with pytest.raises(SparsityConfigError, match="MethodConfig subclass"):
        register_method(dict)
    with pytest.raises(SparsityConfigError, match="calibrated methods only"):
        register_method(type(config_from_dict({"method": "omp"})), lambda *a: {}, refines_masks=True)
    with pytest.raises(SparsityConfigError, match="method must be one of omp, nm, random, wanda, sparsegpt"):
        config_from_dict({"method": "lottery"})
    with pytest.raises(SparsityConfigError, match=r"unknown option\(s\) \['pattern'\] for method 'omp'"):
        config_from_dict({"method": "omp", "pattern": "2:4"})


def test_the_adding_a_method_guide_runs_as_a_doctest(scratch_registry):
    """docs/design.md's example is code users copy: every line of it runs, every output is
    checked, and the new config field becomes a CLI flag."""
    import doctest

    text = (Path(__file__).resolve().parents[2] / "docs" / "design.md").read_text()
    guide = text[text.index("## Adding a method") :]
    code = guide[guide.index("```python") + len("```python") : guide.index("```", guide.index("```python") + 3)]
    test = doctest.DocTestParser().get_doctest(code, {}, "design.md: adding a method", "docs/design.md", 0)
    assert len(test.examples) >= 10
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False) == doctest.TestResults(failed=0, attempted=len(test.examples))
    assert "row-relative" in method_names()
