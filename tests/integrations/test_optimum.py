"""`optimum-cli sparsity ...`: registered through Optimum's extension point, run for real."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from es_plugins.cli import main as es_cli
from es_plugins.export.onnx_check import pytorch_parity
from es_plugins.export.onnx_report import inspect_onnx
from es_plugins.io.checkpoint import load_hf_model
from tests.conftest import make_tiny_bert, save_checkpoint
from tests.integrations.test_onnx_export import cli_pruned, optimum_cli

REPO = Path(__file__).resolve().parents[2]


def test_commands_are_listed_in_optimum_cli_help():
    assert "sparsity" in optimum_cli("--help").stdout
    listing = optimum_cli("sparsity", "--help").stdout
    for command in ("prune", "inspect", "compress", "export"):
        assert command in listing
    assert "--rewrite-gemm" in optimum_cli("sparsity", "export", "--help").stdout
    assert "onnx" in optimum_cli("export", "--help").stdout  # Optimum's own commands still register


def test_sparsity_prune_equals_es_plugins_prune(tmp_path):
    src = save_checkpoint(make_tiny_bert(), tmp_path / "dense")
    optimum_cli("sparsity", "prune", "--model", str(src), str(tmp_path / "via-optimum"), "--sparsity", "0.4")
    assert es_cli(["prune", "--model", str(src), str(tmp_path / "via-es"), "--sparsity", "0.4"]) == 0
    a, b = load_hf_model(tmp_path / "via-optimum"), load_hf_model(tmp_path / "via-es")
    sa, sb = a.state_dict(), b.state_dict()
    assert all(np.array_equal(sa[k].numpy(), sb[k].numpy()) for k in sa)


def test_sparsity_export_verifies_and_rewrites_to_gemm(tmp_path):
    pruned = cli_pruned(tmp_path, "--method", "nm", "--pattern", "2:4")
    result = optimum_cli(
        "sparsity",
        "export",
        "--model",
        str(pruned),
        "--task",
        "text-classification",
        "--rewrite-gemm",
        str(tmp_path / "onnx"),
    )
    assert "weights bit-identical" in result.stdout and "MatMul->Gemm: 12 layers" in result.stdout
    graph = onnx.load(tmp_path / "onnx" / "model.onnx")
    assert [n.op_type for n in graph.graph.node].count("Gemm") == 12 + 2  # encoder + pooler + classifier
    assert pytorch_parity(load_hf_model(pruned), graph).ok
    # the tiny model's 32/64 channels are below the default threshold: reported, not hidden
    report = inspect_onnx(graph)
    assert all("channels" in layer.reason for layer in report.layers if layer.nm_ok)
    assert len(inspect_onnx(graph, min_channels=16).eligible) == 12


def test_sparsity_commands_give_clear_errors(tmp_path):
    pruned = cli_pruned(tmp_path, "--sparsity", "0.5")
    wrong = optimum_cli(
        "sparsity", "export", "--model", str(pruned), "--task", "fill-mask", str(tmp_path / "o"), check=False
    )
    assert wrong.returncode == 2
    assert "without a 'fill-mask' head" in wrong.stderr and "use --task text-classification" in wrong.stderr
    assert not (tmp_path / "o" / "model.onnx").exists()
    (tmp_path / "junk.onnx").write_bytes(b"\x00not onnx")
    bad = optimum_cli("sparsity", "inspect", "--model", str(tmp_path / "junk.onnx"), check=False)
    assert bad.returncode == 2 and "is not an ONNX model" in bad.stderr
    sparsity = optimum_cli(
        "sparsity", "prune", "--model", str(pruned), str(tmp_path / "x"), "--sparsity", "1.5", check=False
    )
    assert sparsity.returncode == 2 and "sparsity must be in [0, 1)" in sparsity.stderr


@pytest.mark.parametrize("fmt", ["bitmask"])
def test_sparsity_compress_through_optimum_cli(tmp_path, fmt):
    pruned = cli_pruned(tmp_path, "--sparsity", "0.5")
    result = optimum_cli("sparsity", "compress", "--model", str(pruned), str(tmp_path / "c"), "--format", fmt)
    assert f"{fmt}: 12 layers" in result.stdout
    a, b = load_hf_model(pruned), load_hf_model(tmp_path / "c")
    assert all(np.array_equal(a.state_dict()[k].numpy(), b.state_dict()[k].numpy()) for k in a.state_dict())


def test_sparsity_export_never_overwrites_a_folder_it_did_not_write(tmp_path):
    pruned = cli_pruned(tmp_path, "--sparsity", "0.5")
    user = tmp_path / "exports"
    user.mkdir()
    (user / "report.pdf").write_bytes(b"user data")
    refused = optimum_cli("sparsity", "export", "--model", str(pruned), str(user), "--overwrite", check=False)
    assert refused.returncode == 2 and "did not write" in refused.stderr
    assert sorted(p.name for p in user.iterdir()) == ["report.pdf"]
    optimum_cli("sparsity", "export", "--model", str(pruned), str(tmp_path / "onnx"))
    again = optimum_cli("sparsity", "export", "--model", str(pruned), str(tmp_path / "onnx"), check=False)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    replaced = optimum_cli("sparsity", "export", "--model", str(pruned), str(tmp_path / "onnx"), "--overwrite")
    assert "weights bit-identical" in replaced.stdout and (tmp_path / "onnx" / "model.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".onnx.")) == []


def test_sparsity_export_passes_optimums_own_options(tmp_path):
    pruned = cli_pruned(tmp_path, "--method", "nm", "--pattern", "2:4")
    default = optimum_cli("sparsity", "export", "--model", str(pruned), str(tmp_path / "default"))
    assert "lower than the recommended" not in default.stderr  # Optimum picks its recommended opset
    half = optimum_cli("sparsity", "export", "--model", str(pruned), "--dtype", "fp16", str(tmp_path / "fp16"))
    assert "all 12 targeted weights bit-identical" in half.stdout
    report = inspect_onnx(tmp_path / "fp16" / "model.onnx")
    encoder = [layer for layer in report.layers if ".encoder." in layer.name]
    assert len(encoder) == 12 and all(layer.nm_ok for layer in encoder)
    graph = onnx.load(tmp_path / "fp16" / "model.onnx")
    assert {init.data_type for init in graph.graph.initializer if init.name in {l.initializer for l in encoder}} == {
        onnx.TensorProto.FLOAT16
    }
    optimized = optimum_cli("sparsity", "export", "--model", str(pruned), "--optimize", "O1", str(tmp_path / "o1"))
    assert "checked through the outputs (--optimize)" in optimized.stdout
    bad = optimum_cli("sparsity", "export", "--model", str(pruned), "--opset", "13", str(tmp_path / "x"), check=False)
    assert bad.returncode == 2 and "opset must be in [14, " in bad.stderr and not (tmp_path / "x").exists()
