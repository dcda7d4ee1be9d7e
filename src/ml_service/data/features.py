"""User and item feature matrices per mode (spec §6.1-6.3): categorical spreads, competencies, tags, TF-IDF text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ml_service.data.tenant import TenantData

MODES = ("mf", "partial", "hybrid")


@dataclass(frozen=True)
class FeatureSet:
    """Side-feature matrices of one tenant for one mode; None means "identity only" (mf)."""

    user: sp.csr_matrix | None  # (n_users, n_user_features) float32
    item: sp.csr_matrix | None  # (n_items, n_item_features) float32
    user_names: list[str]
    item_names: list[str]


def build_features(data: TenantData, mode: str, *, identity: bool = False) -> FeatureSet:
    """Features for `mode` (mf | partial | hybrid); identity=True appends one identity column per user/item."""
    raise NotImplementedError("being written: see the ingest issue")


def item_content_vectors(data: TenantData, dim: int = 128) -> np.ndarray:
    """(n_items, <=dim) float32 L2-normalised content vectors (tags + document TF-IDF), for cold-item similarity."""
    raise NotImplementedError("being written: see the ingest issue")


def user_side_matrix(data: TenantData) -> sp.csr_matrix:
    """(n_users, n_features) float32 structured user features (spreads + competencies), for cold-start users."""
    raise NotImplementedError("being written: see the ingest issue")
