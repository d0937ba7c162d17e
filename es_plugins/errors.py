"""Exception types raised by es-plugins.

They subclass the builtin a caller would already catch (``ValueError``), so code that
handles bad arguments generically keeps working, while tests and adapters can match the
precise failure.
"""

from __future__ import annotations

import numbers


class SparsityConfigError(ValueError):
    """A configuration value is outside its allowed range or set."""


class NoTargetsError(ValueError):
    """Target selection matched no prunable weight."""


class MaskMismatchError(ValueError):
    """A masks file or state does not fit the model it is applied to."""


class NonFiniteWeightError(ValueError):
    """A targeted weight holds NaN or Inf, so magnitudes cannot be ranked."""


class NonFiniteScoreError(ValueError):
    """A score is NaN or infinite: it cannot be ranked. ``index``: its tensor's position.
    Every pass over the scores checks (at the cost of a dot product per chunk), and the selection
    makes one before any mask, so callers whose scores are the weights' magnitudes need no read
    pass of their own to refuse NaN/Inf weights; they turn it into :class:`NonFiniteWeightError`
    naming the weight."""

    def __init__(self, index: int):
        super().__init__(f"scores of tensor {index} are not all finite")
        self.index = index


class CheckpointError(ValueError):
    """A path is not a usable Hugging Face checkpoint folder."""


def check_fraction(name: str, value: float) -> float:
    """Validate a sparsity-like fraction in [0, 1) and return it as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # "0.5" and True are typos, not numbers
        raise SparsityConfigError(f"{name} must be a number in [0, 1), got {value!r} ({type(value).__name__})")
    fvalue = float(value)
    if not 0.0 <= fvalue < 1.0:
        raise SparsityConfigError(f"{name} must be in [0, 1), got {value!r}")
    return fvalue


def option_flag(name: str) -> str:
    """The command-line spelling of a keyword option (``eval_seq_len`` -> ``--eval-seq-len``):
    the jobs' arguments and the CLI's flags are one vocabulary, so errors can name both."""
    return "--" + name.replace("_", "-")


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """Validate that ``value`` is one of ``allowed``; the error lists them."""
    if value not in allowed:
        raise SparsityConfigError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}")
    return value


class OutputPathError(ValueError):
    """An output path is refused before any work: it would delete or clobber data."""


class DataError(ValueError):
    """A data file (calibration text, labeled examples) is missing or malformed."""


class ExportError(ValueError):
    """An exported model is missing or malformed, or the export changed the model (weights
    differ, outputs differ beyond tolerance, a rewrite altered the outputs)."""
