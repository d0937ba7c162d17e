"""Bad input never loses data: every row is one bad command line.

Each row asserts the exit code, the words of the one-line error, that no traceback is
printed, and that the files under the test folder are exactly as before (nothing written,
nothing deleted).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from es_plugins.cli import main
from es_plugins.io.output import MARKER_FILENAME
from tests.conftest import make_tiny_bert, save_checkpoint


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime: a write or delete changes it."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            stat = path.lstat()
            out[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return out


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A user's disk: a model folder with siblings, a home folder, a working directory."""
    home = tmp_path / "home"
    (home / "projects").mkdir(parents=True)
    (home / "notes.txt").write_text("precious")
    monkeypatch.setenv("HOME", str(home))
    parent = tmp_path / "models"
    model = save_checkpoint(make_tiny_bert(), parent / "bert")
    (parent / "sibling.txt").write_text("another model's notes")
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.csv").write_text("text,label\n")
    monkeypatch.chdir(work)
    user = tmp_path / "user-folder"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "empty.onnx").write_bytes(b"")
    # an earlier es-plugins output, and a masks file
    assert main(["prune", "--model", str(model), str(tmp_path / "pruned"), "--sparsity", "0.3"]) == 0
    return {
        "tmp": tmp_path,
        "model": model,
        "parent": parent,
        "home": home,
        "user": user,
        "work": work,
        "pruned": tmp_path / "pruned",
        "masks": tmp_path / "pruned" / "sparsity_masks.safetensors",
    }


def _damaged(world: dict, kind: str) -> Path:
    """A copy of the tiny checkpoint broken in one way."""
    import shutil

    src = world["model"]
    dst = world["tmp"] / f"bad-{kind}"
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    if kind == "truncated":
        data = (dst / "model.safetensors").read_bytes()
        (dst / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif kind == "architectures-string":
        config["architectures"] = "BertForSequenceClassification"
    elif kind == "architectures-unknown":
        config["architectures"] = ["NotAModelAnywhere"]
    elif kind == "config-not-json":
        (dst / "config.json").write_text("{ this is not json")
        return dst
    elif kind == "no-tokenizer":
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (dst / name).unlink(missing_ok=True)
    elif kind == "pickle":
        from safetensors.torch import load_file

        tensors = load_file(str(dst / "model.safetensors"))
        (dst / "model.safetensors").unlink()
        tensors["extra"] = Path("/etc")  # an object weights_only unpickling must refuse
        torch.save(tensors, dst / "pytorch_model.bin")
    elif kind == "compressed-unknown":
        config["quantization_config"] = {
            "quant_method": "compressed-tensors",
            "sparsity_config": {"format": "sparse-hologram"},
        }
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def _masks(world: dict, kind: str) -> Path:
    """A masks file damaged in one way (each would otherwise raise a raw exception)."""
    from safetensors.torch import save_file

    path = world["tmp"] / f"masks-{kind}.safetensors"
    tensors = {"a.weight": torch.zeros(2, dtype=torch.uint8)}
    metadata = {"format": "es-plugins-masks", "version": "1", "shapes": json.dumps({"a.weight": [4, 4]}), "meta": "{}"}
    if kind == "float-payload":
        tensors = {"a.weight": torch.zeros(2)}
    elif kind == "missing-shapes":
        del metadata["shapes"]
    elif kind == "string-shapes":
        metadata["shapes"] = json.dumps({"a.weight": "4x4"})
    elif kind == "bad-json":
        metadata["meta"] = "{oops"
    save_file(tensors, str(path), metadata=metadata)
    return path


# (argv with placeholders, exit code, words the error must contain)
CASES = {
    "empty OUT_DIR": (["prune", "--model", "{model}", "", "--overwrite"], 2, ["OUT_DIR ''", "empty"]),
    "OUT_DIR is .": (["prune", "--model", "{model}", ".", "--overwrite"], 2, ["OUT_DIR '.'", "current directory"]),
    "OUT_DIR is the cwd by another name": (
        ["prune", "--model", "{model}", "../work", "--overwrite"],
        2,
        ["current directory"],
    ),
    "OUT_DIR is the input": (["prune", "--model", "{model}", "{model}", "--overwrite"], 2, ["is the input"]),
    "OUT_DIR is the input's parent": (
        ["prune", "--model", "{model}", "{parent}", "--overwrite"],
        2,
        ["contains the input"],
    ),
    "OUT_DIR inside the input": (["prune", "--model", "{model}", "{model}/pruned"], 2, ["inside the input"]),
    "OUT_DIR is the root": (["prune", "--model", "{model}", "/", "--overwrite"], 2, ["filesystem root"]),
    "OUT_DIR is home": (["prune", "--model", "{model}", "{home}", "--overwrite"], 2, ["home folder"]),
    "OUT_DIR is a user folder": (
        ["prune", "--model", "{model}", "{user}", "--overwrite"],
        2,
        ["did not write", MARKER_FILENAME],
    ),
    "OUT_DIR exists without --overwrite": (["prune", "--model", "{model}", "{pruned}"], 2, ["--overwrite"]),
    "OUT_DIR is a file": (["prune", "--model", "{model}", "{tmp}/a-file", "--overwrite"], 2, ["not a folder"]),
    "OUT_DIR's parent is a file": (["prune", "--model", "{model}", "{tmp}/a-file/out"], 2, ["is a file"]),
    "compress onto its input": (
        ["compress", "--model", "{pruned}", "{pruned}", "--overwrite"],
        2,
        ["OUT", "is the input"],
    ),
    "compress into a user folder": (["compress", "--model", "{pruned}", "{user}", "--overwrite"], 2, ["did not write"]),
    "decompress onto home": (["decompress", "--model", "{pruned}", "{home}", "--overwrite"], 2, ["home folder"]),
    "sweep into the cwd": (["sweep", "--output", "."], 2, ["--output '.'", "current directory"]),
    "sweep into a user folder": (["sweep", "--output", "{user}"], 2, ["--output", "did not write"]),
    "compare-masks into a user folder": (
        ["compare-masks", "{masks}", "{masks}", "--output", "{user}", "--overwrite"],
        2,
        ["did not write"],
    ),
    "zeros into the model": (["zeros", "--model", "{model}", "--output", "{model}"], 2, ["is the input"]),
    "sparsity rounds to every weight": (
        ["prune", "--model", "{model}", "{tmp}/o", "--sparsity", "0.999999"],
        2,
        ["prunes all", "of the targeted weights"],
    ),
    "sparsity rounds to every weight per layer": (
        ["prune", "--model", "{model}", "{tmp}/o", "--sparsity", "0.9999", "--scope", "layer"],
        2,
        ["prunes all", "layer"],
    ),
    "truncated safetensors": (
        ["prune", "--model", "{bad-truncated}", "{tmp}/o"],
        2,
        ["bad-truncated", "the file is truncated"],
    ),
    "an empty .onnx file": (
        ["inspect", "--model", "{tmp}/empty.onnx"],
        2,
        ["empty.onnx is not an ONNX model", "0 bytes"],
    ),
    "--skip-incompatible leaves nothing": (
        ["prune", "--model", "{model}", "{tmp}/o", "--method", "nm", "--pattern", "3:7", "--skip-incompatible"],
        2,
        ["3:7", "would leave every layer dense"],
    ),
    "config.json not JSON": (
        ["prune", "--model", "{bad-config-not-json}", "{tmp}/o"],
        2,
        ["config.json", "not valid JSON"],
    ),
    "architectures is a string": (
        ["prune", "--model", "{bad-architectures-string}", "{tmp}/o"],
        2,
        ["'architectures' must be a list"],
    ),
    "architectures unknown": (
        ["prune", "--model", "{bad-architectures-unknown}", "{tmp}/o"],
        2,
        ["NotAModelAnywhere", "not a model class"],
    ),
    "blocked pickle": (["prune", "--model", "{bad-pickle}", "{tmp}/o"], 2, ["pytorch_model.bin", "unpickled safely"]),
    "decompress unknown format": (
        ["decompress", "--model", "{bad-compressed-unknown}", "{tmp}/o"],
        2,
        ["sparse-hologram", "supported: sparse-bitmask"],
    ),
    "wanda without a tokenizer": (
        [
            "prune",
            "--model",
            "{bad-no-tokenizer}",
            "{tmp}/o",
            "--method",
            "wanda",
            "--calib",
            "{tmp}/calib.txt",
            "--calib-seq-len",
            "16",
        ],
        2,
        ["--calib", "needs the model's tokenizer", "no tokenizer files", "tokenizer.json"],
    ),
    "--calib missing": (
        [
            "prune",
            "--model",
            "{model}",
            "{tmp}/o",
            "--method",
            "wanda",
            "--calib",
            "{tmp}/nope.txt",
            "--calib-seq-len",
            "16",
        ],
        2,
        ["--calib", "nope.txt"],
    ),
    "--calib unknown packaged": (
        [
            "prune",
            "--model",
            "{model}",
            "{tmp}/o",
            "--method",
            "wanda",
            "--calib",
            "packaged:bbc-typo",
            "--calib-seq-len",
            "16",
        ],
        2,
        ["--calib", "available"],
    ),
    "masks float payload": (["compare-masks", "{masks-float-payload}", "{masks}"], 2, ["masks-float-payload", "uint8"]),
    "masks without shapes": (["compare-masks", "{masks-missing-shapes}", "{masks}"], 2, ["no 'shapes'"]),
    "masks with string shapes": (["compare-masks", "{masks-string-shapes}", "{masks}"], 2, ["shape must be a list"]),
    "masks metadata not JSON": (
        ["compare-masks", "{masks-bad-json}", "{masks}"],
        2,
        ["masks-bad-json", "'meta' is not valid JSON"],
    ),
    "sweep --data missing": (
        ["sweep", "--model", "{model}", "--task", "finetune", "--data", "/missing.csv", "--output", "{tmp}/sw"],
        2,
        ["--data", "/missing.csv", "does not exist"],
    ),
    "sweep --epochs -1": (
        [
            "sweep",
            "--model",
            "{model}",
            "--task",
            "finetune",
            "--data",
            "x.csv",
            "--epochs",
            "-1",
            "--output",
            "{tmp}/sw",
        ],
        2,
        ["--epochs must be > 0"],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_command_line_is_one_clear_line_and_touches_nothing(world, capsys, name):
    argv, code, words = CASES[name]
    (world["tmp"] / "calib.txt").write_text("the film was good " * 50)
    values = {k: str(v) for k, v in world.items()}
    for arg in argv:
        if arg.startswith("{bad-"):
            values[arg[1:-1]] = str(_damaged(world, arg[5:-1]))
        elif arg.startswith("{masks-"):
            values[arg[1:-1]] = str(_masks(world, arg[7:-1]))
    before = snapshot(world["tmp"])
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(**values) if "{" in a else a for a in argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == code, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert snapshot(world["tmp"]) == before, "a refused command wrote or deleted files"


def test_destination_is_checked_before_the_model_is_loaded(world, capsys, monkeypatch):
    import es_plugins.jobs.prune as cli

    def boom(*args, **kwargs):
        raise AssertionError("the model was loaded before the destination was checked")

    monkeypatch.setattr(cli, "load_hf_model", boom)
    with pytest.raises(SystemExit):
        main(
            [
                "prune",
                "--model",
                str(world["model"]),
                str(world["pruned"]),
                "--method",
                "sparsegpt",
                "--calib",
                str(world["tmp"] / "calib.txt"),
            ]
        )
    assert "--overwrite" in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_with_a_traceback_switch(world, capsys, monkeypatch):
    import es_plugins.jobs.prune as cli

    def broken(*args, **kwargs):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(cli, "load_hf_model", broken)
    monkeypatch.delenv("ES_PLUGINS_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["prune", "--model", str(world["model"]), str(world["tmp"] / "o")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "internal error: ZeroDivisionError: simulated bug" in err
    assert "ES_PLUGINS_TRACEBACK=1" in err and "Traceback" not in err
    monkeypatch.setenv("ES_PLUGINS_TRACEBACK", "1")
    with pytest.raises(ZeroDivisionError):
        main(["prune", "--model", str(world["model"]), str(world["tmp"] / "o")])


def test_overwrite_replaces_only_an_es_plugins_folder(world, capsys):
    from es_plugins.masks.state import MASKS_FILENAME, SparsityState

    assert (
        main(["prune", "--model", str(world["model"]), str(world["pruned"]), "--sparsity", "0.6", "--overwrite"]) == 0
    )
    assert SparsityState.load(world["pruned"] / MASKS_FILENAME).sparsity == pytest.approx(0.6, abs=1e-3)
    assert json.loads((world["pruned"] / MARKER_FILENAME).read_text())["command"] == "prune"
    assert (world["parent"] / "sibling.txt").exists() and (world["home"] / "notes.txt").exists()
    leftovers = [p.name for p in world["tmp"].iterdir() if p.name.startswith(".pruned.")]
    assert leftovers == []


def test_side_files_copy_only_top_level_regular_files(world, capsys):
    model = world["model"]
    (model / "runs").mkdir()
    (model / "runs" / "events.log").write_text("training logs")
    (model / "modeling_custom.py").write_text("print('remote code')")
    outside = world["tmp"] / "outside-secret.txt"
    outside.write_text("not part of the model")
    (model / "linked-secret.txt").symlink_to(outside)
    (model / "linked-vocab.txt").symlink_to(model / "vocab.txt") if (model / "vocab.txt").exists() else None
    out = world["tmp"] / "copied"
    assert main(["prune", "--model", str(model), str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert "runs" not in names and "modeling_custom.py" not in names and "linked-secret.txt" not in names
    assert {"config.json", "tokenizer.json", "model.safetensors"} <= names
    assert all(not p.is_symlink() for p in out.iterdir())
    err = capsys.readouterr().err
    assert "not copied" in err and "modeling_custom.py" in err
    out2 = world["tmp"] / "copied-code"
    assert main(["prune", "--model", str(model), str(out2), "--copy-remote-code"]) == 0
    assert (out2 / "modeling_custom.py").read_text() == "print('remote code')"


def test_masks_file_is_byte_reproducible(world):
    outs = [world["tmp"] / f"repro{i}" for i in range(4)]
    for out in outs:
        assert main(["prune", "--model", str(world["model"]), str(out), "--sparsity", "0.4"]) == 0
    blobs = {(out / "sparsity_masks.safetensors").read_bytes() for out in outs}
    assert len(blobs) == 1


def test_a_temp_folder_killed_before_its_marker_is_cleaned_and_a_user_folder_is_not(tmp_path):
    import subprocess
    import sys

    from es_plugins.io.output import clean_stale_temps

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    out = tmp_path / "out"
    empty = tmp_path / f".out.es-tmp-{pid}-0a1b2c3d"  # killed between mkdir and the marker
    empty.mkdir()
    half = tmp_path / f".out.es-tmp-{pid}-1a1b2c3d"  # killed while the marker's temp file was written
    half.mkdir()
    (half / f".{MARKER_FILENAME}.x1y2.tmp").write_text('{"written_')
    users = tmp_path / f".out.es-tmp-{pid}-2a1b2c3d"  # the same name pattern, a user's data inside
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    removed = clean_stale_temps(out)
    assert sorted(removed) == sorted([empty, half]) and not empty.exists() and not half.exists()
    assert (users / "notes.txt").read_text() == "mine"
