"""Optimum adapter: ``optimum-cli sparsity prune|inspect|compress|export``.

Each command takes the same options as the ``es-plugins`` command of the same name and runs
it through :func:`es_plugins.cli.run_command` (same code, same errors, same exit codes);
``export`` is Optimum's export with the checks of :mod:`es_plugins.export.verified`. This
module only declares commands.
"""

from __future__ import annotations

import argparse

from optimum.commands.base import BaseOptimumCLICommand, CommandInfo

from es_plugins.cli import add_arguments, run_command


class _EsPluginsCommand(BaseOptimumCLICommand):
    """A leaf command that parses and runs like the ``es-plugins`` command of the same name."""

    ES_COMMAND = ""

    def parse_args(self, parser: argparse.ArgumentParser) -> None:  # Optimum calls it on the instance
        add_arguments(self.ES_COMMAND, parser)

    def run(self) -> int:
        return run_command(self.ES_COMMAND, self.args, prog="optimum-cli sparsity")


class PruneCommand(_EsPluginsCommand):
    ES_COMMAND = "prune"


class InspectCommand(_EsPluginsCommand):
    ES_COMMAND = "inspect"


class CompressCommand(_EsPluginsCommand):
    ES_COMMAND = "compress"


class ExportCommand(_EsPluginsCommand):
    """``optimum-cli sparsity export``: Optimum's ONNX export plus the sparsity checks."""

    ES_COMMAND = "export"


class SparsityCommand(BaseOptimumCLICommand):
    COMMAND = CommandInfo(name="sparsity", help="es-plugins: prune, inspect, compress and export sparse models")
    SUBCOMMANDS = (
        CommandInfo(
            name="prune",
            help="prune a local checkpoint (same options as es-plugins prune)",
            subcommand_class=PruneCommand,
        ),
        CommandInfo(
            name="inspect",
            help="sparsity, 2:4 compliance and sparse-kernel eligibility of a checkpoint or .onnx file",
            subcommand_class=InspectCommand,
        ),
        CommandInfo(
            name="compress",
            help="compressed checkpoint (bitmask / 2:4) or sparse ONNX initializers",
            subcommand_class=CompressCommand,
        ),
        CommandInfo(
            name="export",
            help="optimum ONNX export of a pruned checkpoint, verified: weights, outputs, 2:4",
            subcommand_class=ExportCommand,
        ),
    )
