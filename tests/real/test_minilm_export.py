"""The packaged MiniLM through the export path: `optimum-cli export onnx` of the dense, 50 %
OMP and 2:4 checkpoints keeps every weight and the outputs; the compressed checkpoints reach
the size target; a task the checkpoint has no head for is refused."""

from __future__ import annotations

import json

import pytest

from es_plugins.cli import main as es_cli
from es_plugins.io.assets import packaged_model_dir
from es_plugins.io.checkpoint import load_hf_model
from tests.integrations.test_onnx_export import assert_export_faithful, export, optimum_cli

pytestmark = pytest.mark.slow

OPTIONS = {"dense": None, "omp50": ["--sparsity", "0.5"], "2:4": ["--method", "nm", "--pattern", "2:4"]}


@pytest.mark.parametrize("variant", list(OPTIONS))
def test_minilm_export_keeps_weights_and_outputs(tmp_path, variant):
    model_dir = packaged_model_dir("minilm")
    if OPTIONS[variant]:
        assert es_cli(["prune", "--model", str(model_dir), str(tmp_path / "pruned"), *OPTIONS[variant]]) == 0
        model_dir = tmp_path / "pruned"
    onnx_path = export(model_dir, tmp_path / "onnx", task="feature-extraction")
    assert_export_faithful(model_dir, onnx_path)


@pytest.mark.parametrize("variant", ["omp50", "2:4"])
def test_minilm_compressed_checkpoint_size_and_round_trip(tmp_path, capsys, variant):
    assert es_cli(["prune", "--model", "packaged:minilm", str(tmp_path / "pruned"), *OPTIONS[variant]]) == 0
    capsys.readouterr()
    assert es_cli(["compress", "--model", str(tmp_path / "pruned"), str(tmp_path / "c"), "--json"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{\n") :])
    assert summary["format"] == ("2:4" if variant == "2:4" else "bitmask")
    assert summary["targets_ratio"] <= 0.6  # the target; the floor is 0.5 + 1/32
    a, b = load_hf_model(tmp_path / "pruned"), load_hf_model(tmp_path / "c")
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(sa[k].equal(sb[k]) for k in sa)


def test_minilm_has_no_classification_head_to_export(tmp_path):
    result = optimum_cli(
        "sparsity",
        "export",
        "--model",
        str(packaged_model_dir("minilm")),
        "--task",
        "text-classification",
        str(tmp_path / "o"),
        check=False,
    )
    assert result.returncode == 2
    assert "without a 'text-classification' head" in result.stderr and "feature-extraction" in result.stderr


def test_sparsity_export_accepts_packaged_models(tmp_path):
    result = optimum_cli("sparsity", "export", "--model", "packaged:minilm", str(tmp_path / "onnx"))
    assert "all 36 targeted weights bit-identical to packaged:minilm" in result.stdout
    assert (tmp_path / "onnx" / "model.onnx").is_file()
