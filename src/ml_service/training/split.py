"""Held-out splits of a tenant's interactions for evaluation and tuning (per-user, seeded, or by recency).

Protocol: a user qualifies when they have at least `min_positives` (default 2) positive (rating 1)
interactions; of those, round(fraction * n) but at least 1 and at most n - 1 are held out, so every qualifying
user keeps at least one positive in train and has at least one to find. Only positives are held out (they are
what a good recommendation should surface); users who do not qualify stay in train.
"random" picks the held-out positives with a seeded generator; rating-0 interactions stay in train. "latest" takes
the newest by timestamp (ties broken by item index), which measures "predict what comes next": a user's rating-0
interactions from the held-out period (at or after their oldest held-out positive) go to the test part too, as
the future is unknown when serving. Left in train, they told a recency-weighted model which session the held-out
positives came from: on MovieLens-1M (ratings below 4 are rating 0) the steepest history weights then scored far
higher on the hold-out than on the service's own validation split (benchmarks/recency_tradeoff.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml_service.data.tenant import Interactions, TenantData

PROTOCOLS = ("random", "latest")


@dataclass(frozen=True)
class Split:
    """Disjoint train and test interactions (for the hold-out splits, their union is the input)."""

    train: Interactions
    test: Interactions


def holdout_split(
    data: TenantData, fraction: float = 0.2, *, seed: int = 0, protocol: str = "random", min_positives: int = 2
) -> Split:
    """Hold out `fraction` of each qualifying user's positive interactions of `data` (see the module docstring)."""
    return split_interactions(data.interactions, fraction, seed=seed, protocol=protocol, min_positives=min_positives)


def validation_split(
    split: Split, fraction: float = 0.2, *, seed: int = 0, protocol: str = "random", min_positives: int = 2
) -> Split:
    """Split `split.train` again the same way: train/validation for tuning, leaving `split.test` untouched."""
    return split_interactions(split.train, fraction, seed=seed, protocol=protocol, min_positives=min_positives)


def split_interactions(
    interactions: Interactions,
    fraction: float = 0.2,
    *,
    seed: int = 0,
    protocol: str = "random",
    min_positives: int = 2,
) -> Split:
    """The per-user positive hold-out on any Interactions (see the module docstring)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1 (exclusive), got {fraction}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown split protocol {protocol!r}; expected one of {PROTOCOLS}")
    min_positives = max(2, int(min_positives))
    rng = np.random.default_rng(seed)
    positive = np.flatnonzero(interactions.rating == 1)
    # Group the positives by user; within a user, order by the protocol's preference (held out first).
    if protocol == "random":
        key = rng.random(positive.size)
    else:
        # newest first: negate the timestamp; ties by item index for determinism
        key = np.lexsort((interactions.item[positive], -interactions.timestamp[positive])).argsort().astype(np.float64)
    order = positive[np.lexsort((key, interactions.user[positive]))]
    users = interactions.user[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if order.size else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, order.size])
    held = np.zeros(len(interactions), dtype=bool)
    for start, count in zip(starts, counts):
        if count < min_positives:
            continue
        n_hold = min(count - 1, max(1, int(round(fraction * count))))
        held[order[start:start + n_hold]] = True
    if protocol == "latest" and held.any():
        held |= _held_out_period(interactions, held)
    return Split(interactions.subset(~held), interactions.subset(held))


def _held_out_period(interactions: Interactions, held: np.ndarray) -> np.ndarray:
    """Each user's non-positive interactions at or after the oldest of their held-out positives."""
    users = np.asarray(interactions.user)
    stamps = np.asarray(interactions.timestamp, dtype=np.float64)
    cutoff = np.full(int(users.max()) + 1, np.inf)
    np.minimum.at(cutoff, users[held], stamps[held])
    return (interactions.rating != 1) & (stamps >= cutoff[users])


def cold_user_split(data: TenantData, fraction: float = 0.2, *, seed: int = 0) -> Split:
    """Hold out ALL interactions of a seeded `fraction` of the users with at least one positive: new-user protocol.

    Used to measure cold start (users the model has never seen interact): their test items are their positives;
    their rating-0 interactions are in neither part.
    """
    inter = data.interactions
    candidates = np.unique(inter.user[inter.rating == 1])
    rng = np.random.default_rng(seed)
    n_cold = int(round(fraction * candidates.size))
    cold = rng.choice(candidates, size=n_cold, replace=False) if n_cold else candidates[:0]
    is_cold = np.isin(inter.user, cold)
    return Split(inter.subset(~is_cold), inter.subset(is_cold & (inter.rating == 1)))


def sample_test_users(split: Split, max_users: int, *, seed: int = 0) -> Split:
    """The same split with the test part cut to a seeded sample of at most `max_users` of its users (train kept).

    Early stopping scores a model after every epoch; on a large tenant a few thousand users estimate NDCG@10 as
    well as all of them for that purpose, at a fraction of the cost.
    """
    users = np.unique(split.test.user)
    if users.size <= max_users:
        return split
    chosen = np.random.default_rng(seed).choice(users, max_users, replace=False)
    return Split(split.train, split.test.subset(np.isin(split.test.user, chosen)))
