"""A seeded in-memory tenant with known structure (user groups prefer one item topic), for tests and benchmarks."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ml_service.data.tenant import ITEM_TYPES, TYPE_INDEX, Interactions, Items, TenantData, Users

NOW = 1_700_000_000  # newest possible timestamp (Unix seconds); interactions go back `days` from here
TOPIC_WORDS = (
    ("leadership", "management", "coaching", "feedback", "strategy"),
    ("python", "programming", "software", "testing", "databases"),
    ("safety", "hazard", "compliance", "equipment", "inspection"),
    ("marketing", "customers", "branding", "campaign", "advertising"),
    ("finance", "budget", "accounting", "invoices", "forecasting"),
    ("design", "sketching", "typography", "colour", "layout"),
)


def make_tenant(
    n_users: int = 200,
    n_items: int = 120,
    n_groups: int = 4,
    *,
    seed: int = 0,
    per_user: int = 10,
    in_group: float = 0.85,
    competencies: bool = False,
    cold_users: int = 0,
    item_types: tuple[str, ...] = ("engage_article", "container_course", "totara_playlist"),
    days: int = 90,
    tenant: str = "0",
) -> TenantData:
    """A tenant where user u belongs to group u % n_groups (its position) and item j has topic j % n_groups.

    Each user interacts with about `per_user` items: a fraction `in_group` drawn from their group's topic
    (Zipf-like popularity inside the topic), the rest uniformly. Own-topic interactions are positive (rating 1)
    with probability 0.8, others 0.3. Item types cycle so every topic has items of every type in `item_types`.
    Users and items carry side features that reveal the structure: position `position<g>`, competency
    `<100+g>` (when `competencies`), a description and documents of topic words, tag `topic_t<g>`.
    The last `cold_users` users have no interactions. Same arguments, same tenant.
    """
    if not 1 <= n_groups <= len(TOPIC_WORDS):
        raise ValueError(f"n_groups must be in 1..{len(TOPIC_WORDS)}, got {n_groups}")
    rng = np.random.default_rng(seed)
    group = np.arange(n_users) % n_groups
    topic = np.arange(n_items) % n_groups
    type_index = np.array([TYPE_INDEX[item_types[(j // n_groups) % len(item_types)]] for j in range(n_items)], np.int8)

    users = Users(
        ids=[str(u + 2) for u in range(n_users)],  # Totara user ids are numeric; 1 is the guest
        lang=["en"] * n_users,
        city=["Wellington" if u % 2 else "Auckland" for u in range(n_users)],
        country=["NZ"] * n_users,
        interests=[[str(rng.integers(1, 6))] for _ in range(n_users)],  # noise
        asp_position=[[] for _ in range(n_users)],
        positions=[[f"position{g}"] for g in group],
        organisations=[[f"org{rng.integers(1, 4)}"] for _ in range(n_users)],  # noise
        badges=[[] for _ in range(n_users)],
        competencies=[{str(100 + g): float(rng.integers(1, 5))} if competencies else {} for g in group],
        description=[" ".join(rng.choice(TOPIC_WORDS[g], size=3)) for g in group],
    )
    items = Items(
        ids=[f"{ITEM_TYPES[int(t)]}{j + 1}" for j, t in enumerate(type_index)],
        type_index=type_index,
        tag_names=[f"topic_t{g}" for g in range(n_groups)],
        tags=sp.csr_matrix((np.ones(n_items, np.float32), (np.arange(n_items), topic)), shape=(n_items, n_groups)),
        documents=[f"Course {j + 1} " + " ".join(rng.choice(TOPIC_WORDS[t], size=4)) for j, t in enumerate(topic)],
    )

    # Inside a topic, items are ranked by a fixed random permutation with Zipf-like weights.
    weight = np.zeros(n_items)
    for g in range(n_groups):
        members = np.flatnonzero(topic == g)
        weight[rng.permutation(members)] = 1.0 / np.arange(1, members.size + 1) ** 0.8
    rows_u: list[np.ndarray] = []
    rows_i: list[np.ndarray] = []
    for u in range(n_users - cold_users):
        own = np.where(topic == group[u], weight, 0.0)
        p = in_group * own / own.sum() + (1 - in_group) / n_items
        count = min(n_items, max(2, int(rng.poisson(per_user))))
        chosen = rng.choice(n_items, size=count, replace=False, p=p)
        rows_u.append(np.full(count, u, np.int32))
        rows_i.append(chosen.astype(np.int32))
    user = np.concatenate(rows_u) if rows_u else np.zeros(0, np.int32)
    item = np.concatenate(rows_i) if rows_i else np.zeros(0, np.int32)
    own_topic = topic[item] == group[user]
    rating = (rng.random(user.size) < np.where(own_topic, 0.8, 0.3)).astype(np.int8)
    timestamp = NOW - rng.integers(0, days * 86400, size=user.size).astype(np.int64)
    return TenantData(tenant, users, items, Interactions(user, item, rating, timestamp))

