"""ONNX inspector, MatMul->Gemm rewrite, sparse initializers and the TensorRT helpers, on
hand-built graphs (no exporter involved), checked with the real onnx and ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from es_plugins.cli import main as es_cli
from es_plugins.export.onnx_check import compare_outputs, run_onnx, synthetic_feeds
from es_plugins.export.onnx_gemm import matmul_to_gemm, rewrite_and_check
from es_plugins.export.onnx_report import inspect_onnx
from es_plugins.export.onnx_sparse import compress_onnx, sparse_to_dense
from es_plugins.export.onnx_weights import OnnxInputError, find_weights, load_onnx
from es_plugins.export.tensorrt import (
    TensorRTUnavailableError,
    tensorrt_provider_options,
    tensorrt_sparse_session,
    trtexec_command,
)
from es_plugins.masks import nm_keep_mask


def two_four(out_features: int, in_features: int, seed: int) -> np.ndarray:
    """A PyTorch-layout [out, in] weight that is exactly 2:4 along the input axis."""
    weight = torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(seed))
    return (weight * nm_keep_mask(weight.abs(), 2, 4, 1)).numpy()


def linear_graph(weights: dict[str, np.ndarray], bias_via_identity: bool = False) -> onnx.ModelProto:
    """x[batch, seq, K] -> MatMul/Add per layer, named like an optimum export (transposed B)."""
    nodes, inits, current = [], [], "x"
    k = next(iter(weights.values())).shape[1]
    for i, (module, weight) in enumerate(weights.items()):
        path = "/" + module.replace(".", "/").replace("layer/", "layer.")
        inits.append(numpy_helper.from_array(weight.T.copy(), f"onnx::MatMul_{100 + i}"))
        bias = np.linspace(-1, 1, weight.shape[0]).astype(np.float32)
        inits.append(numpy_helper.from_array(bias, f"{module}.bias_src" if bias_via_identity else f"{module}.bias"))
        bias_name = f"{module}.bias"
        if bias_via_identity:
            nodes.append(helper.make_node("Identity", [f"{module}.bias_src"], [bias_name], name=f"{path}/Identity"))
        nodes.append(
            helper.make_node("MatMul", [current, f"onnx::MatMul_{100 + i}"], [f"{path}/mm"], name=f"{path}/MatMul")
        )
        nodes.append(helper.make_node("Add", [bias_name, f"{path}/mm"], [f"{path}/add"], name=f"{path}/Add"))
        current = f"{path}/add"
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", k])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["batch", "seq", weight.shape[0]])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture()
def graph_24():
    return linear_graph({"enc.layer.0.fc1": two_four(128, 64, 0), "enc.layer.0.fc2": two_four(64, 128, 1)})


def test_weights_map_back_to_pytorch_names_and_layout(graph_24):
    weights = find_weights(graph_24)
    assert [w.pytorch_name for w in weights] == ["enc.layer.0.fc1.weight", "enc.layer.0.fc2.weight"]
    fc1 = weights[0]
    assert fc1.op_type == "MatMul" and fc1.transposed and fc1.shape == (64, 128) and fc1.in_axis == 0
    assert (fc1.in_channels, fc1.out_channels) == (64, 128)


def test_inspector_counts_match_the_weights_and_flags_matmul(graph_24):
    report = inspect_onnx(graph_24, min_channels=32)
    fc1 = report.layer("enc.layer.0.fc1.weight")
    assert fc1.zeros == 64 * 128 // 2 and fc1.nm_ok
    assert not fc1.sparse_kernel_eligible and "MatMul" in fc1.reason
    assert report.to_dict()["matmul_layers_nm_compliant"] == 2
    assert "rewrite them to Gemm" in report.format_table()


def test_nm_is_checked_along_the_input_axis_not_the_stored_rows():
    # 2:4 along the *output* axis only: a transposed check would wrongly pass it.
    weight = two_four(64, 64, 3).T.copy()
    report = inspect_onnx(linear_graph({"m.layer.0.fc": weight}))
    assert not report.layers[0].nm_ok


def test_gemm_rewrite_keeps_outputs_folds_bias_and_makes_layers_eligible(graph_24):
    result = rewrite_and_check(graph_24)
    onnx.checker.check_model(result.model)
    assert result.rewritten == ("enc.layer.0.fc1.weight", "enc.layer.0.fc2.weight") and result.with_bias == 2
    assert result.check.max_abs_diff <= 1e-5
    ops = [n.op_type for n in result.model.graph.node]
    assert "MatMul" not in ops and ops.count("Gemm") == 2 and "Add" not in ops
    after = inspect_onnx(result.model, min_channels=32)
    assert len(after.eligible) == 2
    fc1 = after.layer("enc.layer.0.fc1.weight")
    assert fc1.shape == (128, 64) and fc1.zeros == 64 * 128 // 2  # stored [N, K], transB=1
    # a different batch and sequence length than the check used: shapes are read at run time
    feeds = {"x": np.random.default_rng(1).standard_normal((3, 5, 64)).astype(np.float32)}
    np.testing.assert_allclose(run_onnx(result.model, feeds)[0], run_onnx(graph_24, feeds)[0], atol=1e-5)


def test_gemm_rewrite_resolves_identity_biases_and_skips_dense_layers():
    dense = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    graph = linear_graph({"m.layer.0.a": two_four(64, 64, 5), "m.layer.0.b": dense}, bias_via_identity=True)
    result = rewrite_and_check(graph)
    assert result.rewritten == ("m.layer.0.a.weight",) and result.with_bias == 1
    assert [n.op_type for n in result.model.graph.node].count("MatMul") == 1
    everything = matmul_to_gemm(graph, pattern=None)
    assert len(everything.rewritten) == 2
    assert compare_outputs(graph, everything.model).ok


def test_sparse_initializers_only_where_smaller_and_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    high = rng.standard_normal((128, 64)).astype(np.float32)
    high[rng.random(high.shape) < 0.9] = 0
    half = two_four(64, 128, 2)
    graph = linear_graph({"m.layer.0.high": high, "m.layer.0.half": half})
    onnx.save(graph, tmp_path / "dense.onnx")
    result = compress_onnx(tmp_path / "dense.onnx", tmp_path / "sparse.onnx")
    assert result.converted == ("onnx::MatMul_100",) and "onnx::MatMul_101" in result.kept_dense
    assert result.compressed_file_bytes < result.dense_file_bytes
    sparse = onnx.load(tmp_path / "sparse.onnx")
    assert np.array_equal(sparse_to_dense(sparse.graph.sparse_initializer[0]), high.T)
    feeds = synthetic_feeds(graph)
    assert all(np.array_equal(a, b) for a, b in zip(run_onnx(graph, feeds), run_onnx(sparse, feeds)))
    assert inspect_onnx(sparse).layer("m.layer.0.high.weight").zeros == int((high == 0).sum())


def test_tensorrt_command_and_missing_provider_message(graph_24, tmp_path):
    command = trtexec_command(tmp_path / "m.onnx")
    assert "--sparsity=enable" in command and "--fp16" in command and "m.sparse.engine" in command
    assert tensorrt_provider_options()["trt_sparsity_enable"] is True
    with pytest.raises(ValueError, match="precision"):
        trtexec_command("m.onnx", "fp8")
    onnx.save(graph_24, tmp_path / "m.onnx")
    with pytest.raises(TensorRTUnavailableError, match="CPUExecutionProvider.*trtexec"):
        tensorrt_sparse_session(tmp_path / "m.onnx")


def test_bad_onnx_inputs_fail_clearly(tmp_path, capsys):
    (tmp_path / "junk.onnx").write_text("not a model")
    with pytest.raises(OnnxInputError, match="is not an ONNX model"):
        load_onnx(tmp_path / "junk.onnx")
    with pytest.raises(SystemExit):
        es_cli(["inspect", "--model", str(tmp_path / "junk.onnx")])
    assert "is not an ONNX model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        es_cli(["inspect", "--model", str(tmp_path / "missing.onnx")])
    assert "not found" in capsys.readouterr().err


def test_cli_inspect_json_and_rewrite(graph_24, tmp_path, capsys):
    import json

    onnx.save(graph_24, tmp_path / "m.onnx")
    assert (
        es_cli(
            [
                "inspect",
                "--model",
                str(tmp_path / "m.onnx"),
                "--json",
                "--min-channels",
                "32",
                "--rewrite-gemm",
                str(tmp_path / "g.onnx"),
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["nm_compliant_layers"] == 2 and data["meta"]["rewrite"]["eligible_after"] == 2
    assert "--sparsity=enable" in data["meta"]["trtexec"]
    assert len(inspect_onnx(tmp_path / "g.onnx", min_channels=32).eligible) == 2


def test_gpu_benchmark_says_clearly_when_there_is_no_gpu():
    import subprocess
    import sys
    from pathlib import Path

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the script would measure instead")
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_semi_structured.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "nothing measured" in result.stdout
