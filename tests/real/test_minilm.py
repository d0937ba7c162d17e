"""The packaged real MiniLM checkpoint: prune, save, reload with plain transformers
(es_plugins made unimportable), same zeros and same outputs as the in-memory model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from es_plugins import OMPConfig, SparsityPlan, sparsify_
from es_plugins.io.assets import packaged_model_dir
from es_plugins.io.checkpoint import load_hf_model

pytestmark = pytest.mark.slow

SENTENCES = ["a gripping, beautifully shot film", "dull and far too long", "the cast is wonderful"]

RELOAD_WITHOUT_PACKAGE = r"""
import sys, json, torch
sys.modules["es_plugins"] = None  # any import of es_plugins now raises ImportError
from transformers import AutoModel, AutoTokenizer
path, sentences = sys.argv[1], json.loads(sys.argv[2])
model = AutoModel.from_pretrained(path, local_files_only=True).eval()
tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
with torch.no_grad():
    out = model(**tok(sentences, padding=True, return_tensors="pt")).last_hidden_state
torch.save({"out": out, "zeros": {n: (p == 0) for n, p in model.named_parameters()}}, sys.argv[3])
"""


def test_prune_save_reload_without_package(tmp_path):
    from transformers import AutoTokenizer

    from es_plugins.io.checkpoint import save_hf_checkpoint

    src = packaged_model_dir("minilm")
    model = load_hf_model(src)
    state = sparsify_(model, SparsityPlan(OMPConfig(0.4)))
    assert state.num_pruned == round(0.4 * state.num_weights)
    out_dir = tmp_path / "minilm-omp40"
    out_dir.mkdir()
    save_hf_checkpoint(model, src, out_dir)
    tok = AutoTokenizer.from_pretrained(src)
    with torch.no_grad():
        expected = model(**tok(SENTENCES, padding=True, return_tensors="pt")).last_hidden_state

    result = tmp_path / "reloaded.pt"
    subprocess.run(
        [sys.executable, "-c", RELOAD_WITHOUT_PACKAGE, str(out_dir), json.dumps(SENTENCES), str(result)],
        check=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    reloaded = torch.load(result)
    params = dict(model.named_parameters())
    assert reloaded["zeros"].keys() == params.keys()
    for name, param in params.items():
        assert torch.equal(reloaded["zeros"][name], param.detach() == 0), name
    torch.testing.assert_close(reloaded["out"], expected, rtol=0, atol=1e-5)


def test_cli_prune_packaged_minilm(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "es_plugins",
            "prune",
            "--model",
            "packaged:minilm",
            str(out),
            "--sparsity",
            "0.4",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(result.stdout)
    assert report["targets"]["layers"] == 36
    assert report["targets"]["zeros"] == round(0.4 * report["targets"]["weights"])
    assert (out / "tokenizer.json").is_file() and (out / "model.safetensors").is_file()
