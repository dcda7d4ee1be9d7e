"""StageClock: each second counts once, for the innermost stage; nothing is counted outside measuring()."""

from __future__ import annotations

from ml_service.stage_clock import measuring, stage, timed


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_nested_stages_count_for_the_inner_one_only() -> None:
    clock = FakeClock()

    @timed("evaluate")
    def evaluate() -> str:
        clock.now += 2.0
        return "scored"

    with measuring(clock) as stages:
        with stage("parse"):
            clock.now += 1.0
        with stage("fit"):
            clock.now += 5.0
            with stage("features"):
                clock.now += 3.0
            assert evaluate() == "scored"
            clock.now += 1.0
            assert evaluate() == "scored"
        clock.now += 100.0  # outside any stage: not counted
    assert stages.seconds == {"parse": 1.0, "features": 3.0, "evaluate": 4.0, "fit": 6.0}
    assert sum(stages.seconds.values()) == clock.now - 100.0


def test_without_measuring_nothing_is_recorded_and_errors_pass_through() -> None:
    clock = FakeClock()

    @timed("fit")
    def fails() -> None:
        clock.now += 1.0
        raise ValueError("bad data")

    try:
        fails()
    except ValueError:
        pass
    with measuring(clock) as stages:
        try:
            fails()
        except ValueError as exc:
            assert str(exc) == "bad data"
    assert stages.seconds == {"fit": 1.0}  # a failing stage still counts its time
