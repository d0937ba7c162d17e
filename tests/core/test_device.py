"""Device plumbing, checked on the CPU: the device argument is honoured, tensors stay where the
layer runs, and no activation is copied to the CPU on the calibration hot path.

Two stand-ins make a CPU-only machine show what a GPU would:
- the ``meta`` device: a statistic or mask built on the CPU next to a meta input fails to mix
  with it, and ``.cpu()`` of a meta tensor raises, so running the hot path on meta tensors
  proves it creates and copies nothing on the CPU;
- ``cpu:0``: a device that compares unequal to the model's ``cpu``, so the block-onloading path
  (move each block to the device, calibrate, move it back) runs for real.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from es_plugins import SparseGPTConfig, SparsityConfigError, SparsityPlan, WandaConfig, sparsify_
from es_plugins.cli import main as cli
from es_plugins.engines.calibration import engine
from es_plugins.engines.calibration.stats import InputStats
from es_plugins.engines.device import check_precision, resolve_device, to_device
from es_plugins.masks.targets import Target
from es_plugins.methods.wanda import wanda_layer
from tests.conftest import make_tiny_gpt2, save_checkpoint

CALIB = torch.randint(0, 99, (4, 16), generator=torch.Generator().manual_seed(0))
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")


def test_resolve_device_spellings():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(SparsityConfigError, match="--device: 'gpu0' is not a device; use auto, cpu, cuda"):
        resolve_device("gpu0", flag="--device")
    with pytest.raises(SparsityConfigError, match="supported devices are cpu, cuda"):
        resolve_device("xpu")
    check_precision("bf16")
    with pytest.raises(SparsityConfigError, match="precision must be one of bf16, fp16"):
        check_precision("int4")


@NO_CUDA
def test_cuda_without_cuda_is_a_one_line_error():
    with pytest.raises(SparsityConfigError, match="--device cuda:1: CUDA is not available on this machine"):
        resolve_device("cuda:1", flag="--device")


@NO_CUDA
@pytest.mark.parametrize(
    "command",
    [
        ["prune", "--model", "{src}", "{out}", "--method", "wanda", "--calib", "{text}"],
        ["prune", "--model", "{src}", "{out}", "--method", "sparsegpt", "--calib", "{text}", "--low-memory"],
        ["sweep", "--model", "{src}", "--task", "perplexity", "--text", "{text}", "--output", "{out}"],
        ["export", "--model", "{src}", "{out}"],
    ],
    ids=["prune", "prune-low-memory", "sweep", "export"],
)
def test_device_cuda_fails_before_any_work(tmp_path, capsys, command):
    src = save_checkpoint(make_tiny_gpt2(), tmp_path / "model")
    text = tmp_path / "calib.txt"
    text.write_text("the film was good " * 200)
    argv = [a.format(src=src, out=tmp_path / "out", text=text) for a in command] + ["--device", "cuda"]
    with pytest.raises(SystemExit) as exit_info:
        cli(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "CUDA is not available on this machine" in err and len(err.strip().splitlines()) == 1
    assert "loading" not in err and not (tmp_path / "out").exists()


def _meta_target(width: int = 8) -> Target:
    param = nn.Parameter(torch.empty(4, width, device="meta"))
    return Target("layer.weight", "layer", param, 1)


@pytest.mark.parametrize("hessian", [False, True])
def test_statistics_accumulate_on_the_layers_device(hessian):
    """On meta, a CPU-side buffer or a ``.cpu()`` copy of the activations would raise."""
    target = _meta_target()
    stats = InputStats(target, hessian=hessian)
    stats.hook(None, (torch.empty(2, 5, 8, device="meta"),), None)
    assert stats.sq_norms.device.type == "meta" and stats.rows == 10
    assert (stats.hessian is not None) == hessian
    if hessian:
        assert stats.hessian is not None and stats.hessian.device.type == "meta"


@pytest.mark.parametrize("pattern", [None, "2:4"])
def test_wanda_builds_its_mask_on_the_weights_device(pattern):
    target = _meta_target()
    stats = InputStats(target, hessian=False)
    stats.hook(None, (torch.empty(3, 8, device="meta"),), None)
    config = WandaConfig(pattern=pattern) if pattern else WandaConfig(0.5)
    mask = wanda_layer(target, config, stats, None)
    assert mask.device.type == "meta" and mask.shape == (4, 8)


def test_to_device_moves_every_tensor_of_captured_block_inputs():
    meta = torch.device("meta")
    args = (torch.ones(2), [torch.ones(1), "x"], {"mask": torch.ones(3), "flag": True}, None)
    moved = to_device(args, meta)
    assert moved[0].is_meta and moved[1][0].is_meta and moved[1][1] == "x"
    assert moved[2]["mask"].is_meta and moved[2]["flag"] is True and moved[3] is None


class _NoCopiesToTheCpu(TorchFunctionMode):
    """Records the explicit device-to-CPU copies: ``.cpu()``, ``.numpy()`` and ``.to("cpu")``
    with the CPU named in the code (``.to(weight.device)`` follows the model and is fine)."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in ("cpu", "numpy"):
            self.copies.append(name)
        elif name == "to":
            named = [a for a in (*args[1:], kwargs.get("device")) if isinstance(a, str)]
            if any(a.startswith("cpu") for a in named):
                self.copies.append("to(cpu)")
        return func(*args, **kwargs)


@pytest.mark.parametrize("config", [WandaConfig(0.5), WandaConfig(pattern="2:4"), SparseGPTConfig(0.5)])
def test_the_calibration_hot_path_makes_no_copy_to_the_cpu(monkeypatch, config):
    """Statistics hooks, Hessians and the per-layer pruning of every block run under a mode that
    records each explicit copy to the CPU: there must be none."""
    spy = _NoCopiesToTheCpu()
    real = engine.prune_block_

    def watched(*args, **kwargs):
        with spy:
            return real(*args, **kwargs)

    monkeypatch.setattr("es_plugins.engines.calibration.driver.prune_block_", watched)
    state = sparsify_(make_tiny_gpt2(), SparsityPlan(config), calibration=CALIB)
    assert state.masks and spy.copies == []


@pytest.mark.parametrize("config", [WandaConfig(0.5), SparseGPTConfig(0.5)])
def test_blocks_are_onloaded_one_at_a_time_and_the_result_is_the_same(monkeypatch, config):
    model, reference = make_tiny_gpt2(), make_tiny_gpt2()
    expected = sparsify_(reference, SparsityPlan(config), calibration=CALIB)
    moves: list[tuple[int, str]] = []
    blocks = {id(block): index for index, block in enumerate(model.transformer.h)}
    real_to = nn.Module.to

    def recording_to(module, *args, **kwargs):
        if id(module) in blocks:
            moves.append((blocks[id(module)], str(args[0] if args else kwargs.get("device"))))
        return real_to(module, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "to", recording_to)
    work = torch.device("cpu", 0)  # unequal to the model's torch.device("cpu"): the onloading path runs
    state = sparsify_(model, SparsityPlan(config), calibration=CALIB, device=work)
    assert moves == [(0, "cpu:0"), (0, "cpu"), (1, "cpu:0"), (1, "cpu")]
    assert all(torch.equal(state.masks[n], expected.masks[n]) for n in expected.masks)
    reference_params = dict(reference.named_parameters())
    for name, param in model.named_parameters():
        torch.testing.assert_close(param, reference_params[name], rtol=0, atol=0)


def test_the_model_stays_where_it_lives_without_a_device():
    model = make_tiny_gpt2()
    before = copy.deepcopy(model)
    sparsify_(model, SparsityPlan(WandaConfig(0.5)), calibration=CALIB)
    assert {p.device for p in model.parameters()} == {p.device for p in before.parameters()}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on a lent GPU machine)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_global_omp_of_a_cuda_model_matches_the_cpu_and_stays_on_its_device(dtype):
    """Magnitudes of weights on the GPU are scored into the engine's host buffer chunk by chunk
    (fp32 included: ``torch.abs`` cannot write a CUDA tensor's result into a host ``out``)."""
    from es_plugins import OMPConfig
    from es_plugins.masks.targets import TargetSpec, resolve_targets
    from es_plugins.methods import compute_masks

    model = make_tiny_gpt2().to(dtype)
    on_cpu = compute_masks(resolve_targets(model, TargetSpec()), OMPConfig(0.5))
    on_gpu = compute_masks(resolve_targets(model.to("cuda"), TargetSpec()), OMPConfig(0.5))
    assert {m.device.type for m in on_gpu.values()} == {"cuda"}
    assert all(torch.equal(on_cpu[name], on_gpu[name].cpu()) for name in on_cpu)
