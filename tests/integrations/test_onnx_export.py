"""Checkpoints pruned by each es-plugins path (CLI, HF Trainer callback, PEFT sparse merge)
export with the unmodified `optimum-cli export onnx`: every weight survives bit for bit, the
inspector's numbers equal the PyTorch report, and ONNX Runtime matches PyTorch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from es_plugins import NMConfig
from es_plugins.cli import main as es_cli
from es_plugins.export.onnx_check import pytorch_parity
from es_plugins.export.onnx_report import compare_with_pytorch, inspect_onnx
from es_plugins.export.onnx_weights import load_onnx
from es_plugins.io.checkpoint import load_hf_model
from es_plugins.masks.report import build_report
from es_plugins.masks.targets import resolve_targets
from tests.conftest import make_tiny_bert, make_tiny_gpt2, save_checkpoint, word_tokenizer

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
    targets = resolve_targets(model)
    comparison = compare_with_pytorch(graph, dict(model.named_parameters()), [t.name for t in targets])
    assert comparison.ok and comparison.compared == len(targets), comparison.problems
    onnx_report = inspect_onnx(graph, pattern)
    torch_report = build_report(model, targets, pattern)
    for layer in torch_report.layers:
        mapped = onnx_report.layer(layer.name)
        assert (mapped.numel, mapped.zeros, mapped.nm_groups, mapped.nm_compliant) == (
            layer.numel,
            layer.zeros,
            layer.nm_groups,
            layer.nm_compliant,
        ), layer.name
    parity = pytorch_parity(model, graph, atol=1e-4)
    assert parity.ok, parity


def cli_pruned(tmp_path: Path, *options: str) -> Path:
    src = save_checkpoint(make_tiny_bert(), tmp_path / "dense")
    if not options:
        return src
    assert es_cli(["prune", "--model", str(src), str(tmp_path / "pruned"), *options]) == 0
    return tmp_path / "pruned"


def trainer_pruned(tmp_path: Path) -> Path:
    from transformers import Trainer

    from es_plugins.integrations.transformers import SparsityCallback
    from tests.integrations.test_transformers import RandomTokens, training_args

    trainer = Trainer(
        model=make_tiny_bert(),
        args=training_args(tmp_path / "run"),
        train_dataset=RandomTokens(),
        callbacks=[SparsityCallback(NMConfig("2:4"))],
    )
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


def test_inspect_reference_maps_the_head_prefix_and_never_passes_vacuously(tmp_path, capsys):
    """A bare-encoder export (``encoder.*``) checked against a checkpoint with a task head
    (``bert.encoder.*``): the names are mapped, a differently pruned checkpoint fails, and a
    checkpoint whose names match nothing fails with the count compared."""
    pruned = cli_pruned(tmp_path, "--sparsity", "0.5")
    onnx_path = export(pruned, tmp_path / "onnx", task="feature-extraction")
    assert es_cli(["prune", "--model", str(tmp_path / "dense"), str(tmp_path / "other"), "--sparsity", "0.3"]) == 0
    save_checkpoint(make_tiny_gpt2(), tmp_path / "unrelated")
    capsys.readouterr()

    assert es_cli(["inspect", "--model", str(onnx_path), "--reference", str(pruned)]) == 0
    assert "all 12 targeted weights bit-identical" in capsys.readouterr().out

    assert (
        es_cli(["inspect", "--model", str(onnx_path), "--reference", str(tmp_path / "other"), "--min-channels", "1"])
        == 1
    )
    out = capsys.readouterr().out
    assert "FAILED (12 of 12 targeted weights compared)" in out and "differs" in out
    assert "trtexec" not in out and "the weight check failed" in out

    assert es_cli(["inspect", "--model", str(onnx_path), "--reference", str(tmp_path / "unrelated")]) == 1
    out = capsys.readouterr().out
    assert "only 0 of 8 targeted weights were found" in out and "trtexec" not in out
