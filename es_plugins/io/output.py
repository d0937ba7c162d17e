"""Safe output paths: every command that writes goes through here.

Two promises, kept by construction rather than by each command's care:

* **Nothing outside OUT is ever deleted.** ``check_output`` refuses an OUT that is empty,
  ``.``, the filesystem root, the home folder, the input itself, a parent of the input or
  inside it, and a non-empty folder that es-plugins did not write (no marker file), even
  with ``--overwrite``. Commands call it *before* loading a model, so a mistyped path fails
  in a second, not after minutes of work.
* **OUT is always complete.** ``write_folder_atomically`` writes into a sibling temp folder,
  fsyncs it, then swaps it in with one atomic ``renameat2(RENAME_EXCHANGE)`` (two renames
  where the kernel lacks it). A kill at any moment leaves the old complete OUT or the new
  one; the leftovers of a killed run are removed by the next run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from .._version import __version__
from ..errors import OutputPathError

MARKER_FILENAME = ".es-plugins-output.json"
LEGACY_MARKERS = ("sparsity_report.json",)  # folders written by es-plugins before the marker existed
_TMP_TAG, _OLD_TAG = "es-tmp", "es-old"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _describe(out: str) -> str:
    return repr(out) if out else "''"


def _refuse(flag: str, out: str, why: str) -> OutputPathError:
    return OutputPathError(f"{flag} {_describe(out)}: {why}")


def is_es_plugins_output(folder: Path) -> bool:
    """True for a folder this package wrote (marker file, or the report of older versions)."""
    return any((folder / name).is_file() for name in (MARKER_FILENAME, *LEGACY_MARKERS))


def check_output(
    out: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    overwrite: bool = False,
    kind: str = "folder",
    flag: str = "OUT_DIR",
    resume: bool = False,
) -> Path:
    """Validate an output path before any work; return it as an absolute path.

    Args:
        inputs: paths the command reads; OUT may not be one of them, contain one or lie inside one.
        overwrite: the user asked to replace an existing OUT.
        kind: ``"folder"`` or ``"file"`` (a single output file such as an ``.onnx``).
        flag: how the error names the path (the CLI's argument name).
        resume: an existing es-plugins folder is reused in place (``sweep --output``).

    Raises:
        OutputPathError: one line naming OUT and why it is refused.
    """
    text = os.fspath(out)
    if not text.strip():
        raise _refuse(flag, text, "is empty; give the folder to write")
    absolute = Path(os.path.abspath(text))
    real = absolute.resolve()
    if real == Path.cwd().resolve():
        raise _refuse(flag, text, "is the current directory; write into a new sub-folder instead")
    if real == Path(real.anchor):
        raise _refuse(flag, text, "is the filesystem root")
    if real == Path.home().resolve():
        raise _refuse(flag, text, "is the home folder")
    for source in inputs:
        src = Path(os.path.abspath(os.fspath(source))).resolve()
        if real == src:
            raise _refuse(flag, text, f"is the input {str(source)!r} itself; write the result to a new path")
        if real in src.parents:
            raise _refuse(flag, text, f"contains the input {str(source)!r}; replacing it would delete the input")
        if kind == "folder" and src in real.parents:
            raise _refuse(flag, text, f"is inside the input {str(source)!r}; write the result elsewhere")
    ancestor = absolute.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise _refuse(flag, text, f"cannot be created: {str(ancestor)!r} is a file, not a folder")
    if not absolute.exists() and not absolute.is_symlink():
        return absolute
    if kind == "file":
        if absolute.is_dir():
            raise _refuse(flag, text, "is a folder; expected a file path")
        if not overwrite:
            raise _refuse(flag, text, "exists; pass --overwrite to replace it")
        return absolute
    if absolute.is_symlink() or not absolute.is_dir():
        raise _refuse(flag, text, "exists and is not a folder; refusing to replace it")
    if not any(absolute.iterdir()):
        return absolute
    if not is_es_plugins_output(absolute):
        raise _refuse(
            flag,
            text,
            f"is a non-empty folder that es-plugins did not write (no {MARKER_FILENAME}); "
            "refusing to replace it, even with --overwrite: choose a new folder",
        )
    if not (overwrite or resume):
        raise _refuse(flag, text, "exists and is not empty; pass --overwrite to replace it")
    return absolute


def write_marker(folder: Path, command: str, extra: dict[str, Any] | None = None) -> None:
    """Mark ``folder`` as written by es-plugins, so a later ``--overwrite`` may replace it."""
    data = {"written_by": "es-plugins", "version": __version__, "command": command, **(extra or {})}
    # atomically: a kill leaves the whole marker or only its own temp file, never half a marker
    atomic_write_text(folder / MARKER_FILENAME, json.dumps(data, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------- temp folders of killed runs
def _temp_name(out: Path, tag: str) -> Path:
    return out.parent / f".{out.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}"


def _make_temp(out: Path, command: str) -> Path:
    """A new temp folder beside ``out``, holding our marker from its first instant: a later run
    deletes a leftover only if it finds that marker inside, never because of a name alone."""
    tmp = _temp_name(out, _TMP_TAG)
    tmp.mkdir(mode=0o777)  # mode filtered by the umask, like a plain mkdir
    write_marker(tmp, command)
    return tmp


def _holds_our_marker(entry: Path) -> bool:
    """A real folder (not a link) whose marker file is es-plugins' own JSON."""
    if entry.is_symlink() or not entry.is_dir():
        return False
    try:
        data = json.loads((entry / MARKER_FILENAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("written_by") == "es-plugins"


def _unfinished_temp(entry: Path) -> bool:
    """A temp folder killed before its marker was complete: a real folder holding nothing, or
    only the marker's own temp file (``atomic_write`` names it ``.MARKER.XXXX.tmp``). Removing
    it loses nothing anyone wrote."""
    if entry.is_symlink() or not entry.is_dir():
        return False
    prefix = f".{MARKER_FILENAME}."
    return all(p.name.startswith(prefix) and p.name.endswith(".tmp") and p.is_file() for p in entry.iterdir())


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process has not made its own temp folder yet
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale_temps(out: Path) -> list[Path]:
    """Remove the temp folders/files of earlier runs on ``out`` that were killed.

    Only folders with the names this module creates (``.NAME.es-tmp-PID-XXXX``), whose
    process is gone, *and* that hold es-plugins' marker file (or nothing but the marker's own
    temp file: killed while it was being written) are touched: a user's folder that happens to
    have such a name is left alone. If a kill fell between the two renames of the
    fallback swap, the old OUT is put back first.
    """
    if not out.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.({_TMP_TAG}|{_OLD_TAG})-(\d+)-[0-9a-f]+$")
    stale = []
    for entry in out.parent.iterdir():
        match = pattern.match(entry.name)
        if match and not _pid_alive(int(match.group(2))) and (_holds_our_marker(entry) or _unfinished_temp(entry)):
            stale.append((match.group(1), entry))
    for tag, entry in stale:
        if tag == _OLD_TAG and not out.exists() and is_es_plugins_output(entry):
            os.rename(entry, out)  # restore the previous complete output
            continue
        _remove(entry)
    return [entry for _, entry in stale]


# ----------------------------------------------------------------- durable, atomic swap
def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root``, so the rename publishes durable data."""
    if root.is_file():
        _fsync_path(root)
        return
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync_path(Path(folder) / name)
        _fsync_path(Path(folder))


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _publish(tmp: Path, out: Path) -> None:
    """Put ``tmp`` at ``out``; an existing ``out`` ends up at ``tmp`` (then deleted)."""
    if not out.exists():
        os.rename(tmp, out)
        return
    if _exchange(tmp, out):
        return
    old = _temp_name(out, _OLD_TAG)
    os.rename(out, old)  # a kill here is repaired by clean_stale_temps on the next run
    os.rename(tmp, out)
    os.rename(old, tmp)


def _write_or_explain(write: Callable[[Path], Any], tmp: Path, flag: str, target: Path) -> Any:
    """Run ``write``; an I/O failure (disk full, read-only) becomes one OSError naming OUT.

    safetensors reports I/O failures with its own error type; they are translated here so
    every command reports a failed write the same way.
    """
    try:
        return write(tmp)
    except OSError as exc:
        raise OSError(exc.errno, f"{flag} {str(target)!r}: cannot write: {exc.strerror or exc}") from None
    except Exception as exc:
        if type(exc).__module__.split(".")[0] != "safetensors":
            raise
        text = " ".join(str(exc).split())
        code = errno.ENOSPC if "os error 28" in text else errno.EROFS if "os error 30" in text else errno.EIO
        raise OSError(code, f"{flag} {str(target)!r}: cannot write: {os.strerror(code)} ({text})") from None


def write_folder_atomically(
    out: str | os.PathLike[str],
    write: Callable[[Path], object],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    overwrite: bool = False,
    command: str = "",
    flag: str = "OUT_DIR",
    owned: bool = False,
) -> Path:
    """Run ``write(tmp_folder)``, then make it ``out`` in one atomic step.

    Args:
        command: recorded in the marker file (which lets a later ``--overwrite`` replace it).
        owned: ``out`` is a path this package owns (its cache), so it is replaced without the
            user-folder checks.

    Returns:
        The absolute output path.
    """
    inputs = list(inputs)
    if owned:
        target = Path(os.path.abspath(os.fspath(out)))
    else:
        target = check_output(out, inputs=inputs, overwrite=overwrite, flag=flag)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target)
    tmp = _make_temp(target, command)
    try:
        _write_or_explain(write, tmp, flag, target)
        fsync_tree(tmp)
        if not owned:  # re-check: the destination may have changed while we worked
            check_output(out, inputs=inputs, overwrite=overwrite, flag=flag)
        _publish(tmp, target)
        _fsync_path(target.parent)
    finally:
        _remove(tmp)
    return target


def write_file_atomically(
    out: str | os.PathLike[str],
    write: Callable[[Path], Any],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    overwrite: bool = False,
    flag: str = "OUT",
) -> Any:
    """Run ``write(tmp_file)`` and rename the result onto ``out``; returns what ``write`` returned."""
    inputs = list(inputs)
    target = check_output(out, inputs=inputs, overwrite=overwrite, kind="file", flag=flag)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target)
    folder = _make_temp(target, "write-file")  # the file is written inside a marked temp folder
    tmp = folder / target.name  # tools that look at the extension still see it
    try:
        result = _write_or_explain(write, tmp, flag, target)
        fsync_tree(tmp)
        check_output(out, inputs=inputs, overwrite=overwrite, kind="file", flag=flag)
        os.replace(tmp, target)
        _fsync_path(target.parent)
    finally:
        _remove(folder)
    return result


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` into a uniquely named sibling temp file, fsync, and rename over ``path``:
    a crash never leaves half a file, and two processes writing the same path (shards of one
    sweep) never share a temp file — the last complete write wins."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of a text file (UTF-8)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
