"""Every measured table in README.md and docs/ is generated from its results file in
benchmarks/results/, and a test fails when the two disagree (benchmarks/tables.py --check)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables():
    spec = importlib.util.spec_from_file_location("benchmark_tables", ROOT / "benchmarks" / "tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_generated_table_matches_its_results_file(tables):
    blocks = {path: tables.BLOCK.findall(path.read_text()) for path in tables.documents()}
    assert sum(len(b) for b in blocks.values()) >= 10  # the docs do take their numbers from results files
    stale = {str(path): tables.stale_blocks(path.read_text()) for path in blocks}
    assert not any(stale.values()), f"run python benchmarks/tables.py: {stale}"


def test_the_readme_results_table_is_generated(tables):
    assert "<!-- results: essential_sparsity table1 -->" in (ROOT / "README.md").read_text()


def test_a_changed_number_is_caught(tables):
    readme = (ROOT / "README.md").read_text()
    match = next(tables.BLOCK.finditer(readme))
    body = match.group("body")
    digit = next(i for i, c in enumerate(body) if c.isdigit())
    edited = body[:digit] + str((int(body[digit]) + 1) % 10) + body[digit + 1 :]
    text = readme.replace(body, edited, 1)
    assert tables.stale_blocks(text) == [match.group("spec")]
    assert tables.stale_blocks(tables.regenerate(text)) == []


def test_results_files_record_their_conditions():
    files = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    assert files
    for path in files:
        data = json.loads(path.read_text())
        conditions = data["conditions"]
        for key in ("date", "cpu", "threads", "load_before", "load_after", "repeats", "versions", "commit"):
            assert key in conditions, f"{path.name}: no {key}"
        assert data["command"].startswith("python benchmarks/") and data["tables"]
