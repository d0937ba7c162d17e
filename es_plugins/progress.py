"""Progress bars for long passes (tqdm), off by default for library calls."""

from __future__ import annotations

from typing import Callable, Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_factory(enabled: bool, desc: str) -> Callable[[Iterable[T]], Iterable[T]]:
    """Return a wrapper that shows a bar over an iterable when ``enabled``."""
    if not enabled:
        return lambda iterable: iterable

    def wrap(iterable: Iterable[T]) -> Iterable[T]:
        return tqdm(iterable, desc=desc, unit="layer", leave=False)

    return wrap
