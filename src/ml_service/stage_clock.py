"""Seconds per training stage (parse, features, fit, evaluate, publish), each second counted once, in the innermost stage."""

from __future__ import annotations

import contextlib
import functools
import time
from contextvars import ContextVar
from typing import Any, Callable, Iterator, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class StageClock:
    """Adds up the wall-clock seconds spent in named stages; a stage entered inside another (evaluation during a fit,
    features built by the first fit) counts for the inner stage only, so the stages add up to the time measured."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = clock
        self._inner: list[float] = []  # per open stage: the seconds its nested stages took

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = self._clock()
        self._inner.append(0.0)
        try:
            yield
        finally:
            total = self._clock() - started
            nested = self._inner.pop()
            self.seconds[name] = self.seconds.get(name, 0.0) + total - nested
            if self._inner:
                self._inner[-1] += total

    def rounded(self, digits: int = 3) -> dict[str, float]:
        return {name: round(value, digits) for name, value in self.seconds.items()}


_ACTIVE: ContextVar[StageClock | None] = ContextVar("ml_service_stage_clock", default=None)


@contextlib.contextmanager
def measuring(clock: Callable[[], float] = time.perf_counter) -> Iterator[StageClock]:
    """Within this block, stage() and @timed code add their seconds to the StageClock it yields."""
    stages = StageClock(clock)
    token = _ACTIVE.set(stages)
    try:
        yield stages
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Count the block's seconds for stage `name` when a measuring() block is open (else: nothing, no cost)."""
    stages = _ACTIVE.get()
    if stages is None:
        yield
        return
    with stages.stage(name):
        yield


def timed(name: str) -> Callable[[F], F]:
    """Decorator: every call of the function counts for stage `name` (see stage())."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            stages = _ACTIVE.get()
            if stages is None:
                return function(*args, **kwargs)
            with stages.stage(name):
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
