"""The overview's NDCG@10 history: every stored version once, new and pruned versions seen, a broken meta.json skipped."""

from __future__ import annotations

from pathlib import Path

from ml_service.api.admin.history import NdcgHistory
from ml_service.store import ModelStore
from tests.api.support import make_model


def model_with(ndcg: float, seed: int = 0):  # type: ignore[no-untyped-def]
    model = make_model(seed=seed)
    model.metrics = {"ndcg@10": ndcg}
    return model


def test_history_follows_publish_prune_and_skips_a_broken_meta(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store", keep_versions=2)
    history = NdcgHistory(store.root)
    assert history.of("0") == []  # no such tenant
    store.publish("0", model_with(0.1))
    assert history.of("0") == [0.1]
    store.publish("0", model_with(0.2))
    assert history.of("0") == [0.1, 0.2]  # oldest first; the new version is seen at once
    store.publish("0", model_with(0.3))  # keep_versions=2: the oldest is pruned
    assert history.of("0") == [0.2, 0.3]
    newest = store.current_version("0")
    assert newest is not None
    (store.root / "0" / newest / "meta.json").write_text("{not json")
    fresh = NdcgHistory(store.root)
    assert fresh.of("0") == [0.2]  # an unreadable meta.json has no point, the others still show
