"""Kills and full disks: OUT is always the old complete folder or the new complete one.

Real ``SIGKILL``s hit a child process at chosen stages of the write (deterministic) and the
real CLI at moments spread over its run; a full and a read-only filesystem are real tmpfs
mounts in a private mount namespace (``unshare -m``, root only; skipped elsewhere).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from es_plugins.io.output import MARKER_FILENAME, clean_stale_temps, write_folder_atomically
from es_plugins.masks.state import MASKS_FILENAME, SparsityState
from tests.conftest import make_tiny_bert

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("kill_worker.py")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _value(out: Path) -> str:
    """The complete folder's value; fails on a half-written one."""
    assert (out / MARKER_FILENAME).is_file(), sorted(p.name for p in out.iterdir())
    value = (out / "value.txt").read_text()
    assert all((out / f"part-{i}.txt").read_text() == value * 1000 for i in range(20))
    return value


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


@pytest.mark.parametrize(
    "stage,expected",
    [
        ("writing", "old"),
        ("before-publish", "old"),
        ("after-swap", "new"),
        ("between-renames", "old"),
    ],
)
def test_sigkill_at_each_stage_leaves_a_complete_output(tmp_path, stage, expected):
    out = tmp_path / "out"

    def write_old(tmp: Path) -> None:
        for i in range(20):
            (tmp / f"part-{i}.txt").write_text("old" * 1000)
        (tmp / "value.txt").write_text("old")

    write_folder_atomically(out, write_old)
    result = subprocess.run([sys.executable, str(WORKER), str(out), stage, "new"], env=_env(), timeout=120)
    assert result.returncode == -signal.SIGKILL
    if stage != "between-renames":  # the atomic exchange: OUT is complete at every instant
        assert _value(out) == expected
        assert _leftovers(tmp_path, "out"), "the killed run should have left its temp folder behind"
    # the next run (here: its first step) removes the killed run's leftovers, restoring OUT if needed
    clean_stale_temps(out)
    assert _value(out) == expected
    assert _leftovers(tmp_path, "out") == []
    # and a complete rerun replaces OUT normally
    result = subprocess.run([sys.executable, str(WORKER), str(out), "none", "newer"], env=_env(), timeout=120)
    assert result.returncode == 0 and _value(out) == "newer" and _leftovers(tmp_path, "out") == []


def _prune(model: Path, out: Path, sparsity: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "es_plugins",
            "prune",
            "--model",
            str(model),
            str(out),
            "--sparsity",
            sparsity,
            "--overwrite",
        ],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_sigkill_of_the_cli_at_any_moment_keeps_out_complete(tmp_path):
    model = tmp_path / "model"
    make_tiny_bert().save_pretrained(model)
    out = tmp_path / "out"
    started = time.monotonic()
    assert _prune(model, out, "0.3").wait(timeout=300) == 0
    duration = time.monotonic() - started
    outcomes = []
    for fraction in (0.3, 0.6, 0.85, 0.95, 1.0):
        process = _prune(model, out, "0.6")
        time.sleep(duration * fraction)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        state = SparsityState.load(out / MASKS_FILENAME)  # complete: marker, masks and weights agree
        assert (out / MARKER_FILENAME).is_file() and (out / "model.safetensors").is_file()
        assert state.sparsity in (pytest.approx(0.3, abs=1e-3), pytest.approx(0.6, abs=1e-3))
        outcomes.append(round(state.sparsity, 1))
        if state.sparsity > 0.5:  # a finished run: put the old output back for the next kill
            assert _prune(model, out, "0.3").wait(timeout=300) == 0
    assert _prune(model, out, "0.6").wait(timeout=300) == 0
    assert SparsityState.load(out / MASKS_FILENAME).sparsity == pytest.approx(0.6, abs=1e-3)
    assert _leftovers(tmp_path, "out") == [], "stale temp folders of killed runs were not removed"


def _in_private_mount(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script], env=_env(), capture_output=True, text=True, timeout=300
    )


def _can_mount(tmp_path: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    return _in_private_mount(f"mount -t tmpfs -o size=64k tmpfs {probe}").returncode == 0


@pytest.mark.parametrize(
    "mount,words",
    [
        ("mount -t tmpfs -o size=48k tmpfs {disk}", "No space left on device"),
        (
            "mount -t tmpfs -o size=1m tmpfs {disk} && mkdir {disk}/keep && mount -o remount,ro {disk}",
            "Read-only file system",
        ),
    ],
)
def test_full_or_read_only_disk_is_one_line_and_leaves_nothing(tmp_path, mount, words):
    if not _can_mount(tmp_path):
        pytest.skip("needs root and unshare -m to mount a private tmpfs")
    model = tmp_path / "model"
    make_tiny_bert().save_pretrained(model)
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "keep" / "out" if "ro" in mount else disk / "out"
    script = (
        f"{mount.format(disk=disk)} && {sys.executable} -m es_plugins prune {model} {out}; "
        f"rc=$?; echo LISTING; ls -A {disk} {out.parent}; exit $rc"
    )
    result = _in_private_mount(script)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and words in errors[0] and "Traceback" not in result.stderr, result.stderr
    listing = result.stdout.split("LISTING", 1)[1].split()
    assert not [name for name in listing if name.startswith(".out.") or name == "out"], listing


def test_a_user_folder_named_like_a_leftover_is_never_deleted(tmp_path):
    """Only a folder holding es-plugins' own marker counts as a killed run's leftover; a user's
    folder with the same kind of name (and a dead process id in it) is left alone."""
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)  # that process has exited
    out = tmp_path / "out"
    users = tmp_path / f".out.es-tmp-{dead}-deadbeef"
    users.mkdir()
    (users / "thesis.tex").write_text("years of work")
    forged = tmp_path / f".out.es-old-{dead}-cafe0123"
    forged.mkdir()
    (forged / MARKER_FILENAME).write_text('{"written_by": "someone else"}')
    ours = tmp_path / f".out.es-tmp-{dead}-0123abcd"
    ours.mkdir()
    (ours / MARKER_FILENAME).write_text('{"written_by": "es-plugins", "command": "prune"}')
    write_folder_atomically(out, lambda tmp: (tmp / "value.txt").write_text("new"))
    assert (users / "thesis.tex").read_text() == "years of work" and forged.is_dir()
    assert not ours.exists() and (out / "value.txt").read_text() == "new"
