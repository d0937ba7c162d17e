"""Command-line options shared by several commands (target selection, device)."""

from __future__ import annotations

import argparse
from typing import Any

from ._deprecation import warn_renamed
from .errors import SparsityConfigError
from .targets import TargetSpec


def add_target_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("targets (PEFT target_modules rules)")
    group.add_argument(
        "--include",
        nargs="+",
        metavar="NAME",
        help="module names or name suffixes to prune (replaces the default: Linear/Conv1D inside blocks)",
    )
    group.add_argument("--include-regex", metavar="REGEX", help="regex that must match the whole module name")
    group.add_argument("--exclude", nargs="+", metavar="NAME", help="module names or suffixes to keep dense")
    group.add_argument("--exclude-regex", metavar="REGEX", help="regex (whole module name) to keep dense")


def target_spec(args: argparse.Namespace) -> TargetSpec:
    if args.include and args.include_regex:
        raise SparsityConfigError("use either --include or --include-regex, not both")
    if args.exclude and args.exclude_regex:
        raise SparsityConfigError("use either --exclude or --exclude-regex, not both")
    return TargetSpec(include=args.include or args.include_regex, exclude=args.exclude or args.exclude_regex)


def deprecated_spelling(new: str) -> type[argparse.Action]:
    """An old option spelling that keeps working for one release: it stores into the new
    option's destination and warns, naming the new spelling."""

    class Deprecated(argparse.Action):
        def __call__(
            self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
        ) -> None:
            warn_renamed(str(option), new)
            setattr(namespace, self.dest, values)

    return Deprecated


DTYPE_CHOICES = ("float32", "float16", "bfloat16")
_OLD_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def dtype_value(text: str) -> str:
    """One ``--dtype`` vocabulary for every command (torch's names); the export's former
    ``fp32``/``fp16``/``bf16`` still work for one release, with a warning."""
    if text in _OLD_DTYPES:
        warn_renamed(f"--dtype {text}", f"--dtype {_OLD_DTYPES[text]}")
        return _OLD_DTYPES[text]
    return text


def add_device_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup, help_text: str) -> None:
    """``--device``: one spelling and one parser (:func:`es_plugins.device.resolve_device`) for
    every command; the default (``None``) means cuda when available, else cpu."""
    parser.add_argument("--device", metavar="DEVICE", help=help_text)
