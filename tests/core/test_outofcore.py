"""Out-of-core pruning of sharded safetensors checkpoints: the same masks and weights as an
in-memory run, bit for bit, with memory bounded by one tensor (or one block), not the model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from es_plugins import (
    MaskMismatchError,
    NMConfig,
    OMPConfig,
    RandomConfig,
    SparseGPTConfig,
    SparsityConfigError,
    SparsityPlan,
    SparsityState,
    WandaConfig,
    sparsify_,
)
from es_plugins.cli import main
from es_plugins.engines.outofcore import ShardedCheckpoint, prune_blockwise, prune_tensorwise
from es_plugins.engines.outofcore.files import INDEX_FILE
from es_plugins.masks.state import MASKS_FILENAME

ROOT = Path(__file__).resolve().parents[2]


def tiny_llama(layers: int = 3, dtype: torch.dtype = torch.float32, hidden: int = 64, inter: int = 176):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).to(dtype).eval()


def sharded(model, path: Path, shard: str = "60KB") -> Path:
    model.save_pretrained(path, max_shard_size=shard)
    assert (path / INDEX_FILE).is_file()
    return path


def same_weights(a, b) -> bool:
    theirs = dict(b.named_parameters())
    return all(p.dtype == theirs[n].dtype and torch.equal(p, theirs[n]) for n, p in a.named_parameters())


@pytest.mark.parametrize(
    "config", [OMPConfig(0.5), OMPConfig(0.4, "layer"), RandomConfig(0.3, seed=2), NMConfig("2:4")]
)
def test_streamed_prune_equals_the_in_memory_one_bit_for_bit(tmp_path, config):
    from transformers import LlamaForCausalLM

    src = sharded(tiny_llama(dtype=torch.bfloat16), tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    report = prune_tensorwise(src, out, SparsityPlan(config))
    (out / "config.json").write_bytes((src / "config.json").read_bytes())
    reference = LlamaForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
    state = sparsify_(reference, config)
    state.save(tmp_path / "reference.safetensors")
    assert (out / MASKS_FILENAME).read_bytes() == (tmp_path / "reference.safetensors").read_bytes()
    assert {p.name for p in out.glob("*.safetensors")} == {p.name for p in src.glob("*.safetensors")} | {MASKS_FILENAME}
    assert json.loads((out / INDEX_FILE).read_text()) == json.loads((src / INDEX_FILE).read_text())
    loaded = LlamaForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    assert loaded.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16 and same_weights(loaded, reference)
    assert report.target_sparsity == pytest.approx(state.sparsity)


@pytest.mark.parametrize(
    "config, dtype, device",
    [
        (WandaConfig(0.5), torch.float32, "cpu"),
        (SparseGPTConfig(pattern="2:4"), torch.float32, "cpu"),
        (SparseGPTConfig(0.5, passes=2), torch.float32, "cpu"),
        (WandaConfig(0.5), torch.bfloat16, "cpu"),  # blocks run in the stored dtype, as in memory with dtype auto
        # a device unequal to the skeleton's "cpu": the block and its inputs are moved there (tests/core/test_device.py)
        (SparseGPTConfig(0.5), torch.float32, "cpu:0"),
    ],
)
def test_sequential_onloading_equals_the_in_memory_prune(tmp_path, config, dtype, device):
    from transformers import LlamaForCausalLM

    src = sharded(tiny_llama(dtype=dtype), tmp_path / "src")
    calibration = torch.randint(0, 128, (8, 32), generator=torch.Generator().manual_seed(1))
    out = tmp_path / "out"
    out.mkdir()
    prune_blockwise(
        src, out, SparsityPlan(config), calibration, activation_budget=0, device=device
    )  # activations spill to disk
    (out / "config.json").write_bytes((src / "config.json").read_bytes())
    reference = LlamaForCausalLM.from_pretrained(src, dtype="auto")
    state = sparsify_(reference, config, calibration=calibration)
    state.save(tmp_path / "reference.safetensors")
    assert (out / MASKS_FILENAME).read_bytes() == (tmp_path / "reference.safetensors").read_bytes()
    assert same_weights(LlamaForCausalLM.from_pretrained(out, dtype="auto"), reference)


def test_cli_low_memory_writes_a_plain_checkpoint_with_the_in_memory_masks(tmp_path, capsys):
    from transformers import LlamaForCausalLM

    src = sharded(tiny_llama(), tmp_path / "src")
    assert main(["prune", "--model", str(src), str(tmp_path / "streamed"), "--low-memory", "--sparsity", "0.6"]) == 0
    assert main(["prune", "--model", str(src), str(tmp_path / "loaded"), "--sparsity", "0.6"]) == 0
    streamed, loaded = tmp_path / "streamed", tmp_path / "loaded"
    assert (streamed / MASKS_FILENAME).read_bytes() == (loaded / MASKS_FILENAME).read_bytes()
    assert same_weights(LlamaForCausalLM.from_pretrained(streamed), LlamaForCausalLM.from_pretrained(loaded))
    report = json.loads((streamed / "sparsity_report.json").read_text())
    assert report["targets"]["sparsity"] == pytest.approx(0.6, abs=1e-3) and report["meta"]["out_of_core"]
    assert "Sparsity (es-plugins)" in (streamed / "README.md").read_text()


def test_cli_switches_to_out_of_core_above_the_memory_budget_and_refuses_what_it_cannot_stream(tmp_path, capsys):
    src = sharded(tiny_llama(), tmp_path / "src")
    assert main(["prune", "--model", str(src), str(tmp_path / "out"), "--memory-budget", "0.0001"]) == 0
    assert "pruning out of core" in capsys.readouterr().err
    tiny_llama().save_pretrained(tmp_path / "bin", safe_serialization=False)
    with pytest.raises(SystemExit):
        main(["prune", "--model", str(tmp_path / "bin"), str(tmp_path / "out2"), "--low-memory"])
    assert "low_memory=True (--low-memory) reads safetensors shards" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["prune", "--model", str(src), str(tmp_path / "out3"), "--low-memory", "--dtype", "float16"])
    assert "dtype (--dtype) does not apply to low_memory=True (--low-memory)" in capsys.readouterr().err


def test_reader_maps_tensors_without_loading_them(tmp_path):
    src = sharded(tiny_llama(dtype=torch.bfloat16), tmp_path / "src")
    checkpoint = ShardedCheckpoint(src)
    assert len(checkpoint.shards) > 1
    name = "model.layers.1.mlp.down_proj.weight"
    with safe_open(str(checkpoint.entries[name].file), framework="pt") as handle:
        expected = handle.get_tensor(name)
    view = checkpoint.tensor(name)
    assert view.dtype == torch.bfloat16 and torch.equal(view, expected)
    assert not view.is_shared() and view.untyped_storage().nbytes() == expected.numel() * 2


MEMORY_PROBE = textwrap.dedent(
    """
    import sys, tempfile, torch
    from pathlib import Path
    from es_plugins import OMPConfig, SparseGPTConfig, SparsityPlan
    from es_plugins.engines.memory import PeakAnonSampler, stable_allocator
    from es_plugins.engines.outofcore import prune_tensorwise
    from es_plugins.engines.outofcore import prune_blockwise

    stable_allocator()
    torch.set_num_threads(1)
    small, big = sys.argv[1:3]

    def run(src, method):
        out = Path(tempfile.mkdtemp())
        if method == "omp":
            prune_tensorwise(src, out, SparsityPlan(OMPConfig(0.5)))
        else:
            calibration = torch.randint(0, 128, (8, 32), generator=torch.Generator().manual_seed(0))
            prune_blockwise(src, out, SparsityPlan(SparseGPTConfig(0.5)), calibration, activation_budget=0)

    for method in ("omp", "sparsegpt"):
        run(small, method)  # imports and one-time allocations happen here, outside the measurement
        with PeakAnonSampler(0.001) as sampler:
            run(big, method)
        print(method, sampler.added)
    """
)


def test_peak_anonymous_memory_is_bounded_by_a_tensor_not_the_model(tmp_path):
    small = sharded(tiny_llama(layers=2, hidden=256, inter=1024), tmp_path / "small", "2MB")
    big = sharded(tiny_llama(layers=24, hidden=256, inter=1024), tmp_path / "big", "16MB")
    model_bytes = ShardedCheckpoint(big).nbytes
    largest = max(e.nbytes for e in ShardedCheckpoint(big).entries.values())
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(small), str(big)], capture_output=True, text=True, cwd=ROOT, check=True
    )
    added = {line.split()[0]: int(line.split()[1]) for line in probe.stdout.strip().splitlines()[-2:]}
    # ~100 MB of weights, 1 MB tensors: the bound is a few tensors plus fixed chunk buffers (and, for
    # SparseGPT, one block, its Hessians and the embeddings): it does not grow with the depth.
    assert added["omp"] < 24 * largest and added["sparsegpt"] < 48 * largest, (added, largest)
    assert max(added.values()) < model_bytes / 2


def test_the_out_of_core_calibrated_path_makes_the_in_memory_checks(tmp_path):
    """Both calibrated drivers run `check_calibrated_targets`: a sparsity that empties a layer,
    masks naming layers outside the plan, and refining weights that are already zero."""
    src = sharded(tiny_llama(), tmp_path / "src")
    calibration = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(1))

    def run(plan, masks=None, name="out"):
        out = tmp_path / name
        out.mkdir()
        return prune_blockwise(src, out, plan, calibration, masks)

    with pytest.raises(SparsityConfigError, match="prunes all"):
        run(SparsityPlan(WandaConfig(0.9999)), name="o1")
    reference = _load_llama(src)
    omp = sparsify_(reference, OMPConfig(0.5))
    wider = SparsityState(
        {**omp.masks, "lm_head.weight": torch.ones_like(reference.lm_head.weight, dtype=torch.bool)}, omp.meta
    )
    with pytest.raises(MaskMismatchError, match="outside the plan's targets"):
        run(SparsityPlan(SparseGPTConfig(0.5)), wider, name="o2")
    pruned = sharded(reference, tmp_path / "pruned")  # masks already applied: nothing to reconstruct
    out = tmp_path / "o3"
    out.mkdir()
    with pytest.warns(UserWarning, match="already zero"):
        prune_blockwise(pruned, out, SparsityPlan(SparseGPTConfig(0.5)), calibration, omp)


def _load_llama(path):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(path).eval()


def test_the_former_out_of_core_names_warn_and_run_the_drivers(tmp_path):
    from es_plugins.engines import outofcore

    src = sharded(tiny_llama(), tmp_path / "sharded")
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    with pytest.warns(
        FutureWarning,
        match="outofcore.prune_checkpoint is deprecated .* use es_plugins.engines.outofcore.prune_tensorwise",
    ):
        outofcore.prune_checkpoint(src, tmp_path / "old", SparsityPlan(OMPConfig(0.5)))
    prune_tensorwise(src, tmp_path / "new", SparsityPlan(OMPConfig(0.5)))
    old = SparsityState.load(tmp_path / "old" / MASKS_FILENAME).masks
    new = SparsityState.load(tmp_path / "new" / MASKS_FILENAME).masks
    assert all(torch.equal(old[n], new[n]) for n in new)
    with pytest.warns(FutureWarning, match="prune_checkpoint_sequential is deprecated"):
        with pytest.raises(SparsityConfigError):  # the blockwise driver, with its own checks
            outofcore.prune_checkpoint_sequential(src, tmp_path / "x", SparsityPlan(OMPConfig(0.5)), torch.zeros(1, 4))
