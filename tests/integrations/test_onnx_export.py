"""A checkpoint pruned by es-plugins exports with the unmodified `optimum-cli export onnx`:
the zeros survive exactly and ONNX Runtime matches PyTorch (first piece of the export issue)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from es_plugins.cli import main as es_cli

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("method", [["--method", "omp", "--sparsity", "0.5"], ["--method", "nm", "--pattern", "2:4"]])
def test_optimum_cli_export_keeps_zeros_and_outputs(tmp_path, tiny_classifier_dir, method):
    from onnx import numpy_helper
    from transformers import AutoModelForSequenceClassification

    pruned = tmp_path / "pruned"
    assert es_cli(["prune", str(tiny_classifier_dir), str(pruned), *method]) == 0
    out = tmp_path / "onnx"
    cli = Path(sys.executable).with_name("optimum-cli")
    result = subprocess.run([str(cli), "export", "onnx", "--model", str(pruned), "--task", "text-classification",
                             "--opset", "17", str(out)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]

    model = AutoModelForSequenceClassification.from_pretrained(pruned).eval()
    graph = onnx.load(str(out / "model.onnx")).graph
    initializers = [numpy_helper.to_array(t) for t in graph.initializer]
    for name, param in model.named_parameters():
        if "encoder.layer" not in name or not name.endswith(".weight") or param.dim() != 2:
            continue
        weight = param.detach().numpy()
        matches = [a for a in initializers if a.shape in (weight.shape, weight.T.shape)
                   and (np.array_equal(a, weight) or np.array_equal(a, weight.T))]
        assert matches, f"{name} not found bit-exactly among the ONNX initializers"
        assert int((matches[0] == 0).sum()) == int((weight == 0).sum()) > 0

    ids = torch.randint(3, 30, (2, 10), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).logits.numpy()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": np.zeros_like(ids.numpy())}
    feeds = {k: v for k, v in feeds.items() if k in {i.name for i in session.get_inputs()}}
    got = session.run(None, feeds)[0]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
