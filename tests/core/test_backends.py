"""Sweep backends: the same science on a local Ray cluster (``ray.init(num_cpus=2)``), retries
of killed workers, failed points reported, drivers killed and resumed with either backend, and
shards of a job array merged. Real processes, real ``SIGKILL``s, no mocks of Ray.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from es_plugins.analysis.backends import LocalBackend, RayBackend, TaskSpec
from es_plugins.analysis.sweep import SweepConfig, run_sweep
from es_plugins.analysis.tasks import PerplexityTask
from es_plugins.cli import main as cli
from tests.conftest import random_text, save_checkpoint
from tests.core.sweep_tasks import CurveTask, DyingTask

ray = pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    """One local two-CPU cluster for the module (about 5 s to start)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_k_section_refines_with_every_free_worker_in_fewer_rounds(cluster):
    config = SweepConfig(levels=(0.0, 0.2, 0.4, 0.6, 0.8), resolution=0.02, seeds=(0,))
    local = run_sweep(TaskSpec(CurveTask, {"turn": 0.43}), config)
    backend = RayBackend(TaskSpec(CurveTask, {"turn": 0.43}))
    assert backend.slots == 2
    spread = run_sweep(TaskSpec(CurveTask, {"turn": 0.43}), config, backend=backend)
    common = {lv.sparsity for lv in local.levels} & {lv.sparsity for lv in spread.levels}
    assert {0.0, 0.2, 0.4, 0.6, 0.8} <= common
    assert all(_mean(local, s) == _mean(spread, s) for s in common)  # same task, same value
    assert abs(local.essential_sparsity - spread.essential_sparsity) <= config.resolution
    assert spread.rounds < local.rounds  # trisection: the bracket shrinks 3x per round, not 2x
    # every point ran in a Ray worker process, not in this driver, and says where and how long
    assert all(p.worker.rsplit(":", 1)[1] != str(os.getpid()) for p in spread.points)
    assert all(p.seconds > 0 and p.error is None for p in spread.points)


def _mean(result, sparsity: float) -> float:
    return next(lv.mean for lv in result.levels if lv.sparsity == sparsity)


def test_a_point_whose_worker_is_killed_is_retried(cluster, tmp_path):
    spec = TaskSpec(DyingTask, {"folder": str(tmp_path), "sparsity": 0.4, "deaths": 1})
    config = SweepConfig(levels=(0.0, 0.4), resolution=0.5)
    result = run_sweep(spec, config, tmp_path / "evaluations.json", backend=RayBackend(spec, max_retries=2))
    assert len(list(tmp_path.glob("death-*"))) == 1  # one worker really died...
    assert result.failed == [] and _mean(result, 0.4) == pytest.approx(0.9)  # ...and the retry finished it


def test_a_point_that_keeps_killing_its_worker_is_reported_failed_and_retried_on_resume(cluster, tmp_path):
    spec = TaskSpec(DyingTask, {"folder": str(tmp_path), "sparsity": 0.4, "deaths": 2})
    config = SweepConfig(levels=(0.0, 0.4), resolution=0.5)
    store = tmp_path / "evaluations.json"
    result = run_sweep(spec, config, store, backend=RayBackend(spec, max_retries=1))
    (failed,) = result.failed
    assert failed.sparsity == 0.4 and "died" in failed.error.lower() and math.isnan(failed.value)
    assert len(list(tmp_path.glob("death-*"))) == 2  # the first try and its one retry
    recorded = json.loads(store.read_text())["evaluations"]
    assert [r.get("error") is not None for r in recorded] == [False, True]
    again = run_sweep(spec, config, store)  # resumed (locally): the failed point runs again, the rest is kept
    assert again.evaluations == 1 and again.failed == [] and _mean(again, 0.4) == pytest.approx(0.9)


@pytest.mark.slow
def test_ray_gives_the_local_values_on_the_packaged_model(cluster):
    """Same settings, same seeds: the same perplexity for every point both evaluate, and the same
    essential sparsity within the resolution (packaged SmolLM2, small settings)."""
    from es_plugins.io.assets import resolve_model_path
    from es_plugins.io.datasets import bbc_news

    kwargs = dict(
        model_dir=resolve_model_path("packaged:smollm2"),
        texts=bbc_news("eval")[:40],
        num_tokens=256,
        seq_len=64,
        device="cpu",
    )
    config = SweepConfig(levels=(0.0, 0.2, 0.4), tolerance=0.05, higher_is_better=False, resolution=0.1)
    local = run_sweep(TaskSpec(PerplexityTask, kwargs), config)
    spread = run_sweep(TaskSpec(PerplexityTask, kwargs), config, backend=RayBackend(TaskSpec(PerplexityTask, kwargs)))
    for level in local.levels:
        if any(lv.sparsity == level.sparsity for lv in spread.levels):
            # other thread counts in the workers: the same numbers up to float rounding
            assert _mean(spread, level.sparsity) == pytest.approx(level.mean, rel=1e-4)
    assert abs(local.essential_sparsity - spread.essential_sparsity) <= config.resolution + 1e-9


# ----------------------------------------------------------------- the CLI: kills, resume, shards
def _sweep_argv(model: Path, text: Path, out: Path, *extra: str) -> list[str]:
    return [
        *("sweep", "--model", str(model), "--task", "perplexity", "--text", str(text)),
        *("--tokens", "2048", "--eval-seq-len", "64", "--levels", "0.2", "0.4", "0.6", "0.8"),
        *("--tolerance", "0.05", "--resolution", "0.05", "--device", "cpu", "--output", str(out), *extra),
    ]


@pytest.fixture
def tiny_lm(tmp_path) -> tuple[Path, Path]:
    """A random GPT-2 big enough that a point takes a fraction of a second (a kill lands mid-sweep)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=99, n_embd=256, n_layer=4, n_head=4, n_positions=64)
    model = save_checkpoint(GPT2LMHeadModel(config).eval(), tmp_path / "lm")
    text = tmp_path / "eval.txt"
    text.write_text(random_text(5000, seed=1))
    return model, text


def _points(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*/evaluations.points/point-*.json"))]


def _kill_when_points(argv: list[str], folder: Path, count: int) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen(
        [sys.executable, "-m", "es_plugins", *argv],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own group: the kill takes the Ray cluster it started too
    )
    deadline = time.time() + 300
    while len(_points(folder)) < count and driver.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert driver.returncode == -signal.SIGKILL, "the driver finished before it could be killed"


@pytest.mark.parametrize("first, then", [("ray", "local"), ("local", "ray")])
def test_a_killed_driver_resumes_from_the_folder_with_either_backend(tiny_lm, tmp_path, capsys, first, then):
    model, text = tiny_lm
    out = tmp_path / "sweep"
    _kill_when_points(_sweep_argv(model, text, out, "--backend", first), out, 2)
    before = {(p["sparsity"], p["seed"]) for p in _points(out)}
    assert len(before) >= 2 and not list(out.glob("*/results.json"))  # killed before it could report
    extra = ["--backend", then] + (["--max-retries", "1"] if then == "ray" else [])
    if then == "ray":
        ray.shutdown()  # the resumed driver starts its own cluster, as a new job would
    assert cli(_sweep_argv(model, text, out, *extra)) == 0
    results = json.loads(next(out.glob("*/results.json")).read_text())
    assert {(p["sparsity"], p["seed"]) for p in results["points"]} >= before
    assert results["evaluations"] == len(results["points"]) - len(before)  # nothing evaluated twice
    assert all("worker" in p and "seconds" in p for p in results["points"])


def test_two_concurrent_shards_then_merge(tiny_lm, tmp_path):
    model, text = tiny_lm
    out = tmp_path / "sweep"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    shards = [
        subprocess.Popen(
            [sys.executable, "-m", "es_plugins", *_sweep_argv(model, text, out, "--shard", f"{i}/2")],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for shard in shards:
        _, err = shard.communicate(timeout=600)
        assert shard.returncode == 0, err
    points = _points(out)
    assert sorted(p["sparsity"] for p in points) == [0.0, 0.2, 0.4, 0.6, 0.8]  # each grid point once
    assert len({p["worker"] for p in points}) == 2  # split over the two processes
    assert not list(out.glob("*/summary.md"))  # shards do not report
    assert cli(["sweep", "--merge", str(out)]) == 0
    results = json.loads(next(out.glob("*/results.json")).read_text())
    assert results["essential_sparsity"] is not None and results["evaluations"] == len(results["points"]) - 5


def test_backend_ray_without_ray_is_one_line_naming_the_extra(tiny_lm, tmp_path, monkeypatch, capsys):
    model, text = tiny_lm
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(SystemExit) as exit_info:
        cli(_sweep_argv(model, text, tmp_path / "out", "--backend", "ray"))
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err == (
        "es-plugins sweep: error: --backend ray needs Ray: pip install 'es-plugins[ray]'"
    )
    assert not (tmp_path / "out").exists()


def test_shard_and_backend_values_are_checked(tiny_lm, tmp_path, capsys):
    model, text = tiny_lm
    for bad, words in (("2/2", "I must be in [0, N)"), ("x", "--shard must be I/N")):
        with pytest.raises(SystemExit):
            cli(_sweep_argv(model, text, tmp_path / "out", "--shard", bad))
        assert words in capsys.readouterr().err
    with pytest.raises(ValueError, match="cpus_per_point must be > 0"):
        RayBackend(TaskSpec(CurveTask), cpus_per_point=0)
    assert LocalBackend(CurveTask().evaluate).slots == 1
