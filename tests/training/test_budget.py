"""ML_AUTO_TIME_BUDGET as a hard limit and ML_TRAIN_MEMORY_MB: cost models skip what would not fit, a slow
candidate is stopped at the search deadline, and the run (final refit included) ends within budget + margin."""

from __future__ import annotations

import time
from typing import Any, Mapping

from ml_service.config import Settings
from ml_service.data.tenant import Interactions, TenantData
from ml_service.models.base import FitContext
from ml_service.models.parts import ScoringPart
from ml_service.models.popular import PopularAlgorithm
from ml_service.training.context import TrainContext
from ml_service.training.auto import train_auto
from ml_service.training.budget import Budget, margin_s
from ml_service.training.costs import Cost, estimate
from tests.synthetic import make_tenant


class Slow:
    """Iterative and cooperative: one 'epoch' of 0.05 s after another until the fit's deadline."""

    name = "slow"

    def __init__(self) -> None:
        self.fits = 0

    def candidates(self, data: TenantData) -> list[dict[str, Any]]:
        return [{}, {"again": True}]

    def fit(self, data: TenantData, train: Interactions, params: Mapping[str, Any], ctx: FitContext) -> ScoringPart:
        self.fits += 1
        while ctx.time_left() > 0:
            time.sleep(0.05)
        return PopularAlgorithm().fit(data, train, {}, ctx)


class Expensive(Slow):
    """States a cost far over any test budget; must never be fitted."""

    name = "expensive"

    def tune_cost(self, data: TenantData) -> Cost:
        return Cost(tune_s=1e6, fit_s=1e5, peak_bytes=10**6)

    def fit(self, data: TenantData, train: Interactions, params: Mapping[str, Any], ctx: FitContext) -> ScoringPart:
        raise AssertionError("a candidate over the budget was started")


def test_cost_models_grow_with_the_catalogue_and_the_dense_ones_do_not_fit_a_10k_item_tenant() -> None:
    small, large = estimate("ease", 1000, 1700, 100_000), estimate("ease", 1000, 10_000, 100_000)
    assert small is not None and large is not None
    assert large.tune_s > 20 * small.tune_s and large.peak_bytes > 2**30 > small.peak_bytes
    seq = estimate("seq_edlae", 1000, 10_000, 100_000)
    assert seq is not None and seq.peak_bytes > large.peak_bytes  # EDLAE and a timeline model: more than EASE
    default_limit = Settings().train_memory_mb * 2**20  # MovieLens-1M's seq_edlae fits the default, no dense 10k model
    assert estimate("seq_edlae", 6000, 3700, 1_000_000).peak_bytes < default_limit
    assert all(estimate(name, 1000, 10_000, 100_000).peak_bytes > default_limit for name in ("ease", "edlae", "seq_edlae", "knn"))
    knn = estimate("knn", 1000, 10_000, 100_000)
    assert knn is not None and knn.peak_bytes > 2**30
    for name in ("als", "lda", "mf", "partial", "hybrid"):
        cost = estimate(name, 5000, 10_000, 100_000)
        assert cost is not None and cost.peak_bytes < 2**30 and cost.fit_s < cost.tune_s
    assert estimate("unknown", 1, 1, 1) is None


def test_budget_refuses_what_would_not_fit() -> None:
    now = [100.0]
    budget = Budget(100.0, 60.0, clock=lambda: now[0])
    assert budget.refuse(Cost(10, 5, 2**20), memory_limit_bytes=2**30) == ""
    assert "over ML_TRAIN_MEMORY_MB" in budget.refuse(Cost(10, 5, 2**31), memory_limit_bytes=2**30)
    budget.reserve_final(Cost(10, 20, 0))
    assert budget.search_deadline() == 140.0
    now[0] = 135.0  # 25 s left: tuning 10 s + the largest refit so far (20 s) does not fit
    assert "more than the 25.0 s left" in budget.refuse(Cost(10, 5, 0), memory_limit_bytes=None)
    assert budget.refuse(None, memory_limit_bytes=None) == ""  # no cost model: the deadline stops it


def test_the_cost_model_skips_a_candidate_over_the_memory_limit() -> None:
    data = make_tenant(seed=1)
    result = train_auto(TrainContext(data, threads=1, seed=1, budget_s=600), candidates=("ease", "knn"), memory_limit_mb=1)
    assert set(result.skipped) == {"ease", "knn"}
    assert all("over ML_TRAIN_MEMORY_MB" in reason for reason in result.skipped.values())
    assert result.choice == "popular"


def test_a_slow_candidate_is_stopped_or_skipped_and_the_run_ends_within_budget_and_margin() -> None:
    data = make_tenant(seed=1)
    slow, expensive = Slow(), Expensive()
    budget_s = 6.0
    started = time.monotonic()
    result = train_auto(TrainContext(data, threads=1, seed=1, budget_s=budget_s), candidates=("slow", "expensive"),
                        algorithms={"slow": slow, "expensive": expensive})
    elapsed = time.monotonic() - started
    auto = result.model.info["auto"]
    assert auto["order"] == ["popular", "expensive", "slow"] and "slow" in result.scores  # tried
    assert slow.fits == 1  # stopped at the search deadline: its second candidate never started
    assert "expensive" in result.skipped and "estimated" in result.skipped["expensive"]
    assert elapsed <= budget_s + margin_s(budget_s), auto
    assert auto["seconds_total"] <= budget_s + margin_s(budget_s)


def test_estimates_are_scaled_by_what_the_tuned_candidates_measured() -> None:
    now = [0.0]
    budget = Budget(0.0, 100.0, clock=lambda: now[0])
    cost = Cost(tune_s=21.0, fit_s=5.0, peak_bytes=0)
    assert budget.refuse(cost, memory_limit_bytes=None) == ""
    budget.observe(estimated_s=10.0, measured_s=40.0)  # this machine runs 4x slower than the cost models say
    assert budget.scale == 4.0
    assert "cost model x 4.0" in budget.refuse(cost, memory_limit_bytes=None)  # 84 s + 20 s > 100 s
    assert budget.allows(20.0) and not budget.allows(30.0)
