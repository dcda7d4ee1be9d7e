"""Requests cannot cause a 5xx (issue 9, item 5): oversized numbers, hostile auth headers and damaged scores get
their 400/401 or are dropped, on the dispatch fast path and on FastAPI's routing alike, always as valid JSON."""

from __future__ import annotations

import json
import math
from typing import Callable

import httpx
import numpy as np
import pytest

from ml_service.api.app import create_app
from ml_service.config import Settings
from ml_service.serving import ServingState, TenantIndex
from ml_service.store import ModelStore
from tests.api.support import ITEMS, KEY, RunningServer, make_model, signed


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi-routing"])
def url(request: pytest.FixtureRequest, serve: Callable[..., str], settings: Settings, store: ModelStore) -> str:
    return serve(settings, store, fast_path=request.param)


def _strict_json(response: httpx.Response) -> dict:
    assert response.headers["content-type"] == "application/json"
    return json.loads(response.text, parse_constant=lambda name: pytest.fail(f"{name} in JSON: {response.text[:200]}"))


def _bad_request(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, response.text[:300]
    body = _strict_json(response)
    assert set(body) == {"items", "message", "success"} and body["items"] == [] and body["success"] is False
    assert len(body["message"]) < 300  # the bad value is quoted, not echoed whole
    for word in words:
        assert word in body["message"]


@pytest.mark.parametrize("digits", ["9" * 20, "9" * 5000, "1" * 4301])
def test_huge_user_ids_are_400_not_500(client: httpx.Client, url: str, digits: str) -> None:
    params = {"totara_user_id": digits, "item_type": "engage_article", "tenant": "0", "n_items": "3"}
    _bad_request(client.get(url + "/user-items", params=params, headers=signed()), "totara_user_id", "at most 19 digits")


def test_leading_zeros_still_name_the_user(client: httpx.Client, url: str) -> None:
    plain = {"totara_user_id": "2", "item_type": "container_course", "tenant": "0", "n_items": "3"}
    padded = dict(plain, totara_user_id="0" * 5000 + "2")
    first = client.get(url + "/user-items", params=plain, headers=signed())
    assert first.status_code == 200 and client.get(url + "/user-items", params=padded, headers=signed()).json() == first.json()


def test_a_huge_n_items_is_quoted_short(client: httpx.Client, url: str) -> None:
    params = {"totara_item_id": "engage_article10", "tenant": "0", "n_items": "7" * 20_000}
    _bad_request(client.get(url + "/similar-items", params=params, headers=signed()), "n_items", "(20000 characters)")


@pytest.mark.parametrize("stamp", ["-" + "9" * 4300, "9" * 4300, "1_000", "12 34", "+" * 10])
def test_hostile_time_headers_are_401(client: httpx.Client, url: str, stamp: str) -> None:
    response = client.get(url + "/health-check", headers={"X-Totara-Time": stamp, "X-Totara-Ml-Key": "0" * 64})
    assert response.status_code == 401 and response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text.startswith("Invalid access\nThe clocks were not in sync\n")


def test_non_finite_scores_never_reach_the_wire(client: httpx.Client, settings: Settings, store: ModelStore) -> None:
    model = make_model(seed=0)
    model.item_factors[ITEMS.index("engage_article11")] = np.nan  # a damaged model, as if loaded from disk
    model.item_biases[ITEMS.index("container_course2")] = np.inf
    model.similarity_vectors[ITEMS.index("engage_microlearning12")] = np.nan
    model.metrics["ndcg@10"] = math.nan
    app = create_app(settings, store, refresh_interval_s=None)
    recommender = app.state.recommender
    recommender.state = ServingState(indexes={"0": TenantIndex("0", "v1", model)}, known_tenants=frozenset({"0"}))
    server = RunningServer(app).start()
    try:
        for path in (
            "/user-items?totara_user_id=2&item_type=engage_article&tenant=0&n_items=10",
            "/user-items?totara_user_id=2&item_type=container_course&tenant=0&n_items=10",
            "/similar-items?totara_item_id=engage_article10&tenant=0&n_items=10",
            "/health-check",
        ):
            response = client.get(server.url + path, headers=signed(KEY))
            assert response.status_code == 200
            body = _strict_json(response)
            for _, score in body.get("items", []):
                assert math.isfinite(float(score)), (path, response.text)
        items = _strict_json(client.get(server.url + "/user-items?totara_user_id=2&item_type=engage_article&tenant=0&n_items=10", headers=signed(KEY)))["items"]
        assert [item_id for item_id, _ in items] == ["10"]  # article 11 (NaN score) dropped, the other one kept
    finally:
        server.stop()


@pytest.mark.parametrize("path", ["/docs%0A", "/user-items%0A", "/health-check%0A", "/favicon.ico%0A"])
def test_a_path_ending_in_a_newline_is_unknown(client: httpx.Client, url: str, path: str) -> None:
    query = "?totara_user_id=2&item_type=engage_article&tenant=0&n_items=3" if "user-items" in path else ""
    response = client.get(url + path + query, headers=signed())
    assert response.status_code == 404 and _strict_json(response)["error"] == "true"
