"""Child process for the crash-safety tests: replace OUT, and SIGKILL itself at one stage.

Usage: python kill_worker.py OUT STAGE VALUE
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import es_plugins.io.output as output


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    out, stage, value = sys.argv[1], sys.argv[2], sys.argv[3]

    def write(tmp: Path) -> None:
        for i in range(20):
            (tmp / f"part-{i}.txt").write_text(value * 1000)
            if stage == "writing" and i == 10:
                die()
        (tmp / "value.txt").write_text(value)

    if stage == "before-publish":
        output._publish = lambda tmp, target: die()
    elif stage == "after-swap":
        original = output._publish

        def publish_then_die(tmp: Path, target: Path) -> None:
            original(tmp, target)
            die()  # the old contents now sit in the temp folder, not yet deleted

        output._publish = publish_then_die
    elif stage == "between-renames":
        output._exchange = lambda a, b: False
        rename, calls = os.rename, []

        def rename_then_die(src, dst):
            calls.append(src)
            if len(calls) == 2:
                die()  # OUT was moved aside; the new folder is not in place yet
            rename(src, dst)

        output.os.rename = rename_then_die
    output.write_folder_atomically(out, write, overwrite=True, command="kill-test")


if __name__ == "__main__":
    main()
