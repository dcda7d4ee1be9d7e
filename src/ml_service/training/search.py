"""`auto`'s choice under validation noise: a paired bootstrap over validation learners, and the cheaper model on a tie.

Three runs of the old search on identical MovieLens-100k data chose three different blends whose validation
NDCG@10 lay within 0.003 of each other: it spent its time separating candidates that noise cannot separate.
Here every candidate's per-(learner, type) NDCG@10 on the shared hold-out is kept; the standard error of the
difference between two candidates is estimated by resampling those pairs (seeded, so the same data gives the
same answer), and a candidate within `Z` standard errors of the best counts as tied. Among tied candidates the
most deterministic and cheapest wins (PREFERENCE, then measured seconds), and a blend must beat its best single
model by more than the noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

BOOTSTRAP_SAMPLES = 200
Z = 1.0  # "within the noise": less than one standard error of the paired difference
# Closed forms first (the same answer on the same data, one fit), then seeded iterative solvers, then the
# LightFM modes (Hogwild SGD: not bit-reproducible with several threads, and the most expensive).
PREFERENCE: tuple[str, ...] = ("popular", "ease", "edlae", "knn", "als", "lda", "mf", "partial", "hybrid")


def pairs_array(pairs: Sequence[np.ndarray]) -> np.ndarray:
    """One float array of the per-pair NDCG values that metrics.evaluate(pairs_out=...) collected."""
    return np.concatenate(list(pairs)) if len(pairs) else np.zeros(0)


def paired_noise(first: np.ndarray, second: np.ndarray, *, seed: int, samples: int = BOOTSTRAP_SAMPLES) -> float:
    """Bootstrap standard error of mean(first) - mean(second) over the same validation pairs (0 if unknown)."""
    if first.size == 0 or first.shape != second.shape:
        return 0.0
    diff = first - second
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    for i in range(samples):  # one row at a time: an index matrix of samples x pairs would be large on big tenants
        means[i] = diff[rng.integers(0, diff.size, diff.size)].mean()
    return float(means.std(ddof=1))


@dataclass
class Choice:
    """The chosen candidate, why, and the tie set it was chosen from."""

    name: str
    reason: str
    best: str
    tied: dict[str, float]  # name -> standard error of its difference to the best


def choose(
    scores: Mapping[str, float],
    pairs: Mapping[str, np.ndarray],
    seconds: Mapping[str, float],
    *,
    baseline: str,
    seed: int,
) -> Choice:
    """The candidate to serve: the best by validation score unless a more deterministic or cheaper one is tied.

    Only candidates scoring strictly above `baseline` compete (otherwise the baseline is served, as before).
    """
    floor = scores[baseline]
    above = [name for name, score in scores.items() if name != baseline and score > floor]
    if not above:
        return Choice(baseline, f"no candidate validated above {baseline}", baseline, {})
    best = max(above, key=lambda name: (scores[name], -_rank(name)))
    tied: dict[str, float] = {}
    for name in above:
        if name == best or name not in pairs or best not in pairs:
            continue
        noise = paired_noise(pairs[best], pairs[name], seed=seed)
        if scores[best] - scores[name] <= Z * noise:
            tied[name] = round(noise, 6)
    if not tied:
        return Choice(best, "best validation score, clear of the others", best, {})
    name = min([best, *tied], key=lambda n: (_rank(n), seconds.get(n, 0.0), n))
    if name == best:
        return Choice(best, f"best validation score; tied within the noise with {', '.join(sorted(tied))}", best, tied)
    return Choice(name, f"within the noise of {best} ({scores[best] - scores[name]:.4f} <= {Z:g} x {tied[name]:.4f}), "
                        "more deterministic or cheaper", best, tied)


def clearly_better(score: float, pairs: np.ndarray, than_score: float, than_pairs: np.ndarray, *, seed: int) -> tuple[bool, float]:
    """(score beats than_score by more than Z bootstrap standard errors of the paired difference, that error)."""
    noise = paired_noise(pairs, than_pairs, seed=seed)
    return score - than_score > Z * noise, noise


def _rank(name: str) -> int:
    return PREFERENCE.index(name) if name in PREFERENCE else len(PREFERENCE)
