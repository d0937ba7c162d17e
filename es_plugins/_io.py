"""Small file helpers shared by the modules that persist progress."""

from __future__ import annotations

from pathlib import Path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write via a sibling temp file and rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path
