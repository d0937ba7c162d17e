"""es-plugins logs like a library: records reach the user's handlers, and only the CLI prints."""

from __future__ import annotations

import logging
import subprocess
import sys

from es_plugins import OMPConfig, Sparsifier
from es_plugins.cli import main as cli
from tests.conftest import make_tiny_bert, save_checkpoint


def test_import_adds_no_printing_handler_and_keeps_propagation():
    code = (
        "import logging, es_plugins\n"
        "log = logging.getLogger('es_plugins')\n"
        "print(log.propagate, [type(h).__name__ for h in log.handlers], log.level)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "['NullHandler']", "0"]


def test_a_users_root_handler_receives_the_pruning_message():
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # what logging.basicConfig(level=logging.INFO) does
    try:
        Sparsifier(OMPConfig(0.5)).setup(make_tiny_bert())
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    messages = [r.getMessage() for r in records if r.name.startswith("es_plugins")]
    assert len(messages) == 1 and messages[0].startswith("pruned 12 layers (omp)")


def test_the_cli_console_handler_lives_only_while_a_command_runs(tmp_path):
    logger = logging.getLogger("es_plugins")
    before = list(logger.handlers)
    src = save_checkpoint(make_tiny_bert(), tmp_path / "dense")
    assert cli(["inspect", "--model", str(src)]) == 0
    assert logger.handlers == before and logger.level == logging.NOTSET


def test_console_logging_attaches_for_the_command_and_restores_the_logger():
    from es_plugins.cli.console import console_logging

    logger = logging.getLogger("es_plugins")
    handlers, level = list(logger.handlers), logger.level
    with console_logging():
        assert len(logger.handlers) == len(handlers) + 1 and logger.getEffectiveLevel() <= logging.INFO
    assert logger.handlers == handlers and logger.level == level
