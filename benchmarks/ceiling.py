"""NDCG@10 ceiling of synthetic-20k: scorers that know the generator's hidden parameters, on the benchmark's split.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/ceiling.py

Rebuilds the generator's hidden world (user topic preferences, item topics and popularity, user activity) for the
benchmark seed, checks it reproduces the exported files exactly, then evaluates with training/metrics.evaluate on
the split quality.py uses (holdout_split(data, 0.2, seed=2026, protocol)):

- oracle: P(next draw of u is i) x P(rating 1 | u, i) from the true parameters, as a rank-24 factor model
  (user side: per topic and course/non-course, item side: popularity in its (topic, course) column).
- oracle-exclude-seen: the same scores, but every training interaction (rating 0 too) is excluded; evaluate only
  excludes training positives, and a pair the generator drew once is never drawn again.
- oracle-bayes: the posterior P(i is a held-out positive | i not in u's training data) under the full process
  (unique pairs, per-user activity, subsampling): q (1 - exp(-lambda_u p_ui)) r_ui h / (1 - A + A r_ui h).
  Dense (not low-rank): the scorer no model could beat on this split up to sampling noise.
- counts-a<alpha>: true item side, each user's preference estimated from their training interactions' topics,
  smoothed towards the mean preference with a Dirichlet prior of strength alpha.
- posterior / posterior-features: true item side, the user's preference as the posterior mean under the
  generator's own prior (a position topic 0.5, an organisation topic 0.2, a personal topic 0.26) given the
  training interactions' topics and ratings; "-features" also knows the position's and organisation's topics,
  which the user_data columns reveal (positions, organisations) and a feature model can learn. Each also as
  "-exclude-seen" (training rating-0 pairs excluded too, as for the oracle).
- popular: registry "popular" tuned and fitted as quality.py does (a check that this harness matches it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from ml_service.data.tenant import ITEM_TYPES, TenantData  # noqa: E402
from ml_service.demo import generate  # noqa: E402
from ml_service.models.parts import replace_arrays
from ml_service.models.base import FACTORS, TrainedModel, model_for  # noqa: E402
from ml_service.models.popular import popularity_scores, positives_matrix, warm_items  # noqa: E402
from ml_service.training.context import TrainContext
from ml_service.training.split import Split  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SPLIT_SEED = 2026  # quality.py's
SEED, USERS, ITEMS, INTERACTIONS = 7, 20_000, 3_000, 500_000  # datasets.dataset("synthetic-20k")
HOLDOUT = 0.2
BY_TOPIC = 0.8  # share of draws that pick an item inside the drawn topic (generate._sample_interactions)
RATING_BASE, RATING_MATCH = 0.1, 0.7  # P(rating 1) = base + match * preference[topic] / max(preference)
PROFILE = (0.5, 0.2, 0.26)  # weights of the position, organisation and personal topics (generate._make_users)
BASE_WEIGHT = 0.04
METRIC_NAMES = ("ndcg@10", "recall@10", "precision@10", "hit_rate@10", "auc")


@dataclass
class Hidden:
    """The generator's hidden world for one seed, plus what is needed to replay its sampling."""

    world: generate._World
    sampled: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # (user, item, rating, timestamp), world indices
    position_topic: np.ndarray  # (n_positions,) topic of each position
    position: np.ndarray  # (n_users,) position of each user
    org_topic: np.ndarray
    org: np.ndarray
    activity: np.ndarray  # (n_users,) lognormal activity weights
    draws: int  # draws made before deduplication
    unique_pairs: int  # distinct (user, item) pairs among the first block's draws (before subsampling)


def rebuild(seed: int, users: int, items: int, interactions: int) -> Hidden:
    """The hidden world exactly as generate_export(seed=seed, ..., tenants=0) built it."""
    world = generate._build_world(seed, users, items, 0)
    sampled = generate._sample_interactions(np.random.default_rng([seed, 1]), world, interactions)
    # _build_world starts with _make_users on a fresh default_rng(seed): replay it for the latent profile.
    _, _, preference, _, position, org, personal, position_topic = generate._make_users(
        np.random.default_rng(seed), users, 0
    )
    org_topic = _replay_org_topic(seed, users)
    if not np.array_equal(preference, world.preference) or not np.array_equal(
        _profile_preference(position_topic[position], org_topic[org], personal), world.preference
    ):
        raise SystemExit("replayed _make_users does not reproduce the world's preference: generate.py changed")
    draws, unique_pairs, activity = _replay_first_block(seed, world, interactions)
    return Hidden(world, sampled, position_topic, position, org_topic, org, activity, draws, unique_pairs)


def _replay_org_topic(seed: int, n_users: int) -> np.ndarray:
    """The organisations' topics: _make_users' rng calls up to its org_topic permutation (not returned by it)."""
    rng = np.random.default_rng(seed)
    n_topics = len(generate.TOPIC_NAMES)
    rng.integers(1, 3, n_users)
    shares = np.array([lang[2] for lang in generate.LANGUAGES])
    rng.choice(len(generate.LANGUAGES), n_users, p=shares / shares.sum())
    rng.permutation(np.arange(max(n_topics * 3, 12)) % n_topics)
    return rng.permutation(np.arange(max(n_topics * 2, 8)) % n_topics)


def _profile_preference(position_topic: np.ndarray, org_topic: np.ndarray, personal: np.ndarray) -> np.ndarray:
    """float32 preferences from each user's (position, organisation, personal) topics, as _make_users builds them."""
    n_topics = len(generate.TOPIC_NAMES)
    preference = np.full((position_topic.size, n_topics), BASE_WEIGHT / n_topics, np.float64)
    rows = np.arange(position_topic.size)
    for topics, weight in zip((position_topic, org_topic, personal), PROFILE):
        np.add.at(preference, (rows, topics), weight)
    preference /= preference.sum(axis=1, keepdims=True)
    return preference.astype(np.float32)


def _replay_first_block(seed: int, world: generate._World, n_interactions: int) -> tuple[int, int, np.ndarray]:
    """(draws, distinct pairs, activity) of _sample_interactions' first block, replaying its rng calls.

    When the distinct pairs are at least n_interactions, that block was the only one (oracle-bayes relies on it).
    """
    rng = np.random.default_rng([seed, 1])
    n_users, n_topics = world.preference.shape
    n_items = len(world.item_ids)
    activity = rng.lognormal(0.0, 1.0, n_users)
    activity_cdf = np.cumsum(activity / activity.sum())
    order, cumulative, low, high = generate._topic_segments(world)
    draws = min(int(n_interactions * 1.3) + 16, 1 << 20)
    user = np.minimum(np.searchsorted(activity_cdf, rng.random(draws) * activity_cdf[-1]), n_users - 1)
    topic = (rng.random(draws)[:, None] > np.cumsum(world.preference, axis=1)[user]).sum(axis=1).clip(0, n_topics - 1)
    by_topic = rng.random(draws) < BY_TOPIC
    target = np.where(by_topic, low[topic] + rng.random(draws) * (high[topic] - low[topic]),
                      rng.random(draws) * cumulative[-1])
    item = order[np.minimum(np.searchsorted(cumulative, target, side="right"), n_items - 1)]
    return draws, int(np.unique(user.astype(np.int64) * n_items + item).size), activity


def match_tenant(hidden: Hidden, data: TenantData) -> tuple[np.ndarray, np.ndarray]:
    """(world user of each tenant user, world item of each tenant item); fails loudly unless the export matches."""
    world = hidden.world
    world_users = {str(uid): u for u, uid in enumerate(world.user_ids.tolist())}
    world_items = {iid: i for i, iid in enumerate(world.item_ids)}
    if list(data.users.ids) != [str(u) for u in world.user_ids.tolist()]:
        raise SystemExit("tenant users differ from the rebuilt world's (ids or order): the export is not this seed's")
    if list(data.items.ids) != list(world.item_ids):
        raise SystemExit("tenant items differ from the rebuilt world's (ids or order): the export is not this seed's")
    user_map = np.array([world_users[uid] for uid in data.users.ids])
    item_map = np.array([world_items[iid] for iid in data.items.ids])
    if not np.array_equal(np.asarray(data.items.type_index), world.item_type[item_map]):
        raise SystemExit("tenant item types differ from the rebuilt world's")
    inter = data.interactions
    n_items = len(world.item_ids)
    loaded = user_map[inter.user].astype(np.int64) * n_items + item_map[inter.item]
    user, item, rating, timestamp = hidden.sampled
    exported = user * n_items + item
    order_loaded, order_exported = np.argsort(loaded), np.argsort(exported)
    same = (
        loaded.size == exported.size
        and np.array_equal(loaded[order_loaded], exported[order_exported])
        and np.array_equal(inter.rating[order_loaded], rating[order_exported])
        and np.array_equal(inter.timestamp[order_loaded], timestamp[order_exported])
    )
    if not same:
        raise SystemExit(
            f"the rebuilt interactions ({exported.size}) differ from the export's ({loaded.size}): pairs, ratings "
            "or timestamps"
        )
    return user_map, item_map


# --- scores ---------------------------------------------------------------------------------------------------


def _topic_terms(world: generate._World) -> tuple[np.ndarray, float]:
    """(popularity mass per topic, total popularity mass)."""
    n_topics = world.preference.shape[1]
    return np.bincount(world.item_topic, weights=world.popularity, minlength=n_topics), float(world.popularity.sum())


def user_side(preference: np.ndarray, world: generate._World) -> np.ndarray:
    """(n, 2 * n_topics): per topic t, [P(draw | topic t item) / popularity x P(rating 1) for non-courses, courses].

    Scaled by the total popularity mass so values are O(1) in float32.
    """
    mass, total = _topic_terms(world)
    draw = (BY_TOPIC * preference / mass + (1 - BY_TOPIC) / total) * total
    rated = RATING_BASE + RATING_MATCH * preference / preference.max(axis=1, keepdims=True)
    return np.stack([draw * rated, draw], axis=2).reshape(preference.shape[0], -1)


def item_side(world: generate._World) -> np.ndarray:
    """(n_items, 2 * n_topics): the item's popularity in its (topic, is-course) column."""
    factors = np.zeros((len(world.item_ids), 2 * world.preference.shape[1]))
    column = 2 * world.item_topic + (world.item_type == generate.COURSE)
    factors[np.arange(len(world.item_ids)), column] = world.popularity
    return factors


def factor_model(
    name: str, data: TenantData, split: Split, user_factors: np.ndarray, item_factors: np.ndarray
) -> TrainedModel:
    """A FACTORS TrainedModel over the tenant, with the train part's positives and popularity as evaluate expects."""
    popularity = popularity_scores(split.train, data.n_items, float("inf"))
    user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
    model = model_for(
        data, name, kind=FACTORS,
        user_factors=np.zeros_like(user_factors),
        item_factors=np.ascontiguousarray(item_factors, dtype=np.float32),
        positives=positives_matrix(data, split.train),
        user_cold=np.zeros(data.n_users, dtype=bool),
        popularity=popularity,
        item_warm=warm_items(data, split.train),
    )
    # Not a fitted part: the scores may hold -inf for excluded items, which a part refuses when built.
    return dataclasses.replace(model, scoring=replace_arrays(model.scoring, user_factors=user_factors))


def dense_model(name: str, data: TenantData, split: Split, scores: np.ndarray) -> TrainedModel:
    """Arbitrary (n_users, n_items) scores as a FACTORS model: the scores as user factors, identity item factors."""
    return factor_model(name, data, split, scores, np.eye(data.n_items, dtype=np.float32))


def exclude_training(scores: np.ndarray, split: Split) -> np.ndarray:
    """Scores with every training pair (rating 0 too) pushed below all others (finite, so evaluate batches them)."""
    scores[split.train.user, split.train.item] = -1.0
    return scores


def oracle_scores(hidden: Hidden, user_map: np.ndarray, item_map: np.ndarray) -> np.ndarray:
    """(tenant users, tenant items) P(draw) x P(rating 1), scaled; equals oracle factors' product."""
    world = hidden.world
    return user_side(world.preference[user_map], world) @ item_side(world)[item_map].T


def bayes_scores(hidden: Hidden, user_map: np.ndarray, item_map: np.ndarray, split: Split) -> np.ndarray:
    """P(i is a held-out positive of u | i is not in u's training data), under the generator's process.

    Each user gets Poisson(lambda_u) draws (lambda_u = draws x activity share), a pair is kept when drawn at
    least once and survives the uniform subsampling to n_interactions (q); then it is positive with r_ui and
    a positive is held out with h = 0.2. Given "not in train", the pair is in test with A r h / (1 - A + A r h),
    A = q (1 - exp(-lambda_u p_ui)).
    """
    world = hidden.world
    n_interactions = hidden.sampled[0].size
    if hidden.unique_pairs < n_interactions:
        raise SystemExit("the generator needed more than one block of draws: the activity model here does not apply")
    q = n_interactions / hidden.unique_pairs
    lam = hidden.draws * hidden.activity / hidden.activity.sum()
    mass, total = _topic_terms(world)
    preference = world.preference[user_map].astype(np.float64)
    topic = world.item_topic[item_map]
    course = world.item_type[item_map] == generate.COURSE
    popularity = world.popularity[item_map]
    scores = np.empty((user_map.size, item_map.size), dtype=np.float32)
    for start in range(0, user_map.size, 2000):
        rows = slice(start, start + 2000)
        pref = preference[rows][:, topic]
        draw = popularity * (BY_TOPIC * pref / mass[topic] + (1 - BY_TOPIC) / total)
        rated = np.where(course, 1.0, RATING_BASE + RATING_MATCH * pref / preference[rows].max(axis=1, keepdims=True))
        kept = q * -np.expm1(-lam[user_map[rows], None] * draw)
        scores[rows] = kept * rated * HOLDOUT / (1 - kept + kept * rated * HOLDOUT)
    return exclude_training(scores, split)


def topic_counts(hidden: Hidden, item_map: np.ndarray, split: Split, n_users: int) -> tuple[np.ndarray, ...]:
    """Per tenant user and topic, from training interactions: (all, non-course positives, non-course negatives)."""
    world = hidden.world
    n_topics = world.preference.shape[1]
    train = split.train
    world_item = item_map[train.item]
    topic = world.item_topic[world_item]
    non_course = world.item_type[world_item] != generate.COURSE

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(train.user[mask] * n_topics + topic[mask], minlength=n_users * n_topics).reshape(
            n_users, n_topics).astype(np.float64)

    every = np.ones(len(train), dtype=bool)
    return count(every), count(non_course & (train.rating == 1)), count(non_course & (train.rating == 0))


def smoothed_preference(counts: np.ndarray, prior: np.ndarray, alpha: float) -> np.ndarray:
    """Dirichlet-smoothed topic shares: (counts + alpha * prior) / (n + alpha)."""
    return (counts + alpha * prior) / (counts.sum(axis=1, keepdims=True) + alpha)


def posterior_preference(
    hidden: Hidden, user_map: np.ndarray, counts: tuple[np.ndarray, ...], known_profile: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(posterior weights (users, configurations), configurations' preferences): the posterior under the generator's prior given training topics and ratings.

    The prior: position topic, organisation topic and personal topic, each uniform over topics (independent;
    with known_profile the first two are the user's true ones, as the user_data columns reveal them).
    Likelihood per interaction: its item's topic (P = 0.8 preference + 0.2 popularity share) and, for
    non-courses, its rating (P(1) = 0.1 + 0.7 preference / max); the unique-pair constraint is ignored.
    """
    world = hidden.world
    n_topics = world.preference.shape[1]
    mass, total = _topic_terms(world)
    share = mass / total
    grid = np.array(np.meshgrid(*[np.arange(n_topics)] * 3, indexing="ij")).reshape(3, -1).T  # (T^3, 3)
    configs = np.full((grid.shape[0], n_topics), BASE_WEIGHT / n_topics)
    for column, weight in enumerate(PROFILE):
        np.add.at(configs, (np.arange(grid.shape[0]), grid[:, column]), weight)
    configs /= configs.sum(axis=1, keepdims=True)
    rated = RATING_BASE + RATING_MATCH * configs / configs.max(axis=1, keepdims=True)
    every, positives, negatives = counts
    log_like = (every @ np.log(BY_TOPIC * configs + (1 - BY_TOPIC) * share).T
                + positives @ np.log(rated).T + negatives @ np.log1p(-rated).T)  # (users, T^3)
    if known_profile:
        wu = user_map
        pos_t = hidden.position_topic[hidden.position[wu]]
        org_t = hidden.org_topic[hidden.org[wu]]
        allowed = (grid[None, :, 0] == pos_t[:, None]) & (grid[None, :, 1] == org_t[:, None])
        log_like = np.where(allowed, log_like, -np.inf)
    log_like -= log_like.max(axis=1, keepdims=True)
    weights = np.exp(log_like)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights, configs


def posterior_user_side(hidden: Hidden, weights: np.ndarray, configs: np.ndarray) -> np.ndarray:
    """Expected user factors under the posterior (the score is linear in them, so this is the Bayes ranking)."""
    return weights @ user_side(configs, hidden.world)


# --- evaluation -----------------------------------------------------------------------------------------------


def _row(name: str, model: TrainedModel, data: TenantData, split: Split, seconds: float, **extra: object) -> dict:
    from ml_service.training.metrics import evaluate

    metrics = evaluate(model, data, split)
    row = {"scorer": name, **{m: round(float(metrics[m]), 5) for m in METRIC_NAMES},
           "per_type_ndcg@10": {t: round(float(v["ndcg@10"]), 5) for t, v in metrics["per_type"].items()},
           "users": metrics["users"], "held_out": metrics["held_out"], "seconds": round(seconds, 1), **extra}
    print(f"  {name:32s} ndcg@10={row['ndcg@10']:.4f} recall@10={row['recall@10']:.4f} "
          f"precision@10={row['precision@10']:.4f} hit_rate@10={row['hit_rate@10']:.4f}", flush=True)
    return row


def run_protocol(protocol: str, hidden: Hidden, data: TenantData, user_map: np.ndarray, item_map: np.ndarray,
                 alphas: list[float], popular: bool) -> list[dict]:
    """Every scorer on one protocol's split."""
    from ml_service.training.split import holdout_split

    split = holdout_split(data, HOLDOUT, seed=SPLIT_SEED, protocol=protocol)
    world = hidden.world
    items = item_side(world)[item_map]
    rows: list[dict] = []

    started = time.monotonic()
    oracle_users = user_side(world.preference[user_map], world)
    rows.append(_row("oracle", factor_model("oracle", data, split, oracle_users, items), data, split,
                     time.monotonic() - started, rank=int(items.shape[1])))
    started = time.monotonic()
    scores = exclude_training((oracle_users @ items.T).astype(np.float32), split)
    rows.append(_row("oracle-exclude-seen", dense_model("oracle-exclude-seen", data, split, scores), data, split,
                     time.monotonic() - started))
    del scores
    started = time.monotonic()
    scores = bayes_scores(hidden, user_map, item_map, split)
    rows.append(_row("oracle-bayes", dense_model("oracle-bayes", data, split, scores), data, split,
                     time.monotonic() - started,
                     draws=hidden.draws, kept_share=round(hidden.sampled[0].size / hidden.unique_pairs, 5)))
    del scores

    counts = topic_counts(hidden, item_map, split, data.n_users)
    prior = world.preference.mean(axis=0).astype(np.float64)
    for alpha in alphas:
        started = time.monotonic()
        estimate = smoothed_preference(counts[0], prior, alpha)
        name = f"counts-a{alpha:g}"
        rows.append(_row(name, factor_model(name, data, split, user_side(estimate, world), items), data, split,
                         time.monotonic() - started, alpha=alpha))
    for known in (False, True):
        started = time.monotonic()
        weights, configs = posterior_preference(hidden, user_map, counts, known)
        name = "posterior-features" if known else "posterior"
        users = posterior_user_side(hidden, weights, configs)
        rows.append(_row(name, factor_model(name, data, split, users, items), data, split,
                         time.monotonic() - started))
        mean_preference = weights @ configs
        error = float(np.abs(mean_preference - world.preference[user_map]).sum(axis=1).mean())
        rows[-1]["mean_l1_error_of_preference"] = round(error, 4)
        started = time.monotonic()
        scores = exclude_training((users @ items.T).astype(np.float32), split)
        rows.append(_row(f"{name}-exclude-seen", dense_model(f"{name}-exclude-seen", data, split, scores), data, split,
                         time.monotonic() - started))
        del scores

    if popular:
        from ml_service.models import registry
        from ml_service.training.tune import fit_final, tune

        started = time.monotonic()
        train_data = dataclasses.replace(data, interactions=split.train)
        chosen = registry.get("popular")
        tuned = tune(chosen, TrainContext(train_data, threads=1, seed=42, deadline=time.monotonic() + 600, identity=False, protocol="latest"))
        model = fit_final(chosen, tuned.params, TrainContext(train_data, threads=1, seed=42, features=tuned.features))
        rows.append(_row("popular", model, data, split, time.monotonic() - started, params=tuned.params))
    for row in rows:
        row["protocol"] = protocol
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", nargs="+", default=["random", "latest"])
    parser.add_argument("--alphas", nargs="+", type=float, default=[1.0, 5.0, 20.0])
    parser.add_argument("--no-popular", action="store_true", help="skip the popular baseline")
    parser.add_argument("--out", type=Path, default=RESULTS / "ceiling.json")
    args = parser.parse_args(argv)

    from datasets import dataset

    from ml_service.data.load import load_tenant
    from ml_service.source.folder import FolderSource

    started = time.monotonic()
    folder = dataset("synthetic-20k")
    data = load_tenant(FolderSource(folder).fetch().files("0"))
    hidden = rebuild(SEED, USERS, ITEMS, INTERACTIONS)
    user_map, item_map = match_tenant(hidden, data)
    print(f"world rebuilt and matched to {folder} in {time.monotonic() - started:.0f} s: {data.n_users} users, "
          f"{data.n_items} items, {len(data.interactions)} interactions; {hidden.draws} draws, "
          f"{hidden.unique_pairs} distinct pairs", flush=True)
    rows: list[dict] = []
    for protocol in args.protocols:
        print(f"protocol {protocol}", flush=True)
        rows += run_protocol(protocol, hidden, data, user_map, item_map, args.alphas, not args.no_popular)
    quality = RESULTS / "quality.json"
    reference = []
    if quality.exists():
        reference = [
            {k: r.get(k) for k in ("protocol", "algorithm", "ndcg@10", "recall@10", "precision@10", "hit_rate@10")}
            for r in json.loads(quality.read_text())["results"]
            if r.get("dataset") == "synthetic-20k" and "ndcg@10" in r
        ]
    payload = {
        "command": "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/ceiling.py "
                   + " ".join(sys.argv[1:] if argv is None else argv),
        "dataset": "synthetic-20k", "split": {"fraction": HOLDOUT, "seed": SPLIT_SEED},
        "machine": {"python": platform.python_version()},
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "item_types": list(ITEM_TYPES),
        "results": rows,
        "quality_json_rows": reference,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.out} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
