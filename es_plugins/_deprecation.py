"""Renamed options keep working for one release, with a warning that names the new spelling
(command-line flags in :mod:`.cli.options`, Python keywords and values here)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

from .errors import SparsityConfigError

REMOVED_IN = "0.3"


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    warnings.warn(f"{old} is deprecated and goes away in es-plugins {REMOVED_IN}: use {new}", FutureWarning, stacklevel)


def renamed_keyword(new_value: Any, old_value: Any, old: str, new: str, default: Any = None) -> Any:
    """The value of keyword ``new``, taking the deprecated ``old`` (with a warning) when only
    it was given; both at once is an error. ``None`` means "not given"."""
    if old_value is None:
        return default if new_value is None else new_value
    if new_value is not None:
        raise SparsityConfigError(f"give {new}= only ({old}= is its deprecated spelling), not both")
    warn_renamed(f"{old}=", f"{new}=", stacklevel=4)
    return old_value


_OLD_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def dtype_value(text: str) -> str:
    """One dtype vocabulary for every command and option (torch's names); the export's former
    ``fp32``/``fp16``/``bf16`` still work for one release, with a warning."""
    if text in _OLD_DTYPES:
        warn_renamed(f"--dtype {text}", f"--dtype {_OLD_DTYPES[text]}")
        return _OLD_DTYPES[text]
    return text


# Modules regrouped into packages in 0.2 (old dotted path -> new one). The old paths keep
# importing, with a warning, until 0.3; each resolves to the very module object of the new path.
MOVED_MODULES = {
    "es_plugins.artifacts": "es_plugins.io.artifacts",
    "es_plugins.assets": "es_plugins.io.assets",
    "es_plugins.calibration": "es_plugins.engines.calibration",
    "es_plugins.checkpoint": "es_plugins.io.checkpoint",
    "es_plugins.datasets": "es_plugins.io.datasets",
    "es_plugins.device": "es_plugins.engines.device",
    "es_plugins.distributed": "es_plugins.engines.distributed",
    "es_plugins.evaluation": "es_plugins.analysis.evaluation",
    "es_plugins.hf_config": "es_plugins.io.hf_config",
    "es_plugins.lottery": "es_plugins.engines.lottery",
    "es_plugins.export.compressed": "es_plugins.io.compressed",
    "es_plugins.masks.nm": "es_plugins.masks.patterns",
    "es_plugins.memory": "es_plugins.engines.memory",
    "es_plugins.merge": "es_plugins.engines.merge",
    "es_plugins.methods.calibrated": "es_plugins.methods.configs",
    "es_plugins.naming": "es_plugins.masks.naming",
    "es_plugins.outofcore": "es_plugins.engines.outofcore",
    "es_plugins.output": "es_plugins.io.output",
    "es_plugins.plan": "es_plugins.methods.plan",
    "es_plugins.report": "es_plugins.masks.report",
    "es_plugins.schedules": "es_plugins.methods.schedules",
    "es_plugins.sparsifier": "es_plugins.engines.training",
    "es_plugins.sparsify": "es_plugins.engines.sparsify",
    "es_plugins.state": "es_plugins.masks.state",
    "es_plugins.targets": "es_plugins.masks.targets",
    "es_plugins.weight_files": "es_plugins.io.weight_files",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds a module under its pre-0.2 path: warns, and hands out the module of the new path."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        new = _new_module_name(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        new = _new_module_name(spec.name)
        warn_renamed(f"the module {spec.name}", str(new), stacklevel=8)
        return importlib.import_module(str(new))

    def exec_module(self, module: types.ModuleType) -> None:
        """The new module is already executed."""


def _new_module_name(fullname: str) -> str | None:
    for old, new in MOVED_MODULES.items():
        if fullname == old or fullname.startswith(old + "."):
            return new + fullname[len(old) :]
    return None


def install_moved_module_finder() -> None:
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())  # before the path finder: old submodule paths too
