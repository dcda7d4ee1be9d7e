"""/user-items and /similar-items through real HTTP: every message of spec §2.2/2.3, D1-D4, ids and scores."""

from __future__ import annotations

from typing import Callable

import httpx
import pytest

from ml_service.config import Settings
from ml_service.data.tenant import TYPE_INDEX
from ml_service.store import ModelStore
from tests.api.support import COLD_USER, USERS, assert_wire_items, expected_similar, expected_user_items, make_model, signed

MODEL = make_model(seed=0)


def get(client: httpx.Client, url: str, **params: object) -> httpx.Response:
    return client.get(url, params=params, headers=signed())


def user_items(client: httpx.Client, base_url: str, **overrides: object) -> httpx.Response:
    params = {"totara_user_id": "2", "item_type": "container_course", "tenant": "0", "n_items": "5", **overrides}
    return get(client, base_url + "/user-items", **{k: v for k, v in params.items() if v is not None})


def similar_items(client: httpx.Client, base_url: str, **overrides: object) -> httpx.Response:
    params = {"totara_item_id": "engage_article10", "tenant": "0", "n_items": "5", **overrides}
    return get(client, base_url + "/similar-items", **{k: v for k, v in params.items() if v is not None})


def business(response: httpx.Response, message: str) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.text == '{"items":[],"message":"%s","success":false}' % message


@pytest.mark.parametrize("item_type", list(TYPE_INDEX))
@pytest.mark.parametrize("user", ["1", "2", "3"])
def test_user_items_rank_like_the_model(client: httpx.Client, base_url: str, user: str, item_type: str) -> None:
    response = user_items(client, base_url, totara_user_id=user, item_type=item_type, n_items=10)
    assert response.status_code == 200
    assert_wire_items(response.json(), expected_user_items(MODEL, user, TYPE_INDEX[item_type], 10))


def test_wire_format_is_compact_sorted_strings(client: httpx.Client, base_url: str) -> None:
    response = user_items(client, base_url, n_items=2)
    assert response.headers["content-type"] == "application/json"
    body = response.text
    assert body.startswith('{"items":[["') and body.endswith('"]],"success":true}') and " ," not in body
    for item_id, score in response.json()["items"]:
        assert item_id.isdigit()
        assert len(score.split(".")[1]) == 4 and score[0] in " -"


def test_n_items_cuts_the_list(client: httpx.Client, base_url: str) -> None:
    assert len(user_items(client, base_url, item_type="container_course", totara_user_id="3", n_items=1).json()["items"]) == 1
    assert len(user_items(client, base_url, item_type="container_course", totara_user_id="3", n_items=1000).json()["items"]) == 3


def test_seen_items_are_excluded_by_default(client: httpx.Client, base_url: str) -> None:
    ids = [i for i, _ in user_items(client, base_url, totara_user_id="1", item_type="container_course", n_items=10).json()["items"]]
    assert "1" not in ids and sorted(ids) == ["2", "3"]
    ids = [i for i, _ in user_items(client, base_url, totara_user_id="1", item_type="engage_article", n_items=10).json()["items"]]
    assert ids == ["11"]


def test_demote_setting_keeps_seen_items_lower(
    client: httpx.Client, serve: Callable[..., str], settings: Settings, store: ModelStore
) -> None:
    url = serve(settings.with_(seen_policy="demote"), store)
    response = user_items(client, url, totara_user_id="1", item_type="container_course", n_items=10)
    expected = expected_user_items(MODEL, "1", TYPE_INDEX["container_course"], 10, seen="demote")
    assert_wire_items(response.json(), expected)
    assert "1" in [i for i, _ in response.json()["items"]]


def test_unknown_user_gets_popular_items_of_the_type(client: httpx.Client, base_url: str) -> None:
    """D1: cold start, success, never `no such user id`."""
    response = user_items(client, base_url, totara_user_id="999", item_type="totara_playlist", n_items=5)
    expected = expected_user_items(MODEL, "999", TYPE_INDEX["totara_playlist"], 5)
    assert_wire_items(response.json(), expected)
    cold = user_items(client, base_url, totara_user_id=USERS[COLD_USER], item_type="container_course", n_items=5)
    assert_wire_items(cold.json(), expected_user_items(MODEL, USERS[COLD_USER], 0, 5))


def test_bad_item_type_is_the_reference_message(client: httpx.Client, base_url: str) -> None:
    business(user_items(client, base_url, item_type="engage_banana"), "Bad request: no such item type is available")
    # The unknown user is no longer an error (D1), so the type check answers for them too.
    business(user_items(client, base_url, totara_user_id="999", item_type="x"), "Bad request: no such item type is available")


@pytest.mark.parametrize("call", [user_items, similar_items])
def test_tenant_messages(client: httpx.Client, base_url: str, call: Callable[..., httpx.Response]) -> None:
    business(call(client, base_url, tenant="9"), "Bad request: no such tenant")
    business(
        call(client, base_url, tenant="3"),
        "Message: The model for tenant 3 is not trained, probably for insufficient data",
    )


@pytest.mark.parametrize("call", [user_items, similar_items])
def test_not_ready_before_any_training(
    client: httpx.Client, serve: Callable[..., str], settings: Settings, call: Callable[..., httpx.Response]
) -> None:
    url = serve(settings, ModelStore(settings.models_dir / "empty"))
    business(call(client, url), "The recommender model is not ready yet")


def test_similar_items_same_family_never_the_target(client: httpx.Client, base_url: str) -> None:
    for target in ("engage_article10", "engage_article11", "container_course2", "totara_playlist1", "container_workspace1"):
        response = similar_items(client, base_url, totara_item_id=target, n_items=20)
        assert_wire_items(response.json(), expected_similar(MODEL, target, 20))
    ids = [i for i, _ in similar_items(client, base_url, totara_item_id="engage_article10", n_items=20).json()["items"]]
    assert sorted(ids) == ["11", "12", "13"]  # articles and microlearning: one family (D2)


def test_article_id_retries_as_microlearning(client: httpx.Client, base_url: str) -> None:
    """Totara sends engage_article<id> for a short article exported as engage_microlearning<id>."""
    asked_as_article = similar_items(client, base_url, totara_item_id="engage_article13", n_items=3)
    assert_wire_items(asked_as_article.json(), expected_similar(MODEL, "engage_microlearning13", 3))
    assert "13" not in [i for i, _ in asked_as_article.json()["items"]]


def test_unknown_item(client: httpx.Client, base_url: str) -> None:
    business(similar_items(client, base_url, totara_item_id="engage_article999"), "Bad request: no such item id")
    business(similar_items(client, base_url, totara_item_id="nonsense"), "Bad request: no such item id")


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"n_items": None}, ["n_items", "missing", "1 to 1000"]),
        ({"n_items": ""}, ["n_items", "empty", "1 to 1000"]),
        ({"n_items": "five"}, ["n_items='five'", "not a whole number", "1 to 1000"]),
        ({"n_items": "2.5"}, ["n_items='2.5'", "not a whole number"]),
        ({"n_items": "0"}, ["n_items=0", "out of range", "1 to 1000"]),
        ({"n_items": "-3"}, ["n_items=-3", "out of range"]),
        ({"n_items": "1001"}, ["n_items=1001", "out of range", "1 to 1000"]),
        ({"totara_user_id": None}, ["totara_user_id", "missing"]),
        ({"totara_user_id": "abc"}, ["totara_user_id='abc'", "whole number"]),
        ({"item_type": None}, ["item_type", "missing", "engage_article"]),
        ({"tenant": None}, ["tenant", "missing"]),
    ],
)
def test_user_items_bad_parameters_are_400(client: httpx.Client, base_url: str, overrides: dict, words: list[str]) -> None:
    response = user_items(client, base_url, **overrides)
    assert response.status_code == 400
    body = response.json()
    assert body["items"] == [] and body["success"] is False
    for word in words:
        assert word in body["message"]


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"totara_item_id": None}, ["totara_item_id", "missing", "engage_article12"]),
        ({"tenant": None}, ["tenant", "missing"]),
        ({"n_items": None}, ["n_items", "missing"]),
        ({"n_items": "x"}, ["n_items='x'", "not a whole number"]),
    ],
)
def test_similar_items_bad_parameters_are_400(client: httpx.Client, base_url: str, overrides: dict, words: list[str]) -> None:
    response = similar_items(client, base_url, **overrides)
    assert response.status_code == 400
    assert all(word in response.json()["message"] for word in words)


def test_max_n_items_comes_from_settings(
    client: httpx.Client, serve: Callable[..., str], settings: Settings, store: ModelStore
) -> None:
    url = serve(settings.with_(max_n_items=3), store)
    assert user_items(client, url, n_items=4).status_code == 400
    assert user_items(client, url, n_items=3).status_code == 200
