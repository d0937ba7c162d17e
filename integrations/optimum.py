"""Optimum adapter: ``optimum-cli sparsity prune|inspect|compress|export``.

The commands take the same options as ``es-plugins`` and run the same core code; ``export``
wraps Optimum's own ``main_export`` and then checks what came out: the checkpoint really has
the head the task needs (otherwise transformers would add a random one), every weight
survived bit for bit, ONNX Runtime matches PyTorch, and where the 2:4 layers ended up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from optimum.commands.base import BaseOptimumCLICommand, CommandInfo

if TYPE_CHECKING:
    from torch import nn


def check_task(model_dir: str | Path, task: str) -> str:
    """Refuse a task whose head the checkpoint does not have; return the task to export.

    ``feature-extraction`` (the bare encoder) fits every checkpoint; any other task must map
    the checkpoint's model type to exactly the architecture named in its ``config.json``.
    """
    import transformers
    from optimum.exporters.tasks import TasksManager

    config = transformers.AutoConfig.from_pretrained(model_dir, local_files_only=True)
    arch = (getattr(config, "architectures", None) or [None])[0]
    arch_class = getattr(transformers, arch, None) if arch else None
    inferred = TasksManager.infer_task_from_model(arch_class) if arch_class else "feature-extraction"
    if task == "auto":
        return inferred
    known = TasksManager.get_all_tasks()
    if task.replace("-with-past", "") not in known:
        raise ValueError(f"--task {task!r} is not an Optimum task; known: {', '.join(sorted(known))}")
    if task == "feature-extraction":
        return task
    auto_class = TasksManager.get_model_class_for_task(task.replace("-with-past", ""), framework="pt")
    mapping = getattr(auto_class, "_model_mapping", {})
    expected = mapping[type(config)] if type(config) in mapping else None
    if expected is None or (arch is not None and expected.__name__ != arch):
        raise ValueError(
            f"{model_dir} is a {arch or config.model_type} checkpoint without a {task!r} head "
            f"(exporting it would attach a randomly initialised one); its task is {inferred!r}: use --task {inferred}")
    return task


def export_and_verify(model_dir: str | Path, output: str | Path, task: str = "auto", opset: int = 17,
                      rewrite_gemm: bool = False, atol: float = 1e-4) -> dict:
    """Run Optimum's ONNX export on a pruned checkpoint, then verify and report the result.

    Raises ``ValueError`` if any weight differs from the checkpoint or the outputs differ by
    more than ``atol``; with ``rewrite_gemm`` the 2:4 MatMul layers are rewritten to Gemm
    in place after an output check.
    """
    import onnx
    from optimum.exporters.onnx import main_export

    from es_plugins.checkpoint import load_hf_model
    from es_plugins.export.onnx_check import pytorch_parity
    from es_plugins.export.onnx_gemm import rewrite_and_check
    from es_plugins.export.onnx_report import compare_with_pytorch, inspect_onnx
    from es_plugins.targets import resolve_targets
    from es_plugins.export.onnx_weights import load_onnx

    task = check_task(model_dir, task)
    main_export(str(model_dir), output=str(output), task=task, opset=opset, local_files_only=True,
                do_validation=False)
    onnx_path = Path(output) / "model.onnx"
    graph = load_onnx(onnx_path)
    model: nn.Module = load_hf_model(model_dir, dtype="float32")
    comparison = compare_with_pytorch(graph, dict(model.named_parameters()),
                                      [t.name for t in resolve_targets(model)])
    if not comparison.ok:
        raise ValueError("the export changed weights:\n  " + "\n  ".join(comparison.problems))
    parity = pytorch_parity(model, graph, atol=atol)
    if not parity.ok:
        raise ValueError(f"ONNX Runtime differs from PyTorch by {parity.max_abs_diff:.3g} (> {atol})")
    summary = {"onnx": str(onnx_path), "task": task, "max_abs_diff": parity.max_abs_diff, "weights_identical": True}
    if rewrite_gemm:
        rewrite = rewrite_and_check(graph)
        onnx.save(rewrite.model, str(onnx_path))
        graph = rewrite.model
        summary["gemm_rewrite"] = {"layers": len(rewrite.rewritten), "max_abs_diff": rewrite.check.max_abs_diff}
    summary["report"] = inspect_onnx(graph)
    return summary


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
        parser.add_argument("--model", "-m", required=True, help="local pruned HF checkpoint folder")
        parser.add_argument("output", help="output folder for model.onnx")
        parser.add_argument("--task", default="auto", help="Optimum task (default: inferred from the checkpoint)")
        parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 14; default 17)")
        parser.add_argument("--rewrite-gemm", action="store_true",
                            help="rewrite 2:4 MatMul layers to Gemm so TensorRT may use sparse kernels")
        parser.add_argument("--atol", type=float, default=1e-4, help="PyTorch vs ONNX Runtime tolerance")
        parser.add_argument("--overwrite", action="store_true",
                            help="replace an output folder that an earlier es-plugins export wrote")

    def run(self) -> int:
        from es_plugins._console import emit, results_only_on_stdout
        from es_plugins.export.tensorrt import trtexec_command
        from es_plugins.output import check_output, write_folder_atomically

        args = self.args
        try:
            if args.opset < 14:
                raise ValueError(f"--opset must be >= 14 (SDPA attention does not export below), got {args.opset}")
            check_output(args.output, inputs=[args.model], overwrite=args.overwrite, flag="output")
            with results_only_on_stdout():
                results = []

                def write(tmp: Path) -> None:
                    results.append(export_and_verify(args.model, tmp, args.task, args.opset, args.rewrite_gemm,
                                                     args.atol))

                out = write_folder_atomically(args.output, write, inputs=[args.model], overwrite=args.overwrite,
                                              command="optimum-cli sparsity export", flag="output")
                summary = results[0]
                summary["onnx"] = str(out / "model.onnx")
                emit(summary["report"].format_table())
                emit(f"weights bit-identical to {args.model}; ONNX Runtime vs PyTorch max |diff| "
                     f"{summary['max_abs_diff']:.3g}")
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
