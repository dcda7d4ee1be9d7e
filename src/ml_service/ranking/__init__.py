"""The one ranking of items: /user-items and /similar-items call it for one learner or item, evaluation and batch for many.

Where to change what: an item filter (e.g. items Totara marks invisible) goes into `select.listable`, and every
list obeys it (serving's cached candidates, the evaluation, both batch files); the seen-item policy is
`select.select_one` (one row) and `select.mark_seen` (many rows); the tie rule (score descending, then the lower
item index, also at the cut-off) is `select.top_positions` (one row) and `select.top_k_rows` (many rows). The
one-row and many-row forms are kept equal by tests (tests/test_ranking.py); the many-row forms exist for speed.
"""

from ml_service.ranking.select import (
    DEMOTE,
    EXCLUDE,
    LEGACY_BATCH_DEMOTION,
    REFERENCE_DEMOTION,
    SEEN_POLICIES,
    Lists,
    check_seen_policy,
    family_candidates,
    listable,
    model_families,
    top_k,
    type_candidates,
)
from ml_service.ranking.similar import rank_similar, similar
from ml_service.ranking.users import Scored, rank, rank_user, score

__all__ = [
    "DEMOTE", "EXCLUDE", "LEGACY_BATCH_DEMOTION", "REFERENCE_DEMOTION", "SEEN_POLICIES", "Lists", "Scored",
    "check_seen_policy", "family_candidates", "listable", "model_families", "rank", "rank_similar", "rank_user", "score", "similar",
    "top_k", "type_candidates",
]
