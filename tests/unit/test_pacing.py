"""The archive's pacing (retention.pacing): busy at most ``max_busy`` of its run, pauses bounded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failure_aware.retention.pacing import MAX_PAUSE_SECONDS, Pacer


class Clock:
    """A clock each unit of work moves by hand; ``sleep`` moves it too and remembers the pauses."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


@given(st.floats(0.05, 1.0), st.lists(st.floats(0.0, 0.5), min_size=1, max_size=30))
def test_busy_share_is_at_most_max_busy(max_busy: float, costs: list[float]) -> None:
    clock = Clock()
    pacer = Pacer(max_busy, clock=clock, sleep=clock.sleep)
    for cost in costs:
        with pacer.unit():
            clock.now += cost
    busy = sum(costs)
    if busy and max(costs) * (1 - max_busy) / max_busy <= MAX_PAUSE_SECONDS:
        assert busy / clock.now <= max_busy + 1e-9
    assert pacer.paused == pytest.approx(sum(clock.pauses))


def test_full_speed_never_pauses() -> None:
    clock = Clock()
    pacer = Pacer(1.0, clock=clock, sleep=clock.sleep)
    with pacer.unit():
        clock.now += 3
    assert clock.pauses == []


def test_half_busy_pauses_as_long_as_the_unit_took_and_a_slow_unit_is_capped() -> None:
    clock = Clock()
    pacer = Pacer(0.5, clock=clock, sleep=clock.sleep)
    with pacer.unit():
        clock.now += 0.2
    with pacer.unit():
        clock.now += 60  # a lock wait: never a minute's nap after it
    assert clock.pauses == [pytest.approx(0.2), MAX_PAUSE_SECONDS]


def test_a_unit_that_fails_does_not_pause() -> None:
    clock = Clock()
    pacer = Pacer(0.25, clock=clock, sleep=clock.sleep)
    with pytest.raises(RuntimeError), pacer.unit():
        clock.now += 1
        raise RuntimeError("the chunk's transaction failed")
    assert clock.pauses == []
