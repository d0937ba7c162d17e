"""`es-plugins prune|inspect` on saved tiny checkpoints, including every bad input."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from es_plugins.cli import main
from es_plugins.io.artifacts import REPORT_FILENAME
from es_plugins.masks.state import MASKS_FILENAME, SparsityState


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_prune_writes_plain_checkpoint_masks_and_report(tmp_path, tiny_bert_dir, capsys):
    from transformers import BertForSequenceClassification

    out = tmp_path / "out"
    code, stdout, _ = run_cli(capsys, "prune", "--model", tiny_bert_dir, out, "--sparsity", "0.4", "--json")
    assert code == 0
    report = json.loads(stdout)
    assert report["targets"]["sparsity"] == pytest.approx(0.4, abs=1e-4)
    assert json.loads((out / REPORT_FILENAME).read_text())["targets"] == report["targets"]
    reloaded = BertForSequenceClassification.from_pretrained(out)
    original = BertForSequenceClassification.from_pretrained(tiny_bert_dir)
    assert list(reloaded.state_dict()) == list(original.state_dict())
    state = SparsityState.load(out / MASKS_FILENAME, reloaded)
    params = dict(reloaded.named_parameters())
    for name, mask in state.masks.items():
        assert torch.equal(params[name] == 0, ~mask)
    assert report["targets"]["zeros"] == state.num_pruned


def test_prune_nm_then_inspect_reports_compliance(tmp_path, tiny_bert_dir, capsys):
    out = tmp_path / "nm"
    assert run_cli(capsys, "prune", "--model", tiny_bert_dir, out, "--method", "nm", "--pattern", "4:8")[0] == 0
    code, stdout, _ = run_cli(capsys, "inspect", "--model", out, "--pattern", "4:8", "--json")
    report = json.loads(stdout)
    assert code == 0 and report["nm_compliant_layers"] == report["targets"]["layers"] == 12
    assert report["targets"]["sparsity"] == pytest.approx(0.5)
    assert report["meta"]["masks_file"]["weights_nonzero_where_masked"] == 0
    code, table, _ = run_cli(capsys, "inspect", "--model", tiny_bert_dir)
    assert "2:4 compliant layers: 0/12" in table and "targeted: 12 layers" in table


def test_prune_random_layer_scope_and_include(tmp_path, tiny_bert_dir, capsys):
    out = tmp_path / "r"
    code, stdout, _ = run_cli(
        capsys,
        "prune",
        "--model",
        tiny_bert_dir,
        out,
        "--method",
        "random",
        "--sparsity",
        "0.2",
        "--scope",
        "layer",
        "--seed",
        "3",
        "--include",
        "query",
        "key",
        "--json",
    )
    report = json.loads(stdout)
    assert code == 0 and report["targets"]["layers"] == 4
    assert all(layer["sparsity"] == pytest.approx(0.2, abs=1 / 1024) for layer in report["layers"])


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--sparsity", "1.0"], r"sparsity must be in \[0, 1\)"),
        (["--sparsity", "-0.2"], r"sparsity must be in \[0, 1\)"),
        (["--method", "nm", "--pattern", "4:4"], "0 < N < M"),
        (["--method", "nm", "--pattern", "0:4"], "0 < N < M"),
        (["--method", "nm", "--pattern", "two:four"], "N:M"),
        (["--method", "nm", "--sparsity", "0.5"], "--sparsity does not apply"),
        (["--pattern", "2:4"], "--pattern does not apply to --method omp"),
        (["--include", "nothing_here"], "no prunable layers matched .* Candidate modules"),
        (["--include-regex", "("], "not a valid regex"),
    ],
)
def test_bad_input_clear_error_and_nothing_written(tmp_path, tiny_bert_dir, capsys, extra, message):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, "prune", "--model", tiny_bert_dir, out, *extra)
    assert exit_info.value.code == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-bert"]  # no temp folder left either


def test_unknown_method_rejected_by_parser(tmp_path, tiny_bert_dir, capsys):
    with pytest.raises(SystemExit):
        run_cli(capsys, "prune", "--model", tiny_bert_dir, tmp_path / "o", "--method", "lth")
    assert "invalid choice: 'lth' (choose from 'omp', 'nm', 'random', 'wanda', 'sparsegpt')" in capsys.readouterr().err


@pytest.mark.parametrize("make", ["missing", "file", "empty", "config_only"])
def test_not_a_checkpoint(tmp_path, capsys, make):
    path = tmp_path / "model"
    if make == "file":
        path.write_text("x")
    elif make in ("empty", "config_only"):
        path.mkdir()
        if make == "config_only":
            (path / "config.json").write_text("{}")
    with pytest.raises(SystemExit):
        run_cli(capsys, "prune", "--model", path, tmp_path / "out")
    err = capsys.readouterr().err
    assert {
        "missing": "does not exist",
        "file": "is a file",
        "empty": "no config.json",
        "config_only": "no model.safetensors",
    }[make] in err
    assert not (tmp_path / "out").exists()


def test_non_finite_weights_nothing_written(tmp_path, tiny_bert, capsys):
    with torch.no_grad():
        tiny_bert.bert.encoder.layer[1].output.dense.weight[0, 0] = float("nan")
    src = tmp_path / "nan-bert"
    tiny_bert.save_pretrained(src)
    with pytest.raises(SystemExit):
        run_cli(capsys, "prune", "--model", src, tmp_path / "out")
    assert "bert.encoder.layer.1.output.dense.weight" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite(tmp_path, tiny_bert_dir, capsys):
    out = tmp_path / "out"
    assert run_cli(capsys, "prune", "--model", tiny_bert_dir, out, "--sparsity", "0.3")[0] == 0
    with pytest.raises(SystemExit):
        run_cli(capsys, "prune", "--model", tiny_bert_dir, out)
    assert "--overwrite" in capsys.readouterr().err
    assert SparsityState.load(out / MASKS_FILENAME).sparsity == pytest.approx(0.3, abs=1e-3)
    assert run_cli(capsys, "prune", "--model", tiny_bert_dir, out, "--overwrite")[0] == 0
    assert SparsityState.load(out / MASKS_FILENAME).sparsity == pytest.approx(0.5, abs=1e-3)


def test_overwrite_never_replaces_a_folder_es_plugins_did_not_write(tmp_path, tiny_bert_dir, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(SystemExit):
        run_cli(capsys, "prune", "--model", tiny_bert_dir, out, "--overwrite")
    assert "did not write" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "user data" and not (out / MASKS_FILENAME).exists()


def test_inspect_rejects_mismatched_masks_file(tmp_path, tiny_bert_dir, tiny_gpt2, capsys):
    out = tmp_path / "out"
    run_cli(capsys, "prune", "--model", tiny_bert_dir, out)
    from es_plugins import OMPConfig, SparsityPlan, sparsify_

    sparsify_(tiny_gpt2, SparsityPlan(OMPConfig(0.5))).save(out / MASKS_FILENAME)
    with pytest.raises(SystemExit):
        run_cli(capsys, "inspect", "--model", out)
    assert "masks do not match the model" in capsys.readouterr().err


def test_console_script_installed():
    import shutil
    import subprocess
    import sys

    exe = shutil.which("es-plugins") or str(__import__("pathlib").Path(sys.executable).parent / "es-plugins")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    assert "prune" in result.stdout and "inspect" in result.stdout


@pytest.mark.parametrize(
    "argv, dest, value, old, new",
    [
        (["prune", "--model", "m", "o", "--seq-len", "64"], "calib_seq_len", 64, "--seq-len", "--calib-seq-len"),
        (["sweep", "--seq-len", "64"], "eval_seq_len", 64, "--seq-len", "--eval-seq-len"),
        (["export", "--model", "m", "o", "--dtype", "fp16"], "dtype", "float16", "--dtype fp16", "--dtype float16"),
    ],
)
def test_old_spellings_keep_working_with_a_warning_naming_the_new_one(argv, dest, value, old, new):
    import warnings

    from es_plugins.cli import build_parser

    parser = build_parser()
    with pytest.warns(FutureWarning, match=f"{old} is deprecated and goes away in es-plugins 0.3: use {new}"):
        assert getattr(parser.parse_args(argv), dest) == value
    modern = [new.split()[-1] if a == old.split()[-1] else a for a in argv]
    modern = [new.split()[0] if a == old.split()[0] else a for a in modern]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling warns about nothing
        assert getattr(parser.parse_args(modern), dest) == value


def test_version_flag(capsys):
    from es_plugins import __version__
    from es_plugins.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"es-plugins {__version__}"


# --------------------------------------------------------------------- one convention, generated flags
def _parser_of(add) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add(parser)
    return parser


def test_every_command_that_writes_takes_model_and_a_positional_output():
    from es_plugins.cli import export, inspect, prune

    for add in (prune.add_arguments, export.add_compress_arguments, export.add_decompress_arguments):
        args = _parser_of(add).parse_args(["--model", "in", "out"])
        assert (args.model, args.output) == ("in", "out")
    args = _parser_of(export.add_export_arguments).parse_args(["-m", "in", "out"])
    assert (args.model, args.output) == ("in", "out")
    assert _parser_of(inspect.add_arguments).parse_args(["--model", "in"]).model == "in"


@pytest.mark.parametrize(
    "old, new, command",
    [
        (["prune", "m", "o"], ["prune", "--model", "m", "o"], "prune"),
        (["compress", "m", "o"], ["compress", "--model", "m", "o"], "compress"),
        (["decompress", "m", "o"], ["decompress", "--model", "m", "o"], "decompress"),
        (["inspect", "m"], ["inspect", "--model", "m"], "inspect"),
    ],
)
def test_the_former_positional_model_warns_and_means_the_same(old, new, command):
    import warnings

    from es_plugins.cli import build_parser
    from es_plugins.cli.options import resolve_model_and_output

    parser = build_parser()
    args = parser.parse_args(old)
    with pytest.warns(FutureWarning, match=f"{command} MODEL.* is deprecated .* use {command} --model MODEL"):
        resolve_model_and_output(args, command)
    modern = parser.parse_args(new)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_model_and_output(modern, command)
    assert (args.model, getattr(args, "output", None)) == (modern.model, getattr(modern, "output", None))


def test_the_former_positional_model_still_prunes(tmp_path, tiny_bert_dir):
    with pytest.warns(FutureWarning, match="use prune --model MODEL OUTPUT"):
        assert main(["prune", str(tiny_bert_dir), str(tmp_path / "old"), "--sparsity", "0.3"]) == 0
    assert (tmp_path / "old" / REPORT_FILENAME).is_file()


def test_zeros_takes_model_and_its_former_positionals_warn(tmp_path, tiny_bert_dir, capsys):
    assert main(["zeros", "--model", str(tiny_bert_dir), "--json"]) == 0
    modern = capsys.readouterr().out
    with pytest.warns(FutureWarning, match="use zeros --model CHECKPOINT"):
        assert main(["zeros", str(tiny_bert_dir), "--json"]) == 0
    assert capsys.readouterr().out == modern


def test_method_flags_are_generated_from_the_config_fields():
    import dataclasses

    from es_plugins.cli.options import method_config
    from es_plugins.methods import SparseGPTConfig
    from es_plugins.methods.registry import method_options

    parser = _parser_of(__import__("es_plugins.cli.prune", fromlist=["add_arguments"]).add_arguments)
    flags = {a.dest: a for a in parser._actions}
    for name, spec in method_options().items():
        if spec.help:
            assert name in flags and spec.help.split(",")[0] in flags[name].help, name
    assert flags["passes"].choices == (1, 2) and flags["scope"].choices == ("global", "layer")
    damp = next(f for f in dataclasses.fields(SparseGPTConfig) if f.name == "damp")
    assert damp.metadata["help"] in flags["damp"].help
    args = parser.parse_args(["--model", "m", "o", "--method", "sparsegpt", "--calib", "c", "--damp", "0.05"])
    assert method_config(args) == SparseGPTConfig(0.5, damp=0.05)


def test_inspect_gemm_copy_is_the_former_rewrite_gemm_path():
    from es_plugins.cli import build_parser

    with pytest.warns(FutureWarning, match="--rewrite-gemm is deprecated .* use --gemm-copy"):
        args = build_parser().parse_args(["inspect", "--model", "m.onnx", "--rewrite-gemm", "g.onnx"])
    assert args.gemm_copy == "g.onnx"
    export_args = build_parser().parse_args(["export", "--model", "m", "o", "--rewrite-gemm"])
    assert export_args.rewrite_gemm is True  # one meaning: a switch of the export


def test_every_sweep_option_has_its_flag_by_the_same_name():
    import dataclasses

    from es_plugins.cli import build_parser
    from es_plugins.cli.sweep import options_from
    from es_plugins.jobs.sweep import SweepOptions

    args = build_parser().parse_args(["sweep", "--model", "m", "--task", "perplexity", "--eval-seq-len", "64"])
    options = options_from(args)
    assert options.eval_seq_len == 64 and options.model == "m"
    defaults = SweepOptions()
    for field in dataclasses.fields(SweepOptions):
        if field.name not in ("model", "task", "eval_seq_len"):
            assert getattr(options, field.name) == getattr(defaults, field.name), field.name


def test_the_statistics_commands_render_the_jobs_results(tmp_path, tiny_bert_dir, capsys):
    from es_plugins.cli.statistics import run_compare

    assert main(["prune", "--model", str(tiny_bert_dir), str(tmp_path / "a"), "--sparsity", "0.5"]) == 0
    capsys.readouterr()
    args = type("Args", (), {"a": str(tmp_path / "a"), "b": str(tmp_path / "a"), "output": None, "overwrite": False})
    args.json = True
    assert run_compare(args) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["cosine"] == pytest.approx(1.0)
