"""`auto`'s time budget as a hard limit: what may start, the deadline a started candidate stops at, the final's share."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from ml_service.training.costs import Cost

# What may still run after the deadline, stated: the fit of a non-iterative algorithm that has already started
# (its cost model said it would fit) and the serving extras (similar items) built after the final fit.
MARGIN_FRACTION = 0.1
MARGIN_MIN_S = 5.0
SCALE_MIN, SCALE_MAX = 0.5, 50.0  # bounds of the measured/estimated correction


def margin_s(budget_s: float) -> float:
    """The stated overrun allowance of a budget: max(MARGIN_MIN_S, MARGIN_FRACTION x budget)."""
    return max(MARGIN_MIN_S, MARGIN_FRACTION * budget_s)


@dataclass
class Budget:
    """A search that must end, final refit included, by `started + total_s` (time.monotonic() values)."""

    started: float
    total_s: float
    clock: Callable[[], float] = time.monotonic
    final_reserve_s: float = 0.0  # the refit of the best candidate so far (estimated, unscaled), kept free at the end
    ratios: list[float] = field(default_factory=list)  # measured / estimated seconds of the candidates tuned so far

    @property
    def deadline(self) -> float:
        return self.started + self.total_s

    def left(self) -> float:
        return self.deadline - self.clock()

    @property
    def scale(self) -> float:
        """How much slower than its cost models this machine runs now: the median measured/estimated ratio.

        The coefficients were fitted on an idle core; a shared machine (or a slower one) runs several times
        slower, and the estimates of the candidates still to come are scaled by what the tuned ones showed.
        """
        if not self.ratios:
            return 1.0
        ordered = sorted(self.ratios)
        return min(max(ordered[len(ordered) // 2], SCALE_MIN), SCALE_MAX)

    def observe(self, estimated_s: float, measured_s: float) -> None:
        """Record a tuned candidate's measured seconds against its estimate."""
        if estimated_s > 0:
            self.ratios.append(measured_s / estimated_s)

    def search_deadline(self) -> float:
        """When tuning must stop: the deadline minus the time the best candidate's refit needs."""
        return self.deadline - self.final_reserve_s * self.scale

    def allows(self, estimated_s: float) -> bool:
        """Whether work estimated at `estimated_s` (scaled) still fits before the refit's reserved time."""
        return estimated_s * self.scale <= self.search_deadline() - self.clock()

    def reserve_final(self, cost: Cost | None) -> None:
        """Keep time for refitting a candidate that may win (the largest such refit so far)."""
        if cost is not None:
            self.final_reserve_s = max(self.final_reserve_s, cost.fit_s)

    def refuse(self, cost: Cost | None, memory_limit_bytes: int | None) -> str:
        """Why a candidate with this estimated cost must not start ("" when it may)."""
        if cost is None:
            return ""
        if memory_limit_bytes is not None and cost.peak_bytes > memory_limit_bytes:
            return (f"estimated peak {cost.peak_bytes / 2**20:,.0f} MB is over ML_TRAIN_MEMORY_MB "
                    f"({memory_limit_bytes / 2**20:,.0f} MB)")
        # Its tuning and, should it win, its refit must both fit in what is left.
        tune_s, fit_s = cost.tune_s * self.scale, max(cost.fit_s, self.final_reserve_s) * self.scale
        if tune_s + fit_s > self.left():
            return (f"estimated {tune_s:.1f} s to tune + {fit_s:.1f} s to refit (cost model x {self.scale:.1f}, "
                    f"as measured so far), more than the {max(self.left(), 0.0):.1f} s left of the time budget")
        return ""


# The interim refit (training/interim.py) is worth it while it costs little of what is left: at most this share of the remaining budget.
INTERIM_SHARE = 0.25


def worth_publishing(score: float, baseline_score: float, *, remaining_candidates: int, refit_s: float, time_left_s: float) -> bool:
    """Whether to refit a candidate scoring `score` now and publish it before the search ends."""
    return remaining_candidates > 0 and score > baseline_score and refit_s <= INTERIM_SHARE * time_left_s
