"""Keep the CLI's stdout for results only (tables, JSON).

Libraries loaded by a command may print to stdout (DeepSpeed's accelerator notice, GGUF
progress); ``--json`` output must stay parseable. While a command runs, ``sys.stdout`` points
to stderr and results go through :func:`emit` to the real stdout.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator, TextIO

_results: TextIO | None = None


def log(message: str) -> None:
    """A progress or status line: stderr, never mixed into results."""
    print(message, file=sys.stderr, flush=True)


def emit(text: str) -> None:
    """Print a result (not a log line) to the command's real stdout."""
    print(text, file=_results or sys.stdout, flush=True)


@contextlib.contextmanager
def results_only_on_stdout() -> Iterator[None]:
    global _results
    previous, _results = _results, sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _results = previous


@contextlib.contextmanager
def console_logging() -> Iterator[None]:
    """While a command runs, show the library's INFO records (one line per pruning event) on
    stderr. Only the CLI does this: imported as a library, es-plugins leaves output to the
    user's ``logging`` set-up. The handler and level are removed afterwards (``main`` may be
    called from Python)."""
    logger = logging.getLogger("es_plugins")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("es-plugins: %(message)s"))
    previous_level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
