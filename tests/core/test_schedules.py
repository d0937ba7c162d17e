"""CubicSchedule: the Zhu & Gupta ramp as a pure function of the step."""

from __future__ import annotations

import pytest

from es_plugins import CubicSchedule, SparsityConfigError


def test_ramp_endpoints_monotone_and_quantised():
    schedule = CubicSchedule(start_step=10, end_step=50, initial_sparsity=0.1, frequency=10)
    values = [schedule.sparsity_at(step, 0.6) for step in range(0, 61)]
    assert values[0] == values[10] == pytest.approx(0.1)
    assert values[50] == values[60] == pytest.approx(0.6)
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert values[21] == values[29] == values[20]  # masks change only at update points
    progress = 0.25  # step 20 of the 10..50 ramp
    assert values[20] == pytest.approx(0.1 + 0.5 * (1 - (1 - progress) ** 3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(start_step=-1), "start_step"),
        (dict(start_step=5, end_step=5), "end_step"),
        (dict(frequency=0), "frequency"),
        (dict(initial_sparsity=1.0), "initial_sparsity"),
    ],
)
def test_bad_schedules_fail_at_construction(kwargs, match):
    with pytest.raises(SparsityConfigError, match=match):
        CubicSchedule(**kwargs)


def test_a_schedule_never_lowers_sparsity():
    with pytest.raises(SparsityConfigError, match="only increase"):
        CubicSchedule(initial_sparsity=0.5).sparsity_at(3, 0.4)
