"""auto: picks a personalised model only when it validates above popular, respects the budget, skips what cannot run."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import pytest

from ml_service.data.tenant import Interactions, TenantData
from ml_service.models.base import FitContext, TrainedModel
from ml_service.models.parts import FactorModel
from ml_service.models.ease import EASEAlgorithm
from ml_service.models.popular import PopularAlgorithm
from ml_service.training.context import TrainContext
from ml_service.training.auto import cost_order, train_auto
from tests.synthetic import make_tenant


class AntiPopular:
    """A deliberately bad algorithm: recommends the least popular items first."""

    name = "anti"

    def candidates(self, data: TenantData) -> list[dict[str, Any]]:
        return [{}]

    def fit(self, data: TenantData, train: Interactions, params: Mapping[str, Any], ctx: FitContext) -> FactorModel:
        part = PopularAlgorithm().fit(data, train, {}, ctx)
        return dataclasses.replace(part, item_biases=-np.asarray(part.item_biases))


class Broken:
    """An algorithm whose fit raises, as a bug or an out-of-memory would."""

    name = "broken"

    def candidates(self, data: TenantData) -> list[dict[str, Any]]:
        return [{}]

    def fit(self, data: TenantData, train: Interactions, params: Mapping[str, Any], ctx: FitContext) -> TrainedModel:
        raise RuntimeError("boom")


def test_picks_the_best_personalised_model_and_refits_it_on_everything() -> None:
    data = make_tenant(seed=1)
    result = train_auto(TrainContext(data, threads=1, seed=1, budget_s=600), candidates=("als", "ease", "knn"))
    assert set(result.scores) == {"popular", "als", "ease", "knn"} and not result.skipped
    assert result.choice == max(result.scores, key=result.scores.get) != "popular"
    assert result.scores[result.choice] > result.scores["popular"] + 0.1
    model = result.model
    model.validate()
    assert model.algorithm == result.choice
    assert model.positives.nnz == data.positive_matrix().nnz  # refitted on all interactions
    auto = model.info["auto"]
    assert auto["choice"] == result.choice and auto["scores"].keys() == result.scores.keys()
    assert auto["seconds"].keys() == result.scores.keys() and auto["skipped"] == {}
    assert model.metrics["ndcg@10"] == result.scores[result.choice]


def test_never_picks_a_model_that_validates_below_popular() -> None:
    data = make_tenant(seed=2)
    result = train_auto(TrainContext(data, seed=2, budget_s=600), candidates=("anti",), algorithms={"anti": AntiPopular()})
    assert result.scores["anti"] < result.scores["popular"]
    assert result.choice == "popular" and result.model.algorithm == "popular"


def test_random_interactions_keep_popular_unless_something_is_strictly_better() -> None:
    data = make_tenant(seed=3, in_group=0.0)  # no group structure: nothing to personalise
    result = train_auto(TrainContext(data, seed=3, budget_s=600), candidates=("ease", "knn", "anti"), algorithms={"anti": AntiPopular()})
    best = max(result.scores.values())
    assert result.scores[result.choice] == best
    assert result.choice == "popular" or result.scores[result.choice] > result.scores["popular"]


def test_an_exhausted_budget_leaves_only_popular_and_records_why() -> None:
    data = make_tenant(n_users=60, n_items=30, seed=4)
    result = train_auto(TrainContext(data, seed=4, budget_s=0), candidates=("als", "ease", "knn"))
    assert result.choice == "popular" and set(result.scores) == {"popular"}
    assert set(result.skipped) == {"als", "ease", "knn"}
    assert all("time budget of 0 s" in reason for reason in result.skipped.values())
    assert result.model.info["auto"]["skipped"] == result.skipped


def test_ease_above_its_catalogue_limit_is_skipped_with_the_reason() -> None:
    data = make_tenant(n_users=60, n_items=30, seed=5)
    result = train_auto(TrainContext(data, seed=5, budget_s=600), candidates=("ease", "knn"), algorithms={"ease": EASEAlgorithm(max_items=20)})
    assert "30 items: its limit is 20" in result.skipped["ease"]
    assert "ease" not in result.scores and "knn" in result.scores


class TooCostly(EASEAlgorithm):
    """EASE whose cost model says one fit takes an hour."""

    def cost(self, data: TenantData) -> tuple[float, int]:
        return 3600.0, 0


def test_a_candidate_whose_estimated_fit_exceeds_the_budget_left_is_skipped() -> None:
    data = make_tenant(n_users=60, n_items=30, seed=5)
    result = train_auto(TrainContext(data, seed=5, budget_s=600), candidates=("ease", "knn"), algorithms={"ease": TooCostly()})
    assert result.skipped["ease"].startswith("one fit is estimated at 3600 s")
    assert "ease" not in result.scores and "knn" in result.scores
    cheap = train_auto(TrainContext(data, seed=5, budget_s=600), candidates=("edlae",))
    assert "edlae" in cheap.scores and "edlae" not in cheap.skipped


def test_a_failing_candidate_is_skipped_not_fatal() -> None:
    data = make_tenant(n_users=60, n_items=30, seed=6)
    result = train_auto(TrainContext(data, seed=6, budget_s=600), candidates=("broken", "knn"), algorithms={"broken": Broken()})
    assert result.skipped["broken"] == "failed: RuntimeError: boom"
    assert "knn" in result.scores and result.model.validate() is None


def test_unknown_candidates_are_skipped_by_name() -> None:
    data = make_tenant(n_users=60, n_items=30, seed=7)
    result = train_auto(TrainContext(data, seed=7, budget_s=600), candidates=("nonesuch",))
    assert "unknown algorithm 'nonesuch'" in result.skipped["nonesuch"] and result.choice == "popular"


def test_cheapest_candidates_come_first() -> None:
    small = make_tenant(n_users=20, n_items=12, seed=0)
    assert cost_order(("hybrid", "partial", "mf", "als", "ease", "knn"), small) == [
        "knn", "ease", "als", "mf", "partial", "hybrid"
    ]


def test_dense_item_models_move_back_only_when_their_estimated_fit_is_long() -> None:
    from dataclasses import replace

    from ml_service.data.tenant import Items

    small = make_tenant(n_users=20, n_items=12, seed=0)
    assert cost_order(("lda", "edlae", "ease", "als"), small) == ["ease", "edlae", "als", "lda"]
    n = 9000  # about 146 s estimated for one inversion: behind ALS and LDA
    wide = replace(small, items=Items([f"container_course{i}" for i in range(n)], np.zeros(n, np.int8), [],
                                      small.items.tags[:0], [""] * n))
    assert cost_order(("lda", "edlae", "ease", "als"), wide) == ["als", "lda", "ease", "edlae"]


@pytest.mark.parametrize(("seed", "pair"), [(7, ("als", "lda")), (2, ("lda", "mf"))])
def test_blends_the_two_best_factor_models_when_that_validates_better_than_the_noise(
    seed: int, pair: tuple[str, str]
) -> None:
    data = make_tenant(seed=seed)
    result = train_auto(TrainContext(data, threads=1, seed=seed, budget_s=600), candidates=pair)
    auto = result.model.info["auto"]
    blend = auto["blend"]
    singles = {name: score for name, score in result.scores.items() if "+" not in name}
    first, second = sorted(pair, key=lambda name: -singles[name])
    assert blend["pair"] == [first, second]
    assert set(blend["scores"]) == {f"{first}+{second}@{w}" for w in ("0.25", "0.5", "1")}
    assert blend["score"] == pytest.approx(max(blend["scores"].values()), abs=1e-6)
    decision = blend["decision"]
    single = decision["against"]
    blended = blend["score"] - singles[single] > decision["standard_error"]  # search.Z = 1 standard error
    assert decision["above_noise"] == blended
    expected = "+".join(blend["pair"]) if blended else single
    assert result.choice == expected == result.model.algorithm
    result.model.validate()
    assert result.model.positives.nnz == data.positive_matrix().nnz  # refitted on all interactions
    if blended:
        assert result.model.params["weight"] == blend["weight"]
        assert result.model.metrics["ndcg@10"] == result.scores[result.choice] == blend["score"]


def test_no_blend_with_a_model_below_popular_or_a_single_factor_model() -> None:
    data = make_tenant(seed=3)
    result = train_auto(TrainContext(data, seed=3, budget_s=600), candidates=("als", "anti"), algorithms={"anti": AntiPopular()})
    assert result.scores["anti"] < result.scores["popular"]
    assert result.model.info["auto"]["blend"] == {} and "+" not in result.choice


def test_blend_partners_are_the_next_best_factor_models() -> None:
    data = make_tenant(seed=2)
    result = train_auto(TrainContext(data, threads=1, seed=2, budget_s=600), candidates=("lda", "mf", "als", "knn"))
    singles = {name: s for name, s in result.scores.items() if "+" not in name and name != "popular"}
    factor_models = sorted((name for name in singles if name != "knn"), key=lambda name: -singles[name])
    tried = result.model.info["auto"]["blend"]["scores"]
    assert {key.split("@")[0] for key in tried} == {f"{factor_models[0]}+{other}" for other in factor_models[1:]}


class ShuffledThenPopular:
    """Three candidates: the first ranks items at random (far below popular), the others are popular itself."""

    name = "shuffled_then_popular"

    def __init__(self) -> None:
        self.fits = 0

    def candidates(self, data: TenantData) -> list[dict[str, Any]]:
        return [{"shuffle": True}, {}, {"again": True}]

    def fit(self, data: TenantData, train: Interactions, params: Mapping[str, Any], ctx: FitContext) -> FactorModel:
        self.fits += 1
        part = PopularAlgorithm().fit(data, train, {}, ctx)
        if params.get("shuffle"):
            noise = np.random.default_rng(ctx.seed).random(data.n_items).astype(np.float32)
            part = dataclasses.replace(part, item_biases=noise)
        return part


def test_an_algorithm_far_below_the_best_so_far_is_not_tuned_further() -> None:
    data = make_tenant(seed=8)
    weak = ShuffledThenPopular()
    result = train_auto(TrainContext(data, seed=8, budget_s=600), candidates=(weak.name,), algorithms={weak.name: weak})
    assert weak.fits == 1  # only its first candidate (not chosen: no refit); without the rule all three
    dropped = result.model.info["auto"]["dropped_early"]
    assert list(dropped) == [weak.name] and "2 of 3 candidates not tried" in dropped[weak.name]
    assert result.choice == "popular"
