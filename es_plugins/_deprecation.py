"""Renamed options keep working for one release, with a warning that names the new spelling
(command-line flags in :mod:`.cli.options`, Python keywords and values here)."""

from __future__ import annotations

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
