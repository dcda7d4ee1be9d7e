"""What one tenant's training may use, passed down pipeline → auto → tune → models as one frozen value."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from ml_service.config import Settings
from ml_service.data.tenant import TenantData


@dataclass(frozen=True)
class TrainContext:
    """One tenant's data, its time budget, the seed and the threads, and the two validation choices.

    `deadline` is a clock() value after which no new candidate starts (None: no limit); `started()` sets it from
    `budget_s`. `features` is the feature cache the candidates of one tenant share (feature matrices, content
    vectors): the one mutable thing in here, on purpose.
    """

    data: TenantData
    seed: int = 42
    threads: int = 1
    budget_s: float = 600.0
    deadline: float | None = None
    identity: bool = False  # identity feature columns (ML_IDENTITY_FEATURES)
    protocol: str = "random"  # the validation hold-out: "random" or "latest"
    recent_per_learner: int = 10  # dated interactions kept per learner for the dashboard (ML_RECENT_PER_LEARNER)
    features: dict[Any, Any] = field(default_factory=dict, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    @classmethod
    def of(cls, data: TenantData, settings: Settings) -> "TrainContext":
        """The context the settings give one tenant's data (the budget not yet started)."""
        return cls(
            data=data, seed=settings.seed, threads=settings.num_threads, budget_s=settings.auto_time_budget_s,
            identity=settings.identity_features, protocol=settings.validation_protocol,
            recent_per_learner=settings.recent_per_learner,
        )

    def started(self) -> "TrainContext":
        """This context with its deadline `budget_s` from now."""
        return replace(self, deadline=self.clock() + self.budget_s)

    def time_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - self.clock()
