"""Option definitions shared by every command (``es-plugins`` and ``optimum-cli sparsity``).

One convention: the checkpoint a command reads is ``--model`` (``-m``), the folder or file
it writes is positional — as ``optimum-cli export onnx --model M OUTPUT`` does. Optional
report folders (``sweep``, ``zeros``, ``compare-masks``) are ``--output``. Method flags are
generated from the method configs' fields (:func:`es_plugins.methods.registry.method_options`),
so a new field gets its flag, with its help and choices, without an edit here.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from argparse import SUPPRESS
from typing import Any

from .._deprecation import warn_renamed
from ..errors import SparsityConfigError
from ..masks.targets import TargetSpec
from ..methods import MethodConfig, config_from_dict, entry_for, method_names
from ..methods.registry import method_options

DTYPE_CHOICES = ("float32", "float16", "bfloat16")
# An option of both a method and the run: --seed seeds random pruning and calibration sampling.
RUN_OPTIONS = ("seed",)


def command_line(prog: str = "es-plugins") -> str | None:
    """The command as typed, for model cards and reports."""
    return f"{prog} " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None


# --------------------------------------------------------------------- model and output
def add_model_and_output(parser: argparse.ArgumentParser, model_help: str, output_help: str | None) -> None:
    """``--model MODEL`` and, for commands that write, a positional ``OUTPUT``. The former
    spelling with both positional (``prune MODEL OUT``) keeps working for one release."""
    parser.add_argument("--model", "-m", metavar="MODEL", help=model_help)
    if output_help is None:
        parser.add_argument("legacy_model", nargs="?", metavar="MODEL", help=SUPPRESS)
        return
    parser.add_argument("output", metavar="OUTPUT", help=output_help)
    parser.add_argument("legacy_output", nargs="?", help=SUPPRESS)


def resolve_model_and_output(args: argparse.Namespace, command: str) -> None:
    """Set ``args.model`` (and ``args.output``) from either spelling; one error if neither."""
    legacy_output = getattr(args, "legacy_output", None)
    legacy_model = getattr(args, "legacy_model", None)
    if legacy_output is not None:  # the former `command MODEL OUTPUT`
        if args.model is not None:
            raise SparsityConfigError(f"{command}: give --model MODEL OUTPUT (one output), got two positionals")
        warn_renamed(f"{command} MODEL OUTPUT", f"{command} --model MODEL OUTPUT")
        args.model, args.output = args.output, legacy_output
    elif legacy_model is not None:  # the former `inspect PATH`
        if args.model is not None:
            raise SparsityConfigError(f"{command}: give the model once, as --model MODEL")
        warn_renamed(f"{command} MODEL", f"{command} --model MODEL")
        args.model = legacy_model
    if args.model is None:
        raise SparsityConfigError(f"{command} needs --model MODEL (a checkpoint folder, packaged:NAME or org/name)")


# --------------------------------------------------------------------- methods
def add_method_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--method`` and one flag per method option, generated from the config fields."""
    parser.add_argument("--method", default="omp", choices=method_names())
    for spec in method_options().values():
        if not spec.help:  # legacy keyword spellings (NMConfig's n=, m=) get no flag
            continue
        takes = "/".join(spec.methods)
        default = f"; default {spec.default}" if spec.default not in (None, False) else ""
        help_text = f"{takes}: {spec.help}{default}".replace("%", "%%")
        if spec.type is bool:
            parser.add_argument(spec.flag, action="store_true", help=help_text)
        else:
            parser.add_argument(spec.flag, type=spec.type, choices=spec.choices, default=None, help=help_text)


def method_config(args: argparse.Namespace) -> MethodConfig:
    """The method config from the registry: given flags become options, and a flag the
    method does not take is an error naming the ones it does. Whether ``--calib`` and
    ``--refine-masks`` fit the method is the job's check (:func:`es_plugins.prune_checkpoint`)."""
    entry = entry_for(args.method)
    flags = {name: spec.flag for name, spec in method_options().items() if spec.help}
    given = {key: getattr(args, key) for key in flags if getattr(args, key, None) not in (None, False)}
    for key in RUN_OPTIONS:
        if key in given and key not in entry.options:
            given.pop(key)
    unknown = [flags[key] for key in given if key not in entry.options]
    if unknown:
        takes = [flags[k] for k in entry.options if k in flags]
        raise SparsityConfigError(
            f"{', '.join(unknown)} does not apply to --method {entry.name} "
            f"(it takes {', '.join(takes) or 'no options'})"
        )
    return config_from_dict({"method": entry.name, **given})


# --------------------------------------------------------------------- targets, device, dtype
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
    return TargetSpec.from_options(args.include, args.include_regex, args.exclude, args.exclude_regex)


def add_device_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup, help_text: str) -> None:
    """``--device``: one spelling and one parser (:func:`es_plugins.engines.device.resolve_device`) for
    every command; the default (``None``) means cuda when available, else cpu."""
    parser.add_argument("--device", metavar="DEVICE", help=help_text)


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
