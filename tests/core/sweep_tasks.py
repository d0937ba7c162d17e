"""Sweep tasks for the backend tests, importable by Ray workers (they import by module path)."""

from __future__ import annotations

import os
import signal
from pathlib import Path


class CurveTask:
    """Accuracy that holds to ``turn`` and then falls: a sweep with a known essential sparsity."""

    def __init__(self, turn: float = 0.43):
        self.turn = turn

    def evaluate(self, sparsity: float, seed: int) -> float:
        return 0.9 if sparsity <= self.turn else 0.9 - 2 * (sparsity - self.turn) - 0.02

    def layer_sparsity(self, sparsity: float) -> dict[str, float]:
        return {"layer": sparsity}


class DyingTask(CurveTask):
    """Its worker process dies (SIGKILL) on the point at ``sparsity`` the first ``deaths`` times:
    a marker file per death in ``folder`` counts them across worker processes."""

    def __init__(self, folder: str, sparsity: float, deaths: int):
        super().__init__()
        self.folder, self.sparsity, self.deaths = Path(folder), sparsity, deaths

    def evaluate(self, sparsity: float, seed: int) -> float:
        if abs(sparsity - self.sparsity) < 1e-9:
            died = len(list(self.folder.glob("death-*")))
            if died < self.deaths:
                (self.folder / f"death-{died}-{os.getpid()}").write_text("")
                os.kill(os.getpid(), signal.SIGKILL)
        return super().evaluate(sparsity, seed)
