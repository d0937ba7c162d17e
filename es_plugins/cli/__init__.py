"""The ``es-plugins`` command line: parsing and rendering only.

Each command's module turns its flags into one call of a job in :mod:`es_plugins.jobs` (the
library does what the CLI does, by the same names) and prints what it returns. Options
shared by several commands, and the method flags generated from the config fields, live
in :mod:`.options`; ``optimum-cli sparsity`` reuses the same parsers through
:func:`add_arguments` and :func:`run_command`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

import torch

from .._version import __version__
from ..engines.memory import default_threads
from ..errors import SparsityConfigError
from . import export, inspect, prune, sweep
from . import statistics as masks
from .console import console_logging, results_only_on_stdout

# name -> (help, add its options, run it)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "prune": ("prune a checkpoint and write a plain sparse one", prune.add_arguments, prune.run),
    "inspect": (
        "report sparsity and N:M compliance of a HF checkpoint or an ONNX file",
        inspect.add_arguments,
        inspect.run,
    ),
    "compress": (
        "write a smaller file: compressed HF checkpoint (bitmask / 2:4) or sparse ONNX initializers",
        export.add_compress_arguments,
        export.run_compress,
    ),
    "decompress": (
        "turn a compressed checkpoint back into a plain one (loads without this package)",
        export.add_decompress_arguments,
        export.run_decompress,
    ),
    "export": (
        "Optimum ONNX export of a pruned checkpoint, verified (same as optimum-cli sparsity export)",
        export.add_export_arguments,
        export.run_export,
    ),
    "sweep": ("essential-sparsity sweep with knee detection, report and plots", sweep.add_arguments, sweep.run),
    "compare-masks": (
        "cosine / IoU / Hamming similarity of two mask sets",
        masks.add_compare_arguments,
        masks.run_compare,
    ),
    "zeros": ("near-zero weight statistics over one or more checkpoints", masks.add_zeros_arguments, masks.run_zeros),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="es-plugins",
        description="Essential sparsity for pre-trained transformers: prune, inspect, sweep, compare masks, "
        "count zeros, export. Every command reads its checkpoint from --model and writes its output "
        "to the positional OUTPUT.",
    )
    parser.add_argument("--version", action="version", version=f"es-plugins {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add, _) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text))
    return parser


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """The options of command ``name`` (used by the ``optimum-cli sparsity`` commands)."""
    COMMANDS[name][1](parser)


def run_command(name: str, args: argparse.Namespace, prog: str = "es-plugins") -> int:
    """Run a parsed command; bad input exits with status 2 and one clear line on stderr.

    Shared by ``es-plugins`` and the ``optimum-cli sparsity`` commands (``prog`` names the
    one the user typed), so both catch the same errors the same way.
    """
    threads = torch.get_num_threads()  # restored after: main() may be called as a library function
    try:
        with results_only_on_stdout(), console_logging():
            _configure_process(args)
            return COMMANDS[name][2](args)
    except (ValueError, ImportError, OSError) as exc:  # bad input, a missing extra, a failed write
        print(f"{prog} {name}: error: {_one_line(exc)}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except Exception as exc:  # a bug: one line by default, the traceback on request
        if os.environ.get("ES_PLUGINS_TRACEBACK"):
            raise
        print(
            f"{prog} {name}: internal error: {type(exc).__name__}: {_one_line(exc)} "
            "(set ES_PLUGINS_TRACEBACK=1 for the traceback and please report it)",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(1) from None
    finally:
        torch.set_num_threads(threads)


def _configure_process(args: argparse.Namespace) -> None:
    """Every command: threads that do not fight a busy machine (``--threads`` where offered)."""
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise SparsityConfigError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads or default_threads())


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.command, args)


__all__ = ["COMMANDS", "add_arguments", "build_parser", "main", "run_command"]
