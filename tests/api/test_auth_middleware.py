"""Authentication through real HTTP (spec §3.1, D5): the 30 s window, the key, exemptions, the 401 body."""

from __future__ import annotations

from typing import Callable

import httpx
import pytest

from ml_service.auth import make_token
from ml_service.config import Settings
from ml_service.store import ModelStore
from tests.api.support import KEY, Clock, signed

NOW = 1_800_000_000
USER_ITEMS = "/user-items?totara_user_id=2&item_type=container_course&tenant=0&n_items=3"


@pytest.fixture
def pinned_url(serve: Callable[..., str], settings: Settings, store: ModelStore) -> str:
    return serve(settings, store, clock=Clock(NOW))


def headers_at(stamp: int, key: str = KEY) -> dict[str, str]:
    return signed(key, now=stamp)


@pytest.mark.parametrize(("offset", "accepted"), [(0, True), (29, True), (-29, True), (30, False), (-30, False), (31, False), (-31, False)])
def test_window_is_strictly_under_30_seconds(client: httpx.Client, pinned_url: str, offset: int, accepted: bool) -> None:
    response = client.get(pinned_url + USER_ITEMS, headers=headers_at(NOW + offset))
    if accepted:
        assert response.status_code == 200 and response.json()["success"] is True
        return
    assert response.status_code == 401
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    lines = response.text.splitlines()
    assert lines[:2] == ["Invalid access", "The clocks were not in sync"]
    assert f"{abs(offset)} s away" in response.text
    assert lines[-2:] == [f"service_time: {NOW}", f"variance: {abs(offset)}"]


def test_wrong_key_is_refused_without_clock_line(client: httpx.Client, pinned_url: str) -> None:
    response = client.get(pinned_url + USER_ITEMS, headers=headers_at(NOW, key="not-the-key"))
    assert response.status_code == 401
    lines = response.text.splitlines()
    assert lines[0] == "Invalid access" and "The clocks were not in sync" not in lines
    assert "X-Totara-Ml-Key does not match" in response.text
    assert lines[-2:] == [f"service_time: {NOW}", "variance: 0"]


def test_missing_headers(client: httpx.Client, pinned_url: str) -> None:
    no_time = client.get(pinned_url + USER_ITEMS, headers={"X-Totara-Ml-Key": make_token(str(NOW), KEY)})
    assert no_time.status_code == 401 and "X-Totara-Time header is missing" in no_time.text
    assert no_time.text.splitlines()[-1] == f"variance: {NOW}"  # an absent time counts as 0, as in the reference
    no_key = client.get(pinned_url + USER_ITEMS, headers={"X-Totara-Time": str(NOW)})
    assert no_key.status_code == 401 and "X-Totara-Ml-Key header is missing" in no_key.text
    garbage_time = client.get(pinned_url + USER_ITEMS, headers={"X-Totara-Time": "soon", "X-Totara-Ml-Key": "x"})
    assert garbage_time.status_code == 401 and "not a whole number" in garbage_time.text


def test_the_401_body_never_echoes_request_headers(client: httpx.Client, pinned_url: str) -> None:
    headers = headers_at(NOW, key="guessed-key")
    response = client.get(pinned_url + USER_ITEMS, headers={**headers, "Cookie": "session=abc"})
    assert headers["X-Totara-Ml-Key"] not in response.text
    assert "session=abc" not in response.text and "TotaraBot" not in response.text and KEY not in response.text


def test_user_agent_is_not_checked(client: httpx.Client, pinned_url: str) -> None:
    """D5: only the time-bound key matters."""
    response = client.get(pinned_url + USER_ITEMS, headers={**headers_at(NOW), "User-Agent": "curl/8"})
    assert response.status_code == 200


def test_service_with_empty_key_accepts_nothing(
    client: httpx.Client, serve: Callable[..., str], settings: Settings, store: ModelStore
) -> None:
    url = serve(settings.with_(totara_key=""), store, clock=Clock(NOW))
    response = client.get(url + USER_ITEMS, headers=signed("", now=NOW))
    assert response.status_code == 401 and "no ML_TOTARA_KEY" in response.text


def test_exemptions_are_exact_paths_without_query(client: httpx.Client, pinned_url: str) -> None:
    assert client.get(pinned_url + "/").status_code == 200
    assert client.get(pinned_url + "/favicon.ico").status_code == 200
    assert client.get(pinned_url + "/?x=1").status_code == 401
    assert client.get(pinned_url + "/favicon.ico?v=2").status_code == 401
    assert client.get(pinned_url + "/favicon.ico/").status_code == 401
    for path in ("/health-check", "/docs", "/openapi.json", "/similar-items"):
        assert client.get(pinned_url + path).status_code == 401, path
    assert client.get(pinned_url + "/docs", headers=headers_at(NOW)).status_code == 200
    assert client.get(pinned_url + "/openapi.json", headers=headers_at(NOW)).json()["paths"]["/user-items"]


def test_unknown_paths_are_401_then_404(client: httpx.Client, pinned_url: str) -> None:
    assert client.get(pinned_url + "/no-such-page").status_code == 401
    response = client.get(pinned_url + "/no-such-page", headers=headers_at(NOW))
    assert response.status_code == 404 and response.json()["error"] == "true"
