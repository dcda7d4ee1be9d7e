"""Framework-level answers (spec §2.7 and §2.1): 404/405/500 JSON shapes, HEAD and OPTIONS on every route."""

from __future__ import annotations

import dataclasses

from typing import Callable

import httpx
import numpy as np

from ml_service.models.parts import replace_arrays
from ml_service.api.errors import INTERNAL_ERROR, METHOD_NOT_ALLOWED, NOT_FOUND
from ml_service.config import Settings
from ml_service.serving import Recommender, ServingState, TenantIndex
from ml_service.store import ModelStore
from tests.api.support import make_model, signed

USER_ITEMS = "/user-items?totara_user_id=2&item_type=container_course&tenant=0&n_items=3"


def test_404_shape(client: httpx.Client, base_url: str) -> None:
    response = client.get(base_url + "/nothing/here", headers=signed())
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.text == '{"error":"true","msg":"%s"}' % NOT_FOUND


def test_trailing_slash_is_an_unknown_path_not_a_redirect(client: httpx.Client, base_url: str) -> None:
    for path in ("/health-check/", "/user-items/", "/docs/"):
        response = client.get(base_url + path, headers=signed())
        assert response.status_code == 404, path
        assert response.json() == {"error": "true", "msg": NOT_FOUND}


def test_405_shape_has_no_allow_header(client: httpx.Client, base_url: str) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = client.request(method, base_url + USER_ITEMS, headers=signed())
        assert response.status_code == 405, method
        assert response.json() == {"error": "true", "msg": METHOD_NOT_ALLOWED}
        assert "allow" not in response.headers


def test_500_shape(client: httpx.Client, serve: Callable[..., str], settings: Settings, store: ModelStore) -> None:
    broken = make_model()
    # a model the store would refuse (no item factors): ranking fails inside the request
    broken = dataclasses.replace(broken, scoring=replace_arrays(broken.scoring, item_factors=None))
    recommender = Recommender(store)
    recommender.refresh()
    recommender.state = ServingState(
        indexes={"0": TenantIndex("0", store.current_version("0") or "", broken, {})},
        status={"0": {"state": "trained"}},
        known_tenants=frozenset({"0"}),
        token=store.state_token(),
    )
    url = serve(settings, store, recommender=recommender, refresh_interval_s=None)
    response = client.get(url + USER_ITEMS, headers=signed())
    assert response.status_code == 500
    assert response.json() == {"error": "true", "msg": INTERNAL_ERROR}


def test_head_is_answered_without_body(client: httpx.Client, base_url: str) -> None:
    for path in (USER_ITEMS, "/health-check", "/openapi.json"):
        get = client.get(base_url + path, headers=signed())
        head = client.head(base_url + path, headers=signed())
        assert head.status_code == 200 and head.content == b"", path
        assert head.headers["content-type"] == get.headers["content-type"]
    assert client.head(base_url + "/").status_code == 200
    assert client.head(base_url + "/favicon.ico").headers["content-type"] == "image/vnd.microsoft.icon"


def test_options_lists_methods_on_every_route(client: httpx.Client, base_url: str) -> None:
    for path in ("/user-items", "/similar-items", "/health-check", "/docs", "/openapi.json", "/", "/favicon.ico"):
        response = client.options(base_url + path, headers=signed())
        assert response.status_code == 200, path
        assert response.headers["allow"] == "GET, HEAD, OPTIONS"
    assert client.options(base_url + "/nothing", headers=signed()).status_code == 404
    assert client.options(base_url + "/user-items").status_code == 401


def test_model_arrays_are_not_copied_per_tenant_index() -> None:
    """The index keeps the model's arrays (memory-mapped when loaded) and adds only small lookups."""
    model = make_model()
    index = TenantIndex("0", "v", model, {})
    assert index.model.user_factors is model.user_factors
    assert sum(len(rows) for rows in index.type_items) == model.n_items
    assert np.array_equal(np.concatenate(index.type_factors), model.item_factors[np.concatenate(index.type_items)])
