"""Every ``>>>`` example in the core's docstrings runs as a test, so the docs cannot rot."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import warnings

import pytest

import es_plugins

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(es_plugins.__path__, "es_plugins.")
    if not info.name.endswith("__main__") and not info.name.startswith("es_plugins.integrations")
)


def test_every_core_module_is_collected():
    assert {"es_plugins.engines.sparsify", "es_plugins.methods.registry", "es_plugins.masks.patterns"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # examples may show a warning case on purpose
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"
