"""The path a user walks, on the packaged MiniLM: CLI prune of the base checkpoint -> Trainer
fine-tune of a classifier with those masks -> compare-masks -> optimum export -> inspect.
Also runs the Python start of docs/usage.md as printed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import Trainer, TrainingArguments

from es_plugins import SparsityState
from es_plugins.cli import main as es_cli
from es_plugins.integrations.hf_recipes import load_classifier
from es_plugins.integrations.transformers import SparsityCallback
from es_plugins.io.assets import packaged_model_dir
from es_plugins.io.datasets import TokenizedDataset, rotten_tomatoes
from es_plugins.masks.state import MASKS_FILENAME

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_cli_trainer_compare_export_inspect(tmp_path, capsys):
    pruned = tmp_path / "pruned"
    assert es_cli(["prune", "--model", "packaged:minilm", str(pruned), "--sparsity", "0.4"]) == 0
    cli_masks = SparsityState.load(pruned / MASKS_FILENAME)
    assert next(iter(cli_masks.masks)).startswith("encoder.layer.0.")  # the base checkpoint's names

    model, tokenizer = load_classifier(packaged_model_dir("minilm"), 2)  # names: bert.encoder...
    texts, labels = rotten_tomatoes(limit=64, seed=0)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        use_cpu=True,
        max_steps=4,
        per_device_train_batch_size=16,
        save_strategy="steps",
        save_steps=4,
        report_to=[],
        disable_tqdm=True,
        learning_rate=1e-4,
    )
    callback = SparsityCallback(state=cli_masks)
    trainer = Trainer(
        model=model, args=args, train_dataset=TokenizedDataset(tokenizer, texts, labels, 32), callbacks=[callback]
    )
    trainer.train()
    final = tmp_path / "final"
    trainer.save_model(str(final))
    tokenizer.save_pretrained(final)
    assert json.loads((final / "sparsity_report.json").read_text())["targets"]["sparsity"] == pytest.approx(0.4, 1e-3)
    assert "This model is pruned" in (final / "README.md").read_text()

    capsys.readouterr()
    assert es_cli(["compare-masks", str(pruned), str(tmp_path / "run" / "checkpoint-4"), "--json"]) == 0
    similarity = json.loads(capsys.readouterr().out)
    assert similarity["overall"]["cosine"] == pytest.approx(1.0)

    cli = Path(sys.executable).with_name("optimum-cli")
    export = subprocess.run(
        [str(cli), "sparsity", "export", "--model", str(final), str(tmp_path / "onnx")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert export.returncode == 0, export.stderr[-2000:]
    assert "all 36 targeted weights bit-identical" in export.stdout

    assert es_cli(["inspect", "--model", str(tmp_path / "onnx" / "model.onnx"), "--reference", str(final)]) == 0
    assert "all 36 targeted weights bit-identical" in capsys.readouterr().out
    state = callback.sparsifier.state
    assert state.count_nonzero_pruned(model) == 0


def test_usage_python_start_runs(tmp_path):
    usage = (REPO / "docs" / "usage.md").read_text()
    section = usage[usage.index("## Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"40\.00% of [\d,]+ targeted weights are zero; 2000 sentences", result.stdout)
