"""The jobs: each command's work as a library function. The library does what the CLI does —
same files, same masks — and decides in-memory vs out of core, calibrated or not, itself."""

from __future__ import annotations

import json

import pytest
import torch

from es_plugins import (
    Calibration,
    NMConfig,
    OMPConfig,
    SparseGPTConfig,
    SparsityConfigError,
    SparsityPlan,
    SparsityState,
    SweepOptions,
    WandaConfig,
    compare_masks,
    prune_checkpoint,
    sweep,
)
from es_plugins.cli import main
from es_plugins.io.artifacts import REPORT_FILENAME
from es_plugins.jobs.export import compress, decompress, is_onnx_path
from es_plugins.jobs.inspect import inspect
from es_plugins.jobs.statistics import load_masks, near_zero
from es_plugins.jobs.sweep import SWEEP_ARGS_FILE
from es_plugins.masks.state import MASKS_FILENAME
from tests.conftest import random_text, sharded_checkpoint


def _masks(folder) -> dict[str, torch.Tensor]:
    return SparsityState.load(folder / MASKS_FILENAME).masks


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


@pytest.fixture
def calib_text(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text("\n".join(random_text(200, seed=i) for i in range(5)))
    return path


def test_prune_checkpoint_writes_what_the_cli_writes(tmp_path, tiny_bert_dir, capsys):
    result = prune_checkpoint(tiny_bert_dir, tmp_path / "lib", OMPConfig(0.4))
    assert main(["prune", "--model", str(tiny_bert_dir), str(tmp_path / "cli"), "--sparsity", "0.4"]) == 0
    assert result.out_dir == (tmp_path / "lib").resolve() and not result.out_of_core
    assert result.report.to_dict()["targets"]["sparsity"] == pytest.approx(0.4, abs=1e-3)
    assert _same(_masks(tmp_path / "lib"), _masks(tmp_path / "cli"))
    assert (tmp_path / "lib" / REPORT_FILENAME).is_file() and (tmp_path / "lib" / "config.json").is_file()


@pytest.mark.parametrize("config", [OMPConfig(0.5), NMConfig("2:4")], ids=["omp", "nm"])
def test_low_memory_picks_the_tensorwise_driver_and_gives_the_in_memory_masks(tmp_path, config):
    src = sharded_checkpoint(tmp_path / "sharded")
    streamed = prune_checkpoint(src, tmp_path / "streamed", config, low_memory=True)
    loaded = prune_checkpoint(src, tmp_path / "loaded", config, low_memory=False)
    assert streamed.out_of_core and streamed.report.meta["out_of_core"] is True and not loaded.out_of_core
    assert _same(_masks(tmp_path / "streamed"), _masks(tmp_path / "loaded"))


def test_a_budget_below_the_weights_goes_out_of_core_by_itself(tmp_path):
    src = sharded_checkpoint(tmp_path / "sharded")
    result = prune_checkpoint(src, tmp_path / "out", OMPConfig(0.5), memory_budget=1e-6)
    assert result.out_of_core


def test_calibrated_plans_take_calibration_text_and_run_blockwise_out_of_core(tmp_path, calib_text):
    src = sharded_checkpoint(tmp_path / "sharded")
    calibration = Calibration(calib_text, samples=4, seq_len=32)
    plan = SparsityPlan(WandaConfig(0.5))
    in_memory = prune_checkpoint(src, tmp_path / "mem", plan, calibration=calibration, low_memory=False)
    streamed = prune_checkpoint(src, tmp_path / "ooc", plan, calibration=calibration, low_memory=True)
    assert streamed.report.meta["out_of_core"] == "sequential" and not in_memory.out_of_core
    assert _same(_masks(tmp_path / "mem"), _masks(tmp_path / "ooc"))


def test_refining_a_masks_file_keeps_it_exactly(tmp_path, tiny_lm_dir, calib_text):
    prune_checkpoint(tiny_lm_dir, tmp_path / "omp", OMPConfig(0.5, scope="layer"))
    calibration = Calibration(calib_text, samples=4, seq_len=32)
    prune_checkpoint(
        tiny_lm_dir,
        tmp_path / "refined",
        SparseGPTConfig(0.5),
        calibration=calibration,
        masks=tmp_path / "omp" / MASKS_FILENAME,
    )
    assert _same(_masks(tmp_path / "omp"), _masks(tmp_path / "refined"))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"plan": WandaConfig(0.5)}, "needs calibration data"),
        ({"plan": OMPConfig(0.5), "calibration": Calibration(["a b c"])}, "needs no calibration"),
        ({"plan": OMPConfig(0.5), "masks": "m.safetensors"}, "does not apply to method omp"),
        ({"plan": OMPConfig(0.5), "low_memory": "yes"}, "low_memory must be True, False or 'auto'"),
        ({"plan": OMPConfig(0.5), "dtype": "fp8"}, "dtype must be one of"),
        ({"plan": OMPConfig(0.5), "memory_budget": 0}, "memory_budget .* must be > 0"),
    ],
)
def test_bad_arguments_fail_before_any_output(tmp_path, tiny_bert_dir, kwargs, words):
    plan = kwargs.pop("plan")
    with pytest.raises(SparsityConfigError, match=words):
        prune_checkpoint(tiny_bert_dir, tmp_path / "out", plan, **kwargs)
    assert not (tmp_path / "out").exists()


def test_calibration_options_are_validated_at_construction():
    with pytest.raises(SparsityConfigError, match="calibration samples must be an integer >= 1"):
        Calibration("packaged:bbc-calib", samples=0)


def test_compare_masks_and_near_zero_return_what_the_cli_prints(tmp_path, tiny_bert_dir):
    prune_checkpoint(tiny_bert_dir, tmp_path / "a", OMPConfig(0.5))
    prune_checkpoint(tiny_bert_dir, tmp_path / "b", OMPConfig(0.5, scope="layer"))
    similarity = compare_masks(tmp_path / "a", tmp_path / "b", output=tmp_path / "cmp")
    assert 0.5 < similarity.to_dict()["overall"]["cosine"] <= 1.0
    assert (tmp_path / "cmp" / "mask_similarity.json").is_file()
    assert load_masks(tmp_path / "a").masks.keys() == load_masks(tmp_path / "a" / MASKS_FILENAME).masks.keys()
    stats = near_zero([str(tmp_path / "a")], threshold=1e-12, mode="absolute", exclude_masked=True)
    assert stats[str(tmp_path / "a")].overall == 0.0  # the exact zeros are all masked ones
    with pytest.raises(SparsityConfigError, match="mode must be one of"):
        near_zero([str(tmp_path / "a")], mode="typo")


def test_inspect_reads_the_masks_file_beside_the_weights(tmp_path, tiny_bert_dir):
    prune_checkpoint(tiny_bert_dir, tmp_path / "p", NMConfig("2:4"))
    report = inspect(tmp_path / "p", pattern="2:4")
    data = report.to_dict()
    assert report.meta["masks_file"]["weights_nonzero_where_masked"] == 0
    assert data["targets"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(SparsityConfigError, match="--gemm-copy applies to .onnx files"):
        inspect(tmp_path / "p", gemm_copy=tmp_path / "x.onnx")


def test_compress_and_decompress_round_trip_the_weights(tmp_path, tiny_bert_dir):
    prune_checkpoint(tiny_bert_dir, tmp_path / "p", NMConfig("2:4"))
    summary = compress(tmp_path / "p", tmp_path / "c")
    assert summary.ratio < 1.0 and not is_onnx_path(tmp_path / "c")
    plain = decompress(tmp_path / "c", tmp_path / "plain")
    assert _same(
        {k: v for k, v in _weights(tmp_path / "p").items() if "encoder" in k},
        {k: v for k, v in _weights(plain).items() if "encoder" in k},
    )
    with pytest.raises(SparsityConfigError, match="format must be one of"):
        compress(tmp_path / "p", tmp_path / "c2", format="zip")


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _tiny_perplexity_sweep(tmp_path, model, **options) -> SweepOptions:
    """A perplexity sweep of the tiny LM on random words, small enough for a unit test."""
    text = tmp_path / "eval.txt"
    text.write_text("\n".join(random_text(400, seed=i) for i in range(3)))
    settings = {"text": str(text), "tokens": 128, "eval_seq_len": 32, **options}
    return SweepOptions(output=str(tmp_path / "run"), model=str(model), task="perplexity", **settings)


def test_sweep_runs_from_python_with_the_commands_option_names(tmp_path, tiny_lm_dir):
    result = sweep(_tiny_perplexity_sweep(tmp_path, tiny_lm_dir, levels=[0.3, 0.9], resolution=0.3))
    (name, run), *_ = result.results
    assert name == "tiny-gpt2-perplexity" and run.dense > 0 and result.summary == tmp_path / "run" / "summary.md"
    assert "| tiny-gpt2-perplexity |" in result.summary.read_text()
    saved = json.loads((tmp_path / "run" / SWEEP_ARGS_FILE).read_text())
    assert saved["eval_seq_len"] == 32 and "backend" not in saved  # how it ran is not what it measures


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"tokens": -1}, "--tokens must be > 0"),
        ({"shard": "3/2"}, "I must be in"),
        ({"method": "lth"}, "method must be one of"),
        ({"bf16": True, "fp16": True}, "not both"),
    ],
)
def test_sweep_options_are_validated_at_construction(kwargs, words):
    with pytest.raises(SparsityConfigError, match=words):
        SweepOptions(**kwargs)


@pytest.mark.parametrize("low_memory", [False, True], ids=["in-memory", "out-of-core"])
def test_the_weight_files_are_read_and_validated_once_per_job(tmp_path, monkeypatch, low_memory):
    from es_plugins.io.weight_files import WeightFiles

    src = sharded_checkpoint(tmp_path / "sharded")
    reads = []
    original = WeightFiles.read.__func__

    def counting(cls, folder, allow_external=False):
        reads.append(folder)
        return original(cls, folder, allow_external)

    monkeypatch.setattr(WeightFiles, "read", classmethod(counting))
    prune_checkpoint(src, tmp_path / "out", OMPConfig(0.5), low_memory=low_memory)
    assert len(reads) == 1


def test_run_names_come_from_the_model_argument_not_a_cache_hash(tmp_path):
    from es_plugins.jobs.sweep import model_label

    folder = tmp_path / "my-model"
    folder.mkdir()
    assert model_label("packaged:smollm2") == "smollm2"
    assert model_label("HuggingFaceTB/SmolLM2-135M@a1b2c3") == "SmolLM2-135M"
    assert model_label(str(folder)) == "my-model"


def test_sweep_text_takes_the_packaged_evaluation_text(tmp_path, tiny_lm_dir):
    options = SweepOptions(
        output=str(tmp_path / "run"),
        model=str(tiny_lm_dir),
        task="perplexity",
        text="packaged:bbc-eval",
        tokens=64,
        eval_seq_len=32,
        levels=[0.5],
        resolution=0.5,
    )
    (name, run), *_ = sweep(options).results
    assert name == "tiny-gpt2-perplexity" and run.dense > 0


def test_quick_shrinks_the_perplexity_grid_too(tmp_path, tiny_lm_dir):
    from es_plugins.jobs.sweep import FULL, QUICK

    (_, run), *_ = sweep(_tiny_perplexity_sweep(tmp_path, tiny_lm_dir, quick=True)).results
    grid = sorted(level.sparsity for level in run.levels if not level.refined)
    assert grid == [0.0, *QUICK["lm_levels"]] and len(QUICK["lm_levels"]) < len(FULL["lm_levels"])
