"""Safe outputs: refused destinations, atomic publication, no trace after a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

import es_plugins.io.output as output
from es_plugins.errors import OutputPathError
from es_plugins.io.output import check_output, write_folder_atomically


def test_check_output_rules(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    for bad in ("", ".", str(tmp_path), "/", str(model), str(model / "x")):
        with pytest.raises(OutputPathError):
            check_output(bad, inputs=[model], overwrite=True)
    assert check_output("new/out", inputs=[model]) == tmp_path / "new" / "out"
    # a file output may sit inside an input folder (it deletes nothing) but never replace it
    assert check_output(model / "extra.onnx", inputs=[model], kind="file") == model / "extra.onnx"
    with pytest.raises(OutputPathError, match="is the input"):
        check_output(model / "config.json", inputs=[model / "config.json"], kind="file", overwrite=True)


def test_failed_write_leaves_no_trace_and_keeps_the_old_output(tmp_path):
    out = tmp_path / "out"
    write_folder_atomically(out, lambda tmp: (tmp / "a.txt").write_text("old"))

    def failing(tmp):
        (tmp / "a.txt").write_text("half new")
        raise RuntimeError("disk trouble")

    with pytest.raises(RuntimeError):
        write_folder_atomically(out, failing, overwrite=True)
    assert (out / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_swap_falls_back_to_two_renames_where_exchange_is_unsupported(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_folder_atomically(out, lambda tmp: (tmp / "a.txt").write_text("old"))
    monkeypatch.setattr(output, "_exchange", lambda a, b: False)
    write_folder_atomically(out, lambda tmp: (tmp / "a.txt").write_text("new"), overwrite=True)
    assert (out / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    from es_plugins.io.output import atomic_write, atomic_write_text

    path = atomic_write_text(tmp_path / "summary.md", "complete")

    def half_then_crash(tmp):
        tmp.write_text("half a")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(path, half_then_crash)
    assert path.read_text() == "complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.md"]  # no temp file left behind


def test_every_sweep_report_file_is_written_atomically(tmp_path, monkeypatch):
    """results.json, results.csv, summary.md and the plots go through atomic_write."""
    import es_plugins.io.output as output
    from es_plugins.analysis.sweep import SweepConfig, run_sweep
    from es_plugins.analysis.sweep_report import write_sweep_report

    written = []
    original = output.atomic_write

    def recording(path, write):
        written.append(Path(path).name)
        return original(path, write)

    monkeypatch.setattr(output, "atomic_write", recording)
    monkeypatch.setattr("es_plugins.analysis.plots.atomic_write", recording)
    result = run_sweep(lambda s, seed: 1.0 - s, SweepConfig(levels=(0.2, 0.5), resolution=0.3))
    write_sweep_report(tmp_path / "r", result, "t", "cmd", {"a": 0.3})
    on_disk = {p.name for p in (tmp_path / "r").iterdir()}
    assert on_disk <= set(written) and {"results.json", "results.csv", "summary.md"} <= on_disk
