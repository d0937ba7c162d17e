"""Error types: each subclasses ValueError (generic handlers keep working) and the shared
validators name the parameter and the allowed values."""

from __future__ import annotations

import pytest

from es_plugins import errors


@pytest.mark.parametrize(
    "kind",
    [
        errors.SparsityConfigError,
        errors.NoTargetsError,
        errors.MaskMismatchError,
        errors.NonFiniteWeightError,
        errors.CheckpointError,
        errors.OutputPathError,
        errors.DataError,
        errors.ExportError,
    ],
)
def test_every_error_is_a_value_error(kind):
    assert issubclass(kind, ValueError)


def test_validators_name_the_parameter_and_the_allowed_values():
    assert errors.check_fraction("sparsity", 0.25) == 0.25 and errors.check_fraction("sparsity", 0) == 0.0
    with pytest.raises(errors.SparsityConfigError, match=r"sparsity must be a number in \[0, 1\), got '0.25' \(str\)"):
        errors.check_fraction("sparsity", "0.25")  # a string is a typo in Python code, not a number
    with pytest.raises(errors.SparsityConfigError, match=r"sparsity must be in \[0, 1\), got 1.0"):
        errors.check_fraction("sparsity", 1.0)
    with pytest.raises(errors.SparsityConfigError, match="scope must be one of 'global', 'layer'; got 'row'"):
        errors.check_choice("scope", "row", ("global", "layer"))
