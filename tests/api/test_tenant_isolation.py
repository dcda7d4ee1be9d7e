"""Through the real server: a tenant with a garbage CURRENT or only corrupt versions never stops the others from
being served, at start-up and at every hot swap."""

from __future__ import annotations

import time
from typing import Callable

import httpx

from ml_service.config import Settings
from ml_service.store import ModelStore
from tests.api.support import expected_user_items, make_model, signed, wire


def _user_items(client: httpx.Client, url: str, tenant: str) -> dict:
    response = client.get(
        url + f"/user-items?totara_user_id=2&item_type=engage_article&tenant={tenant}&n_items=3", headers=signed()
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    return response.json()


def _serves(body: dict, model_seed: int) -> bool:
    """The answer is the success list the model of this seed gives (scores to 1e-4: float32 vs the oracle)."""
    want = wire(expected_user_items(make_model(seed=model_seed), "2", 2, 3))
    got = body.get("items") or []
    return body.get("success") is True and [i for i, _ in got] == [i for i, _ in want] and all(
        abs(float(a) - float(b)) <= 1.01e-4 for (_, a), (_, b) in zip(got, want)
    )


def _wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_broken_tenants_are_skipped_at_start_and_at_every_hot_swap(
    serve: Callable[..., str], settings: Settings, client: httpx.Client
) -> None:
    store = ModelStore(settings.recommender_dir)
    store.publish("0", make_model(seed=0))
    store.publish("1", make_model(seed=1))
    store.publish("1", make_model(seed=2))
    (store.root / "1" / "CURRENT").write_text("not a version id\x00\n")  # garbage CURRENT
    for seed in (3, 4):  # tenant 2: every version corrupt
        version = store.publish("2", make_model(seed=seed))
        (store.root / "2" / version / "item_factors.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")

    url = serve(settings, store, refresh_interval_s=0.05)
    assert _serves(_user_items(client, url, "0"), 0)
    # Tenant 1: its CURRENT names nothing, so its newest version that loads serves (seed 2, published last).
    assert _serves(_user_items(client, url, "1"), 2)
    untrained = _user_items(client, url, "2")
    assert untrained["success"] is False and "not trained" in untrained["message"]

    assert not _serves(_user_items(client, url, "0"), 7)  # the two models of tenant 0 are told apart
    store.publish("0", make_model(seed=7))  # a hot swap while tenants 1 and 2 are still broken
    _wait_for(lambda: _serves(_user_items(client, url, "0"), 7))
    store.publish("2", make_model(seed=5))  # tenant 2 repaired by the next training run
    _wait_for(lambda: _user_items(client, url, "2").get("success") is True)
    assert _serves(_user_items(client, url, "1"), 2)
    health = client.get(url + "/health-check", headers=signed())
    assert health.status_code == 200 and "success" in health.json()
