"""Compressed Hugging Face checkpoints (compressed-tensors bitmask and 2:4): bit-exact round
trips, the loaders, the sizes, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from es_plugins import NMConfig, OMPConfig, SparsityPlan, sparsify_
from es_plugins.cli import main as es_cli
from es_plugins.io import compressed
from es_plugins.io.checkpoint import load_hf_model
from tests.conftest import make_tiny_bert, save_checkpoint


def pruned_dir(tmp_path, method, name):
    model = make_tiny_bert()
    sparsify_(model, SparsityPlan(method))
    return model, save_checkpoint(model, tmp_path / name)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("method,fmt", [(OMPConfig(0.5), "bitmask"), (NMConfig("2:4"), "2:4")])
def test_compress_round_trips_bit_exactly_and_shrinks(tmp_path, capsys, method, fmt):
    model, src = pruned_dir(tmp_path, method, "pruned")
    assert es_cli(["compress", "--model", str(src), str(tmp_path / "c"), "--json"]) == 0
    out = capsys.readouterr().out  # DeepSpeed, if imported earlier in this process, logs to stdout
    summary = json.loads(out[out.index("{\n") :])
    assert summary["format"] == fmt  # auto picks 2:4 only when every target is 2:4
    assert summary["targets_ratio"] <= 0.6  # 0.5 values + 1/32 bitmask (+ row offsets)
    assert summary["file_bytes"] < summary["dense_bytes"]
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["quantization_config"]["sparsity_config"]["format"] == compressed.FORMATS[fmt]
    loaded = load_hf_model(tmp_path / "c")
    assert same_weights(model, loaded)
    assert [n for n, _ in loaded.named_parameters()] == [n for n, _ in model.named_parameters()]


def test_two_four_checkpoint_loads_through_transformers(tmp_path):
    from transformers import AutoModelForSequenceClassification

    model, src = pruned_dir(tmp_path, NMConfig("2:4"), "pruned")
    assert es_cli(["compress", "--model", str(src), str(tmp_path / "c"), "--format", "2:4"]) == 0
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "c", dtype=torch.float32)
    assert same_weights(model, loaded)


def test_decompress_writes_a_plain_checkpoint(tmp_path):
    from transformers import AutoModelForSequenceClassification

    model, src = pruned_dir(tmp_path, OMPConfig(0.5), "pruned")
    es_cli(["compress", "--model", str(src), str(tmp_path / "c")])
    assert es_cli(["decompress", "--model", str(tmp_path / "c"), str(tmp_path / "plain")]) == 0
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert "quantization_config" not in config
    assert same_weights(model, AutoModelForSequenceClassification.from_pretrained(tmp_path / "plain"))


def test_two_four_format_refuses_unstructured_weights(tmp_path, capsys):
    _, src = pruned_dir(tmp_path, OMPConfig(0.5), "pruned")
    with pytest.raises(SystemExit):
        es_cli(["compress", "--model", str(src), str(tmp_path / "c"), "--format", "2:4"])
    err = capsys.readouterr().err
    assert "needs every targeted weight to be 2:4" in err and "Use --format bitmask" in err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("version", ["0.13.0", "0.19.0", "0.20.1"])
def test_unsupported_compressed_tensors_version_is_refused(tmp_path, monkeypatch, version):
    import compressed_tensors

    _, src = pruned_dir(tmp_path, OMPConfig(0.5), "pruned")
    es_cli(["compress", "--model", str(src), str(tmp_path / "c")])
    monkeypatch.setattr(compressed_tensors, "__version__", version)
    with pytest.raises(ImportError, match=f"compressed-tensors {version} is installed; .*>=0.14.0.1,<0.15"):
        compressed.load_compressed(tmp_path / "c")


def test_the_onnx_extra_admits_only_the_tested_compressed_tensors():
    """The extra's range, the lock's pin (what CI runs) and the runtime check agree: the floor is
    the tested release, and the releases known to break (0.19 API, 0.20 no sparse compressors)
    are outside."""
    import configparser

    from packaging.requirements import Requirement

    root = Path(__file__).resolve().parents[2]
    setup = configparser.ConfigParser()
    setup.read(root / "setup.cfg")
    extra = [Requirement(line) for line in setup["options.extras_require"]["onnx"].split("\n") if line.strip()]
    (requirement,) = [r for r in extra if r.name == "compressed-tensors"]
    lock = root / "requirements" / "lock.txt"
    pinned = next(
        line.split("==")[1] for line in lock.read_text().splitlines() if line.startswith("compressed-tensors==")
    )
    assert pinned in requirement.specifier and str(requirement.specifier) == f"<0.15,>={pinned}"
    assert not any(v in requirement.specifier for v in ("0.13.0", "0.15.0", "0.19.0", "0.20.1"))


def test_not_a_compressed_checkpoint(tmp_path):
    _, src = pruned_dir(tmp_path, OMPConfig(0.5), "pruned")
    with pytest.raises(ValueError, match="not a compressed-tensors sparse checkpoint"):
        compressed.load_compressed(src)
