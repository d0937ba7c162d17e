"""Render the docs' result tables from ``benchmarks/results/*.json`` — the one source of every
measured number in README.md and docs/.

A table in a Markdown file sits between two markers::

    <!-- results: global_omp table1 columns=0,1,2 rows=0,1 -->
    ...generated: the table, then a line with the command and its conditions...
    <!-- /results -->

``columns`` / ``rows`` (optional) pick columns and rows by position. ``python
benchmarks/tables.py`` rewrites every block; ``--check`` changes nothing and exits 1 naming each
block that disagrees with its results file (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCUMENTS = ("README.md", "docs/*.md")
BLOCK = re.compile(r"(<!-- results: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


class MissingResults(LookupError):
    """A block names a results file or table that does not exist."""


def load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise MissingResults(f"{path.relative_to(ROOT)}: no such results file (run the benchmark that writes it)")
    return json.loads(path.read_text())


def conditions_line(data: dict) -> str:
    c = data["conditions"]
    versions = c.get("versions", {})
    parts = [
        f"`{data['command']}`",
        c["date"],
        f"{c['cpu']} ({c['logical_cpus']} logical CPUs)",
        f"threads {c['threads']}",
        f"load {c['load_before'][0]:.2f} → {c['load_after'][0]:.2f}",
        f"repeats {c['repeats']}" if c.get("repeats") else "one run",
        f"torch {versions.get('torch', '?')}",
        f"commit {c['commit']}",
    ]
    extra = [f"{k} {v}" for k, v in c.items() if k not in _STANDARD]
    return "<sub>" + " · ".join(parts + extra) + "</sub>\n"


_STANDARD = {
    "date",
    "cpu",
    "logical_cpus",
    "threads",
    "load_before",
    "load_after",
    "repeats",
    "versions",
    "commit",
}


def render(spec: str) -> str:
    """The Markdown a block with this spec must hold."""
    name, key, *options = spec.split()
    data = load(name)
    if key not in data["tables"]:
        raise MissingResults(f"results/{name}.json has no table {key!r} (it has {', '.join(data['tables'])})")
    found = data["tables"][key]
    picks = dict(option.split("=", 1) for option in options)
    columns = [int(i) for i in picks["columns"].split(",")] if "columns" in picks else range(len(found["columns"]))
    rows = [found["rows"][int(i)] for i in picks["rows"].split(",")] if "rows" in picks else found["rows"]
    cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731
    lines = [
        "| " + " | ".join(cell(found["columns"][i]) for i in columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(cell(row[i]) for i in columns) + " |" for row in rows),
    ]
    return "\n".join(lines) + "\n\n" + conditions_line(data)


def documents() -> list[Path]:
    found: list[Path] = []
    for pattern in DOCUMENTS:
        found += sorted(ROOT.glob(pattern))
    return found


def _rendered(spec: str) -> str | None:
    try:
        return render(spec)
    except MissingResults:
        return None


def stale_blocks(text: str) -> list[str]:
    """The specs of the blocks in ``text`` whose body is not what the results file renders
    (or whose results file or table is missing)."""
    return [m.group("spec") for m in BLOCK.finditer(text) if m.group("body") != _rendered(m.group("spec"))]


def regenerate(text: str) -> str:
    """Every block rendered from its results file; a block without one is left as it is."""

    def fill(m: re.Match) -> str:
        body = _rendered(m.group("spec"))
        return m.group(1) + (m.group("body") if body is None else body) + m.group(4)

    return BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is stale")
    args = parser.parse_args(argv)
    stale = []
    for path in documents():
        text = path.read_text()
        if args.check:
            stale += [f"{path.relative_to(ROOT)}: {spec}" for spec in stale_blocks(text)]
        else:
            new = regenerate(text)
            if new != text:
                path.write_text(new)
                print(f"updated {path.relative_to(ROOT)}")
    missing = sorted(
        {f"{path.relative_to(ROOT)}: {m.group('spec')}" for path in documents() for m in BLOCK.finditer(path.read_text())
         if _rendered(m.group("spec")) is None}
    )  # fmt: skip
    for line in stale:
        print(f"stale: {line} (python benchmarks/tables.py regenerates it)")
    for line in missing:
        print(f"no results for {line}")
    return 1 if stale or missing else 0


if __name__ == "__main__":
    sys.exit(main())
