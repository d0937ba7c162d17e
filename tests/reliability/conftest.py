"""A pristine sharded checkpoint per module, and copies of it damaged one way each."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import sharded_checkpoint


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return sharded_checkpoint(tmp_path_factory.mktemp("pristine") / "model")


def damaged_copy(pristine: Path, tmp_path: Path, damage: Callable[[Path], None]) -> Path:
    """``tmp_path/model``: a copy of ``pristine`` with ``damage`` applied to it."""
    folder = tmp_path / "model"
    shutil.copytree(pristine, folder)
    damage(folder)
    return folder
