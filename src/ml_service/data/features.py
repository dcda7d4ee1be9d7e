"""User and item feature matrices per mode (spec §6.1-6.3): categorical spreads, competencies, tags, TF-IDF text."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ml_service.data.tenant import TenantData
from ml_service.stage_clock import timed

MODES = ("mf", "partial", "hybrid")

# At most this many of the most frequent values of each spread column become features (spec §6.1).
MAX_VALUES_PER_SPREAD_COLUMN = 30
# Single-valued user columns, then the `|`-joined ones, in the order their features appear (spec §6.1).
SPREAD_COLUMNS: tuple[str, ...] = ("lang", "country", "interests", "asp_position", "positions", "organisations", "badges")
# Prefixes that keep text and identity feature names apart from structured names such as `topic_x`.
TEXT_PREFIX = "text:"
IDENTITY_PREFIX = "id:"


@dataclass(frozen=True)
class FeatureSet:
    """Side-feature matrices of one tenant for one mode; None means "identity only" (mf)."""

    user: sp.csr_matrix | None  # (n_users, n_user_features) float32
    item: sp.csr_matrix | None  # (n_items, n_item_features) float32
    user_names: list[str]
    item_names: list[str]


@timed("features")  # the pipeline's seconds per stage (stage_clock.py)
def build_features(data: TenantData, mode: str, *, identity: bool = False) -> FeatureSet:
    """Features for `mode` (mf | partial | hybrid); identity=True appends one identity column per user/item.

    Column order: structured features, then (hybrid) TF-IDF text terms named `text:<term>`, then (identity=True)
    one column per user/item named `id:<id>`. mf is identity by definition and returns None/None.
    """
    if mode not in MODES:
        raise ValueError(f"unknown feature mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "mf":
        return FeatureSet(None, None, [], [])

    user, user_names = _user_structured(data)
    item, item_names = _item_structured(data)
    if mode == "hybrid":
        from ml_service.data.text import tfidf_matrix

        user_text, user_terms = tfidf_matrix(user_texts(data))
        item_text, item_terms = tfidf_matrix(list(data.items.documents))
        user = _hstack([user, user_text], data.n_users)
        item = _hstack([item, item_text], data.n_items)
        user_names += [TEXT_PREFIX + term for term in user_terms]
        item_names += [TEXT_PREFIX + term for term in item_terms]
    if identity:
        user = _hstack([user, sp.identity(data.n_users, np.float32, format="csr")], data.n_users)
        item = _hstack([item, sp.identity(data.n_items, np.float32, format="csr")], data.n_items)
        user_names += [IDENTITY_PREFIX + uid for uid in data.users.ids]
        item_names += [IDENTITY_PREFIX + iid for iid in data.items.ids]
    return FeatureSet(user, item, user_names, item_names)


@timed("features")
def item_content_vectors(data: TenantData, dim: int = 128) -> np.ndarray:
    """(n_items, <=dim) float32 L2-normalised content vectors (tags + document TF-IDF), for cold-item similarity.

    Tags and text are each L2-normalised per row before being joined, so neither block dominates; when the
    joined matrix is wider than `dim` it is reduced by a seeded TruncatedSVD. Items with neither tags nor text
    get a zero vector (they are similar to nothing).
    """
    from ml_service.data.text import tfidf_matrix

    n_items = data.n_items
    tags = _l2_rows(sp.csr_matrix(data.items.tags, dtype=np.float32)) if data.items.tag_names else None
    text, _ = tfidf_matrix(list(data.items.documents))
    blocks = [b for b in (tags, text) if b is not None and b.shape[1] > 0]
    if n_items == 0 or not blocks:
        return np.zeros((n_items, 0), np.float32)
    content = sp.hstack(blocks, format="csr", dtype=np.float32)
    if content.shape[1] > dim and min(content.shape) > 1:
        from sklearn.decomposition import TruncatedSVD

        n_components = min(dim, content.shape[1] - 1, n_items - 1) if n_items > 1 else 1
        vectors = TruncatedSVD(n_components=max(n_components, 1), random_state=0).fit_transform(content)
    else:
        vectors = content.toarray()
    vectors = vectors.astype(np.float32, copy=False)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors


def user_side_matrix(data: TenantData) -> sp.csr_matrix:
    """(n_users, n_features) float32 structured user features (spreads + competencies), for cold-start users.

    The same columns, in the same order, as the user matrix of build_features(data, "partial").
    """
    return _user_structured(data)[0]


def user_texts(data: TenantData) -> list[str]:
    """The text of each user (spec §6.1): city + space + description; a missing part is left out, not `nan`."""
    return [f"{city} {desc}".strip() for city, desc in zip(data.users.city, data.users.description)]


def top_values(values: Sequence[str], limit: int = MAX_VALUES_PER_SPREAD_COLUMN) -> list[str]:
    """The `limit` most frequent non-empty values, most frequent first; ties go to the smaller string."""
    kept = [v for v in values if v]
    if not kept:
        return []
    uniques, counts = np.unique(np.asarray(kept, dtype=object), return_counts=True)
    # np.unique sorts the values, so a stable sort on the count alone breaks ties by value.
    order = np.argsort(-counts, kind="stable")[:limit]
    return [str(uniques[i]) for i in order]


def _user_structured(data: TenantData) -> tuple[sp.csr_matrix, list[str]]:
    users = data.users
    n = len(users)
    blocks: list[sp.csr_matrix] = []
    names: list[str] = []
    for column in SPREAD_COLUMNS:
        values = getattr(users, column)
        per_row = [[v] if v else [] for v in values] if column in ("lang", "country") else values
        block, values_kept = _spread(per_row, n)
        blocks.append(block)
        names += [f"{column}_{v}" for v in values_kept]
    competencies, competency_ids = _competencies(users.competencies, n)
    blocks.append(competencies)
    names += [f"competencies_scale_{cid}" for cid in competency_ids]
    return _hstack(blocks, n), names


def _spread(per_row: Sequence[Sequence[str]], n_rows: int) -> tuple[sp.csr_matrix, list[str]]:
    """One binary column per kept value (top 30 by frequency); a value repeated in a row still gives 1."""
    lengths = np.fromiter((len(values) for values in per_row), dtype=np.int64, count=n_rows)
    flat = list(itertools.chain.from_iterable(per_row))
    kept = top_values(flat)
    if not kept:
        return sp.csr_matrix((n_rows, 0), dtype=np.float32), []
    column_of = {value: i for i, value in enumerate(kept)}
    columns = np.fromiter((column_of.get(v, -1) for v in flat), dtype=np.int64, count=len(flat))
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), lengths)
    hit = columns >= 0
    matrix = sp.csr_matrix(
        (np.ones(int(hit.sum()), np.float32), (rows[hit], columns[hit])), shape=(n_rows, len(kept))
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix, kept


def _competencies(per_row: Sequence[dict[str, float]], n_rows: int) -> tuple[sp.csr_matrix, list[str]]:
    """`competencies_scale_<id>` columns holding proficiency divided by the column's largest value.

    Deliberate choice: the reference feeds raw sort-order values (e.g. 45) to LightFM next to 0/1 columns, so a
    single competency outweighs every other feature of the user. Dividing by the column maximum keeps 0 as
    "missing", keeps the order within a competency, and puts every column in [0, 1] like the binary ones.
    """
    lengths = np.fromiter((len(c) for c in per_row), dtype=np.int64, count=n_rows)
    ids = sorted({cid for c in per_row for cid in c}, key=_natural_key)
    if not ids:
        return sp.csr_matrix((n_rows, 0), dtype=np.float32), []
    column_of = {cid: i for i, cid in enumerate(ids)}
    total = int(lengths.sum())
    columns = np.fromiter((column_of[cid] for c in per_row for cid in c), dtype=np.int64, count=total)
    values = np.fromiter((v for c in per_row for v in c.values()), dtype=np.float64, count=total)
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), lengths)
    column_max = np.zeros(len(ids))
    np.maximum.at(column_max, columns, np.abs(values))
    scale = np.divide(1.0, column_max, out=np.zeros_like(column_max), where=column_max > 0)
    matrix = sp.csr_matrix(
        ((values * scale[columns]).astype(np.float32), (rows, columns)), shape=(n_rows, len(ids))
    )
    matrix.eliminate_zeros()
    return matrix, ids


def _item_structured(data: TenantData) -> tuple[sp.csr_matrix, list[str]]:
    items = data.items
    n = len(items)
    type_index = np.asarray(items.type_index, dtype=np.int64)
    one_hot = sp.csr_matrix(
        (np.ones(n, np.float32), (np.arange(n), type_index)), shape=(n, len(items.type_names))
    )
    tags = sp.csr_matrix(items.tags, dtype=np.float32) if items.tag_names else sp.csr_matrix((n, 0), dtype=np.float32)
    return _hstack([one_hot, tags], n), list(items.type_names) + list(items.tag_names)


def _hstack(blocks: Sequence[sp.spmatrix], n_rows: int) -> sp.csr_matrix:
    blocks = [b for b in blocks if b.shape[1] > 0]
    if not blocks:
        return sp.csr_matrix((n_rows, 0), dtype=np.float32)
    return sp.csr_matrix(sp.hstack(blocks, format="csr", dtype=np.float32))


def _l2_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ matrix, dtype=np.float32)


def _natural_key(value: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order, then any other ids in string order."""
    return (0, int(value), value) if value.isdigit() else (1, 0, value)
