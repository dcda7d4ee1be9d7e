"""auto's choice under noise: a paired bootstrap over validation pairs; tied candidates go to the cheaper,
more deterministic one; the same data gives the same choice."""

from __future__ import annotations

import numpy as np

from ml_service.training.context import TrainContext
from ml_service.training.search import choose, clearly_better, paired_noise
from ml_service.training.auto import train_auto
from tests.synthetic import make_tenant


def _pairs(mean: float, n: int = 400, seed: int = 0) -> np.ndarray:
    return np.clip(np.random.default_rng(seed).normal(mean, 0.3, n), 0.0, 1.0)


def test_paired_noise_is_seeded_and_shrinks_with_more_pairs() -> None:
    a, b = _pairs(0.5, seed=1), _pairs(0.5, seed=2)
    assert paired_noise(a, b, seed=3) == paired_noise(a, b, seed=3) > 0
    big_a, big_b = _pairs(0.5, n=6400, seed=1), _pairs(0.5, n=6400, seed=2)
    assert paired_noise(big_a, big_b, seed=3) < paired_noise(a, b, seed=3) / 2
    assert paired_noise(a, a, seed=3) == 0.0  # a candidate against itself: no noise
    assert paired_noise(a, b[:10], seed=3) == 0.0  # not the same pairs: unknown


def test_a_tie_within_the_noise_goes_to_the_more_deterministic_candidate() -> None:
    base = _pairs(0.4, seed=5)
    pairs = {"popular": base * 0.5, "hybrid": base + 0.002, "ease": base, "als": base - 0.3}
    scores = {name: float(values.mean()) for name, values in pairs.items()}
    picked = choose(scores, pairs, {"hybrid": 10.0, "ease": 1.0}, baseline="popular", seed=0)
    assert picked.best == "hybrid" and picked.name == "hybrid"  # identical shift: zero noise, hybrid is clearly better
    swing = np.where(np.arange(base.size) % 2 == 0, 0.2, -0.2)  # a spread of 0.2 around a gain of 0.002
    noisy = dict(pairs, hybrid=base + swing + 0.002)
    scores["hybrid"] = float(noisy["hybrid"].mean())
    assert scores["hybrid"] > scores["ease"]
    picked = choose(scores, noisy, {"hybrid": 10.0, "ease": 1.0}, baseline="popular", seed=0)
    assert picked.best == "hybrid" and picked.name == "ease" and "ease" in picked.tied
    assert "als" not in picked.tied  # far below: not tied


def test_nothing_above_popular_serves_popular() -> None:
    base = _pairs(0.4)
    picked = choose({"popular": 0.4, "mf": 0.39}, {"popular": base, "mf": base - 0.01}, {}, baseline="popular", seed=0)
    assert picked.name == "popular"


def test_clearly_better_needs_more_than_one_standard_error() -> None:
    base = _pairs(0.4, seed=2)
    shifted = base + 0.05
    assert clearly_better(float(shifted.mean()), shifted, float(base.mean()), base, seed=0)[0]
    noisy = base + np.where(np.arange(base.size) % 2 == 0, 0.3, -0.3) + 0.001
    assert not clearly_better(float(noisy.mean()), noisy, float(base.mean()), base, seed=0)[0]


def test_the_same_data_gives_the_same_choice() -> None:
    data = make_tenant(seed=3)
    runs = [train_auto(TrainContext(data, threads=1, seed=3, budget_s=600), candidates=("ease", "knn", "als")) for _ in range(2)]
    assert runs[0].choice == runs[1].choice
    assert runs[0].model.info["auto"]["noise"] == runs[1].model.info["auto"]["noise"]
