"""`es-plugins sweep | compare-masks | zeros` on tiny saved checkpoints, and their bad inputs."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from es_plugins import OMPConfig, SparsityPlan, SparsityState, sparsify_
from es_plugins.analysis.tasks import PerplexityTask
from es_plugins.cli import main
from tests.conftest import make_tiny_bert, random_text


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def text_dir(tmp_path):
    folder = tmp_path / "text"
    folder.mkdir()
    for i in range(4):
        (folder / f"doc{i}.txt").write_text(random_text(300, seed=i))
    return folder


def test_perplexity_sweep_writes_report_and_resumes(tmp_path, tiny_lm_dir, text_dir, capsys):
    out = tmp_path / "report"
    argv = [
        "sweep",
        "--model",
        tiny_lm_dir,
        "--task",
        "perplexity",
        "--text",
        text_dir,
        "--tokens",
        "256",
        "--eval-seq-len",
        "32",
        "--levels",
        "0.3",
        "0.6",
        "0.9",
        "--resolution",
        "0.2",
        "--output",
        out,
    ]
    code, stdout, stderr = run_cli(capsys, *argv)
    assert code == 0 and "essential sparsity" in stderr
    run = out / "tiny-gpt2-perplexity"
    for name in ("results.json", "results.csv", "summary.md", "metric_vs_sparsity.png", "evaluations.json"):
        assert (run / name).is_file(), name
    results = json.loads((run / "results.json").read_text())
    assert results["config"]["higher_is_better"] is False
    levels = [row["sparsity"] for row in results["levels"]]
    assert levels == sorted(levels) and levels[0] == 0.0
    with open(run / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(levels) and all(math.isfinite(float(r["perplexity (256 tokens)"])) for r in rows)
    assert (out / "summary.md").read_text().count("tiny-gpt2-perplexity") >= 1
    # the perplexity task hands the sweep its per-chunk evidence: bootstrap intervals over tokens
    uncertainty = results["uncertainty"]
    assert uncertainty["unit"] == "tokens" and uncertainty["evaluation_size"] == 8 * 31
    assert (
        uncertainty["essential_sparsity_interval"] is not None
        and "bootstrap intervals" in (run / "summary.md").read_text()
    )
    # second run resumes: nothing is evaluated again
    code, _, stderr = run_cli(capsys, *argv)
    assert code == 0 and "seed 0:" not in stderr
    # the same folder with other settings is refused
    with pytest.raises(SystemExit):
        run_cli(capsys, *argv[:-2], "--tolerance", "0.05", "--output", out)
    assert "different sweep" in capsys.readouterr().err


def test_perplexity_task_restores_weights_between_levels(tiny_lm_dir, text_dir):
    from es_plugins.io.datasets import read_texts

    task = PerplexityTask(tiny_lm_dir, read_texts(text_dir), num_tokens=128, seq_len=32)
    dense = task.evaluate(0.0, 0)
    pruned = task.evaluate(0.5, 0)
    assert pruned != dense and task.evaluate(0.0, 0) == dense  # pruning one level never leaks into the next
    assert sum(task.layer_sparsity(0.5).values()) > 0


def test_finetune_sweep_on_csv(tmp_path, tiny_classifier_dir, capsys):
    data = tmp_path / "data.csv"
    with open(data, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence", "sentiment"])
        for i in range(48):
            writer.writerow([random_text(8, seed=i), "pos" if i % 2 else "neg"])
    out = tmp_path / "ft"
    code, _, stderr = run_cli(
        capsys,
        "sweep",
        "--model",
        tiny_classifier_dir,
        "--task",
        "finetune",
        "--data",
        data,
        "--text-column",
        "sentence",
        "--label-column",
        "sentiment",
        "--train",
        "32",
        "--test",
        "16",
        "--levels",
        "0.5",
        "--resolution",
        "0.5",
        "--seeds",
        "0",
        "1",
        "--max-length",
        "12",
        "--output",
        out,
    )
    assert code == 0
    results = json.loads((out / "tiny-bert-cls-finetune" / "results.json").read_text())
    assert all(len(level["values"]) == 2 for level in results["levels"])  # both seeds evaluated
    assert results["uncertainty"]["resampled"] == "16 evaluation units of examples and 2 seeds"
    assert (out / "tiny-bert-cls-finetune" / "dense_finetuned_targets.safetensors").is_file()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--task", "perplexity"], "needs --text"),
        (["--task", "finetune"], "needs --data"),
        ([], "--model needs --task"),
        (
            ["--task", "finetune", "--data", "DATA", "--label-column", "stars"],
            "no column 'stars' .*--label-column.*columns are",
        ),
        (
            ["--task", "perplexity", "--text", "TEXT", "--eval-seq-len", "999"],
            r"seq_len=999 is larger than the model's maximum \(64\)",
        ),
        (["--task", "perplexity", "--text", "TEXT", "--tolerance", "1.5"], r"tolerance must be in \[0, 1\)"),
        (["--task", "perplexity", "--text", "TEXT", "--method", "nm"], "invalid choice"),
    ],
)
def test_sweep_bad_input(tmp_path, tiny_lm_dir, text_dir, capsys, extra, message):
    import re

    data = tmp_path / "d.csv"
    data.write_text("text,label\na film,1\nbad plot,0\n")
    extra = [str(data) if e == "DATA" else str(text_dir) if e == "TEXT" else e for e in extra]
    with pytest.raises(SystemExit):
        run_cli(capsys, "sweep", "--model", tiny_lm_dir, *extra, "--output", tmp_path / "o")
    assert re.search(message, capsys.readouterr().err)


def test_sweep_rejects_non_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_cli(capsys, "sweep", "--model", tmp_path, "--task", "perplexity", "--text", tmp_path)
    assert "not a Hugging Face checkpoint" in capsys.readouterr().err


def test_compare_masks_hand_computed(tmp_path, capsys):
    a = SparsityState({"w": torch.tensor([True, True, True, True, False, False, False, False])})
    b = SparsityState({"w": torch.tensor([True, True, False, False, True, False, False, False])})
    a.save(tmp_path / "a.safetensors")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    b.save(folder / "sparsity_masks.safetensors")
    code, stdout, _ = run_cli(
        capsys, "compare-masks", tmp_path / "a.safetensors", folder, "--json", "--output", tmp_path / "sim"
    )
    data = json.loads(stdout)["overall"]
    assert data["cosine"] == pytest.approx(2 / math.sqrt(12)) and data["iou"] == pytest.approx(0.4)
    assert data["hamming"] == pytest.approx(3 / 8) and data["chance"]["cosine"] == pytest.approx(math.sqrt(0.5 * 0.375))
    assert (tmp_path / "sim" / "mask_similarity.png").is_file()
    code, table, _ = run_cli(capsys, "compare-masks", tmp_path / "a.safetensors", folder)
    assert "overall" in table and "chance" in table


def test_compare_masks_mismatch(tmp_path, capsys):
    SparsityState({"w": torch.ones(4, dtype=torch.bool)}).save(tmp_path / "a.safetensors")
    SparsityState({"v": torch.ones(4, dtype=torch.bool)}).save(tmp_path / "b.safetensors")
    with pytest.raises(SystemExit):
        run_cli(capsys, "compare-masks", tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert "mask set B does not match mask set A" in capsys.readouterr().err


def test_zeros_across_checkpoints(tmp_path, tiny_bert_dir, capsys):
    model = make_tiny_bert()
    sparsify_(model, SparsityPlan(OMPConfig(0.5)))
    pruned = tmp_path / "pruned"
    model.save_pretrained(pruned)
    code, stdout, _ = run_cli(
        capsys,
        "zeros",
        "--model",
        tiny_bert_dir,
        pruned,
        "--threshold",
        "1e-6",
        "--mode",
        "absolute",
        "--json",
        "--output",
        tmp_path / "z",
    )
    data = json.loads(stdout)
    assert data[str(tiny_bert_dir)]["overall"] == pytest.approx(0.0, abs=1e-3)
    assert data[str(pruned)]["overall"] == pytest.approx(0.5, abs=1e-3)
    assert (tmp_path / "z" / "near_zero.png").is_file() and (tmp_path / "z" / "near_zero.csv").is_file()


def test_wanda_perplexity_sweep_uses_calibration(tmp_path, tiny_lm_dir, text_dir, capsys):
    out = tmp_path / "wanda"
    code, _, _ = run_cli(
        capsys,
        "sweep",
        "--model",
        tiny_lm_dir,
        "--task",
        "perplexity",
        "--text",
        text_dir,
        "--tokens",
        "128",
        "--eval-seq-len",
        "32",
        "--levels",
        "0.5",
        "--resolution",
        "0.5",
        "--method",
        "wanda",
        "--calib",
        text_dir,
        "--calib-samples",
        "4",
        "--output",
        out,
    )
    assert code == 0
    results = json.loads((out / "tiny-gpt2-perplexity" / "results.json").read_text())
    assert results["meta"]["method"] == "wanda" and results["meta"]["calib_samples"] == 4
    with pytest.raises(SystemExit):
        run_cli(
            capsys,
            "sweep",
            "--model",
            tiny_lm_dir,
            "--task",
            "perplexity",
            "--text",
            text_dir,
            "--method",
            "sparsegpt",
            "--output",
            tmp_path / "x",
        )
    assert "needs calibration text (--calib)" in capsys.readouterr().err


def test_finetune_sweep_on_packaged_rotten_tomatoes(tmp_path, tiny_classifier_dir, capsys):
    from es_plugins.io.datasets import load_labeled

    texts, labels, names = load_labeled("packaged:rotten-tomatoes")
    assert len(texts) == 12752 and names == ["rotten", "fresh"] and set(labels) == {0, 1}
    texts, labels, names = load_labeled("packaged:bbc-news")
    assert len(texts) == 2225 and len(names) == 5
    out = tmp_path / "ft"
    code, _, _ = run_cli(
        capsys,
        "sweep",
        "--model",
        tiny_classifier_dir,
        "--task",
        "finetune",
        "--data",
        "packaged:rotten-tomatoes",
        "--train",
        "32",
        "--test",
        "16",
        "--levels",
        "0.5",
        "--resolution",
        "0.5",
        "--max-length",
        "12",
        "--output",
        out,
    )
    assert code == 0
    results = json.loads((out / "tiny-bert-cls-finetune" / "results.json").read_text())
    assert results["meta"]["test"] == 16 and len(results["levels"]) >= 2


def test_zeros_can_leave_out_weights_a_mask_pruned(tmp_path, tiny_bert_dir, capsys):
    assert run_cli(capsys, "prune", "--model", tiny_bert_dir, tmp_path / "pruned", "--sparsity", "0.5")[0] == 0
    capsys.readouterr()
    args = ("zeros", "--model", tmp_path / "pruned", "--threshold", "1e-6", "--mode", "absolute", "--json")
    with_pruned = json.loads(run_cli(capsys, *args)[1])[str(tmp_path / "pruned")]["overall"]
    without = json.loads(run_cli(capsys, *args, "--exclude-masked")[1])[str(tmp_path / "pruned")]["overall"]
    assert with_pruned == pytest.approx(0.5, abs=1e-3) and without == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(SystemExit):
        run_cli(capsys, "zeros", "--model", tiny_bert_dir, "--exclude-masked")
    assert "has no sparsity_masks.safetensors" in capsys.readouterr().err


def test_sweep_takes_the_target_flags(tmp_path, tiny_lm_dir, text_dir, capsys):
    out = tmp_path / "report"
    argv = ["sweep", "--model", tiny_lm_dir, "--task", "perplexity", "--text", text_dir, "--tokens", "256"]
    argv += ["--eval-seq-len", "32", "--levels", "0.3", "--tolerance", "0.9", "--resolution", "0.5"]
    code, _, _ = run_cli(capsys, *argv, "--include", "c_fc", "--output", out)
    assert code == 0
    results = json.loads((out / "tiny-gpt2-perplexity" / "results.json").read_text())
    layers = results["layer_sparsity_at_essential"]
    assert layers and all(name.endswith("mlp.c_fc.weight") for name in layers)
    assert results["meta"]["targets"]["include"] == ["c_fc"]
