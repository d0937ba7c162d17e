"""Checkpoints pruned by each es-plugins path (CLI, HF Trainer callback, PEFT sparse merge)
export with the unmodified `optimum-cli export onnx`: every weight survives bit for bit, the
inspector's numbers equal the PyTorch report, and ONNX Runtime matches PyTorch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from es_plugins import NMConfig, resolve_targets
from es_plugins.checkpoint import load_hf_model
from es_plugins.cli import main as es_cli
from es_plugins.export.onnx_check import pytorch_parity
from es_plugins.export.onnx_report import inspect_onnx, mismatches_with_pytorch
from es_plugins.export.onnx_weights import load_onnx
from es_plugins.report import build_report
from tests.conftest import make_tiny_bert, save_checkpoint, word_tokenizer

pytest.importorskip("onnxruntime")
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1"}


def optimum_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    cli = Path(sys.executable).with_name("optimum-cli")
    result = subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=600, env=OFFLINE)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def export(model_dir: Path, out: Path, task: str = "text-classification") -> Path:
    optimum_cli("export", "onnx", "--model", str(model_dir), "--task", task, "--opset", "17", str(out))
    return out / "model.onnx"


def assert_export_faithful(model_dir: Path, onnx_path: Path, pattern=(2, 4)) -> None:
    model = load_hf_model(model_dir, dtype="float32")
    graph = load_onnx(onnx_path)
    assert mismatches_with_pytorch(graph, dict(model.named_parameters())) == []
    onnx_report = inspect_onnx(graph, pattern)
    torch_report = build_report(model, resolve_targets(model), pattern)
    for layer in torch_report.layers:
        mapped = onnx_report.layer(layer.name)
        assert (mapped.numel, mapped.zeros, mapped.nm_groups, mapped.nm_compliant) == (
            layer.numel, layer.zeros, layer.nm_groups, layer.nm_compliant), layer.name
    parity = pytorch_parity(model, graph, atol=1e-4)
    assert parity.ok, parity


def cli_pruned(tmp_path: Path, *options: str) -> Path:
    src = save_checkpoint(make_tiny_bert(), tmp_path / "dense")
    if not options:
        return src
    assert es_cli(["prune", str(src), str(tmp_path / "pruned"), *options]) == 0
    return tmp_path / "pruned"


def trainer_pruned(tmp_path: Path) -> Path:
    from transformers import Trainer

    from es_plugins.integrations.transformers import SparsityCallback
    from tests.integrations.test_transformers import RandomTokens, training_args

    trainer = Trainer(model=make_tiny_bert(), args=training_args(tmp_path / "run"), train_dataset=RandomTokens(),
                      callbacks=[SparsityCallback(NMConfig(2, 4))])
    trainer.train()
    trainer.save_model(str(tmp_path / "trained"))
    word_tokenizer().save_pretrained(tmp_path / "trained")
    return tmp_path / "trained"


def peft_merged(tmp_path: Path) -> Path:
    from es_plugins.integrations.peft import merge_and_unload_sparse
    from tests.integrations.test_peft import train_sparse_lora

    model, state = train_sparse_lora(tmp_path / "run", sparsity=0.5)
    merged, _ = merge_and_unload_sparse(model, state)
    return save_checkpoint(merged, tmp_path / "merged")


PRODUCERS = {
    "dense": lambda tmp: cli_pruned(tmp),
    "cli-omp50": lambda tmp: cli_pruned(tmp, "--method", "omp", "--sparsity", "0.5"),
    "cli-2:4": lambda tmp: cli_pruned(tmp, "--method", "nm", "--pattern", "2:4"),
    "trainer-2:4": trainer_pruned,
    "peft-merge-omp50": peft_merged,
}


@pytest.mark.parametrize("producer", list(PRODUCERS))
def test_optimum_cli_export_keeps_weights_report_and_outputs(tmp_path, producer):
    model_dir = PRODUCERS[producer](tmp_path)
    onnx_path = export(model_dir, tmp_path / "onnx")
    assert_export_faithful(model_dir, onnx_path)
    report = inspect_onnx(onnx_path)
    assert (report.zeros == 0) == (producer == "dense")
    if producer.endswith("2:4"):
        encoder = [layer for layer in report.layers if ".encoder." in layer.pytorch_name]
        assert len(encoder) == 12 and all(layer.nm_ok for layer in encoder)
