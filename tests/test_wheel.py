"""The product as users install it: a wheel built from this tree, installed non-editable into a
fresh virtual environment, runs every command. The editable ``.venv`` hides a package missing
from the wheel (it imports from the tree), so these tests never run from the tree.

The fresh environment reuses the pinned dependencies of ``.venv`` through a path file (not
its ``.pth`` hooks, so the editable es-plugins there stays invisible): installing 1.7 GB again
would cost minutes and test nothing of ours.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import make_tiny_bert, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _source_modules() -> set[str]:
    """Every module file the tree ships, by its installed path."""
    roots = {"es_plugins": REPO / "es_plugins", "es_plugins/integrations": REPO / "integrations"}
    found = set()
    for installed, folder in roots.items():
        for path in folder.rglob("*.py"):
            if "__pycache__" not in path.parts:
                found.add(f"{installed}/{path.relative_to(folder).as_posix()}")
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return next(out.glob("es_plugins-*.whl"))


@pytest.fixture(scope="module")
def fresh_env(wheel, tmp_path_factory) -> Path:
    """A new venv with the wheel installed (no editable project), the pinned deps on its path."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "pinned_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _run(venv: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{argv}: {result.stderr[-3000:]}"
    return result


def test_the_wheel_ships_every_module_of_the_tree(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_source_modules() - names)
    assert not missing, f"modules left out of the wheel: {missing}"
    assert "optimum/commands/register/es_plugins_sparsity.py" in names
    assert not any(n.startswith("optimum/") and n.endswith("__init__.py") for n in names)  # PEP 420


def test_the_installed_wheel_runs_every_command(fresh_env, tmp_path):
    bin_dir = fresh_env / "bin"
    python = str(bin_dir / "python")
    where = _run(fresh_env, python, "-c", "import es_plugins; print(es_plugins.__file__)", cwd=tmp_path).stdout
    assert where.strip().startswith(str(fresh_env)), f"imported from {where!r}, not the installed wheel"

    assert "prune" in _run(fresh_env, str(bin_dir / "es-plugins"), "--help", cwd=tmp_path).stdout
    src = save_checkpoint(make_tiny_bert(), tmp_path / "dense")
    for name, extra in (("in-memory", ()), ("low-memory", ("--low-memory",))):
        _run(
            fresh_env,
            str(bin_dir / "es-plugins"),
            "prune",
            "--model",
            str(src),
            str(tmp_path / name),
            "--sparsity",
            "0.5",
            *extra,
            cwd=tmp_path,
        )
        report = json.loads((tmp_path / name / "sparsity_report.json").read_text())
        assert report["targets"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    inspected = _run(
        fresh_env,
        str(bin_dir / "es-plugins"),
        "inspect",
        "--model",
        str(tmp_path / "in-memory"),
        "--json",
        cwd=tmp_path,
    )
    assert json.loads(inspected.stdout)["targets"]["sparsity"] == pytest.approx(0.5, abs=1e-3)

    optimum = _run(fresh_env, python, "-m", "optimum.commands.optimum_cli", "sparsity", "--help", cwd=tmp_path)
    assert all(command in optimum.stdout for command in ("prune", "inspect", "compress", "export"))


def test_every_integration_imports_from_the_wheel(fresh_env, wheel, tmp_path):
    modules = sorted(
        n[: -len(".py")].replace("/", ".")
        for n in zipfile.ZipFile(wheel).namelist()
        if n.startswith("es_plugins/integrations/") and n.endswith(".py") and not n.endswith("__init__.py")
    )
    assert "es_plugins.integrations.transformers" in modules and "es_plugins.integrations.optimum" in modules
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\nprint('ok')"
    assert _run(fresh_env, str(fresh_env / "bin" / "python"), "-c", code, *modules, cwd=tmp_path).stdout == "ok\n"
