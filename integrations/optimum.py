"""Optimum adapter: ``optimum-cli sparsity prune|inspect|compress|export``.

The commands take the same options as ``es-plugins`` and run the same core code; ``export``
takes Optimum's own export options and runs :func:`es_plugins.export.verified.export_and_verify`
(Optimum's ``main_export``, then the checks). This module only declares commands.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optimum.commands.base import BaseOptimumCLICommand, CommandInfo


class _EsPluginsCommand(BaseOptimumCLICommand):
    """A leaf command that parses and runs like the ``es-plugins`` command of the same name."""

    ES_COMMAND = ""

    def parse_args(self, parser: argparse.ArgumentParser) -> None:  # Optimum calls it on the instance
        from es_plugins.cli import add_arguments

        add_arguments(self.ES_COMMAND, parser)

    def run(self) -> int:
        from es_plugins.cli import run_command

        return run_command(self.ES_COMMAND, self.args)


class PruneCommand(_EsPluginsCommand):
    ES_COMMAND = "prune"


class InspectCommand(_EsPluginsCommand):
    ES_COMMAND = "inspect"


class CompressCommand(_EsPluginsCommand):
    ES_COMMAND = "compress"


class ExportCommand(BaseOptimumCLICommand):
    """``optimum-cli sparsity export``: Optimum's ONNX export plus the sparsity checks."""

    @staticmethod
    def parse_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--model", "-m", required=True, help="pruned HF checkpoint folder, or packaged:minilm")
        parser.add_argument("output", help="output folder for model.onnx")
        parser.add_argument("--task", default="auto", help="Optimum task (default: inferred from the checkpoint)")
        parser.add_argument("--opset", type=int, default=None,
                            help="ONNX opset (>= 14; default: the one Optimum recommends for the architecture)")
        parser.add_argument("--device", default="cpu", help="device the export runs on (Optimum's --device)")
        parser.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default=None,
                            help="precision of the export (Optimum's --dtype; default fp32)")
        parser.add_argument("--optimize", choices=("O1", "O2", "O3", "O4"), default=None,
                            help="ONNX Runtime optimization level (Optimum's --optimize); fused weights are then "
                                 "checked through the outputs only")
        parser.add_argument("--library-name", default=None, help="Optimum's --library-name (default: inferred)")
        parser.add_argument("--trust-remote-code", action="store_true", help="Optimum's --trust-remote-code")
        parser.add_argument("--rewrite-gemm", action="store_true",
                            help="rewrite 2:4 MatMul layers to Gemm so TensorRT may use sparse kernels")
        parser.add_argument("--atol", type=float, default=1e-4, help="PyTorch vs ONNX Runtime tolerance")
        parser.add_argument("--overwrite", action="store_true",
                            help="replace an output folder that an earlier es-plugins export wrote")

    def run(self) -> int:
        from es_plugins._console import emit, results_only_on_stdout
        from es_plugins.assets import resolve_model_path
        from es_plugins.export.tensorrt import trtexec_command
        from es_plugins.export.verified import ExportOptions, export_and_verify
        from es_plugins.output import check_output, write_folder_atomically

        args = self.args
        try:
            options = ExportOptions(task=args.task, opset=args.opset, device=args.device, dtype=args.dtype,
                                    optimize=args.optimize, library_name=args.library_name,
                                    trust_remote_code=args.trust_remote_code)
            model = resolve_model_path(args.model)
            check_output(args.output, inputs=[model], overwrite=args.overwrite, flag="output")
            with results_only_on_stdout():
                results = []

                def write(tmp: Path) -> None:
                    results.append(export_and_verify(model, tmp, options, args.rewrite_gemm, args.atol))

                out = write_folder_atomically(args.output, write, inputs=[model], overwrite=args.overwrite,
                                              command="optimum-cli sparsity export", flag="output")
                summary = results[0]
                summary["onnx"] = str(out / "model.onnx")
                emit(summary["report"].format_table())
                compared = (f"all {summary['weights_compared']} targeted weights bit-identical to {args.model}"
                            if summary["weights_compared"] else "weights checked through the outputs (--optimize)")
                emit(f"{compared}; ONNX Runtime vs PyTorch max |diff| {summary['max_abs_diff']:.3g}")
                if "gemm_rewrite" in summary:
                    emit(f"MatMul->Gemm: {summary['gemm_rewrite']['layers']} layers, outputs max |diff| "
                         f"{summary['gemm_rewrite']['max_abs_diff']:.3g}")
                if summary["report"].eligible:
                    emit("TensorRT: " + trtexec_command(summary["onnx"]))
                else:
                    emit("TensorRT: no layer is eligible for 2:4 sparse kernels (see the table), so no "
                         "--sparsity=enable command is suggested")
        except (ValueError, OSError) as exc:
            print(f"optimum-cli sparsity export: error: {exc}", flush=True, file=sys.stderr)
            raise SystemExit(2) from None
        return 0


class SparsityCommand(BaseOptimumCLICommand):
    COMMAND = CommandInfo(name="sparsity", help="es-plugins: prune, inspect, compress and export sparse models")
    SUBCOMMANDS = (
        CommandInfo(name="prune", help="prune a local checkpoint (same options as es-plugins prune)",
                    subcommand_class=PruneCommand),
        CommandInfo(name="inspect", help="sparsity, 2:4 compliance and sparse-kernel eligibility of a checkpoint "
                                         "or .onnx file", subcommand_class=InspectCommand),
        CommandInfo(name="compress", help="compressed checkpoint (bitmask / 2:4) or sparse ONNX initializers",
                    subcommand_class=CompressCommand),
        CommandInfo(name="export", help="optimum ONNX export of a pruned checkpoint, verified: weights, outputs, 2:4",
                    subcommand_class=ExportCommand),
    )
