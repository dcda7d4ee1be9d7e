"""Each learner's latest interactions with their dates, kept in the model for the dashboard's "try it"."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ml_service.data.tenant import TenantData


def recent_interactions(data: TenantData, per_learner: int) -> sp.csr_matrix | None:
    """(n_users, n_items) float64 sparse matrix: the Unix time of each learner's `per_learner` latest interactions.

    Whatever the rating (the model's `positives` tells the rating-1 ones). None when `per_learner` is 0.
    """
    if per_learner <= 0:
        return None
    inter = data.interactions
    users = np.asarray(inter.user, dtype=np.int64)
    times = np.asarray(inter.timestamp, dtype=np.int64)
    order = np.lexsort((-times, users))  # by learner, newest first
    users_sorted = users[order]
    starts = np.searchsorted(users_sorted, users_sorted, side="left")
    keep = order[np.arange(len(order)) - starts < per_learner]
    return sp.csr_matrix(
        (times[keep].astype(np.float64), (users[keep], np.asarray(inter.item, dtype=np.int64)[keep])),
        shape=(data.n_users, data.n_items),
    )
