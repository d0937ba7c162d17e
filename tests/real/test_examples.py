"""Every example in examples/ runs, on the packaged model and data, with small settings, and
does what its docstring says (one test per user journey)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> ModuleType:
    """Import examples/<name>.py as a module (the folder is not a package: users run the files)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_example_has_a_test():
    tested = {line.split('"')[1] for line in Path(__file__).read_text().splitlines() if 'example("' in line}
    assert {p.stem for p in EXAMPLES.glob("*.py")} <= tested


def test_sweep_api(tmp_path, capsys):
    result = example("sweep_api").main(
        ["--tokens", "512", "--levels", "0.2", "0.6", "--resolution", "0.2", "--output", str(tmp_path / "sweep")]
    )
    assert result.essential_sparsity is not None and result.uncertainty.essential_interval is not None
    assert "essential sparsity" in capsys.readouterr().out
    assert (tmp_path / "sweep" / "summary.md").is_file()


def test_trainer_omp_finetune():
    results = example("finetune_minilm_omp").main(["--train", "64", "--test", "32", "--skip-dense"])
    assert 0.0 <= results["omp 40%"]["accuracy"] <= 1.0


def test_trainer_lottery_ticket_vs_omp():
    rows = example("lth_vs_omp_minilm").main(["--rounds", "1", "--train", "48"])
    assert len(rows) == 1 and rows[0]["sparsity"] == pytest.approx(0.2, abs=1e-3)
    assert rows[0]["cosine"] > rows[0]["chance"]  # the lottery ticket's mask is far from a random one


def test_lightning(tmp_path):
    out = tmp_path / "lightning"
    report = example("lightning_minilm").main(["--steps", "4", "--train", "64", "--output", str(out)])
    assert report.target_sparsity == pytest.approx(0.4, abs=1e-3)  # still exactly 40 % after training
    masks = load_file(str(out / "sparsity_masks.safetensors"))
    assert masks and json.loads((out / "sparsity_report.json").read_text())


def test_accelerate(tmp_path):
    measured = example("accelerate_minilm").main(["--steps", "3", "--output", str(tmp_path / "acc")])
    assert measured == pytest.approx(0.4, abs=1e-3)
    assert (tmp_path / "acc" / "model" / "sparsity_masks.safetensors").is_file()


def test_peft_masked_lora(tmp_path):
    report = example("peft_masked_lora_minilm").main(["--steps", "3", "--output", str(tmp_path / "peft")])
    assert report.discarded_ratio == pytest.approx(0.0, abs=1e-6)  # nothing of the update thrown away
    assert (tmp_path / "peft" / "merged" / "config.json").is_file()


def test_wanda_sparsegpt():
    # SparseGPT through the same line is tested on SmolLM2 in test_smollm2_oneshot.py (minutes on CPU)
    results = example("wanda_sparsegpt_smollm2").main(
        ["--calib-samples", "2", "--seq-len", "64", "--eval-tokens", "512", "--methods", "magnitude", "wanda"]
    )
    assert set(results) == {"dense", "magnitude", "wanda"}
    assert all(math.isfinite(ppl) for ppl, _ in results.values())
    assert results["wanda"][0] < results["magnitude"][0]  # calibration recovers what magnitude loses


def test_export_24_onnx(tmp_path):
    difference = example("export_24_onnx").main(["--output", str(tmp_path / "export"), "--sentences", "2"])
    assert difference < 1e-3
    assert (tmp_path / "export" / "minilm-24-onnx" / "model.onnx").is_file()
