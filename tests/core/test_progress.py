"""Progress bars: a tqdm bar when asked, the iterable untouched otherwise."""

from __future__ import annotations

from tqdm.auto import tqdm

from es_plugins.progress import progress_factory


def test_bar_only_when_enabled():
    items = [1, 2, 3]
    assert progress_factory(False, "x")(items) is items
    bar = progress_factory(True, "layers")(items)
    assert isinstance(bar, tqdm) and list(bar) == items
