"""The hot-path helpers of api/responses.py and api/routes.py give exactly what Starlette and dump_json give."""

from __future__ import annotations

import math

import httpx
import pytest
from starlette.datastructures import QueryParams
from starlette.responses import Response

from ml_service.api.responses import dump_json, json_headers, query_params
from ml_service.api.routes import wire_items
from ml_service.serving import TenantIndex
from tests.api.support import make_model, signed

QUERIES = [
    b"",
    b"tenant=0&n_items=5",
    b"totara_user_id=2&totara_user_id=3",  # repeats: the last one wins
    b"&&a=1&&b=&c&=d&e==f&",  # empty fields, blank values, a name without `=`, an empty name, `=` in a value
    b"a=%32&b=x+y&c=%ff%fe&d=%zz",  # escapes (invalid utf-8 is replaced, as Starlette does), `+`, a bad escape
    b"a=\xe9t\xe9&b=1;c=2",  # latin-1 bytes, `;` is not a separator
    b"item=engage_article10&tenant=%200%20",
]


@pytest.mark.parametrize("query", QUERIES)
def test_query_params_equal_starlettes(query: bytes) -> None:
    assert query_params(query) == dict(QueryParams(query).items())


def test_json_headers_equal_starlettes_response() -> None:
    body = b'{"items":[],"success":true}'
    assert json_headers(body) == Response(body, status_code=200, media_type="application/json").raw_headers


def test_wire_items_equal_dump_json() -> None:
    model = make_model()
    model.item_ids = list(model.item_ids)
    model.item_ids[0] = 'container_course"quoted\\ \u00e9'  # ids needing JSON escapes
    index = TenantIndex("0", "v", model, {})
    for ranked in ([], [(0, 1.23456)], [(3, -0.00001), (0, float("nan")), (5, 12345.5), (6, float("-inf"))]):
        finite = [(i, s) for i, s in ranked if math.isfinite(s)]  # a non-finite score drops its item
        expected = dump_json({"items": [[index.wire_ids[i], format(s, " .4f")] for i, s in finite], "success": True})
        assert wire_items(index, ranked) == expected


def test_hot_routes_answer_head_and_repeated_parameters(client: httpx.Client, base_url: str) -> None:
    url = base_url + "/user-items?totara_user_id=1&item_type=engage_article&tenant=0&n_items=3&totara_user_id=2"
    get = client.get(url, headers=signed())
    assert get.status_code == 200
    assert get.text == client.get(url.replace("&totara_user_id=2", "").replace("=1&", "=2&"), headers=signed()).text
    head = client.head(url, headers=signed())
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(get.content))
    assert head.headers["content-type"] == "application/json"
