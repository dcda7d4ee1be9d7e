"""Fuzz (issue 9): generated requests over every route, valid and invalid authentication, against the real server
on both the dispatch fast path and FastAPI's routing: no 5xx, every answer within the wire contract, and the
server still answering afterwards. benchmarks/fuzz.py runs the same generator 10,000 times."""

from __future__ import annotations

from typing import Callable

import httpx
import pytest

from ml_service.config import Settings
from ml_service.store import ModelStore
from tests.api.support import ITEMS, KEY, USERS, signed
from tests.fuzz_support import Served, run_fuzz

SERVED = Served(tenants=("0", "3"), users=tuple(USERS), items=tuple(ITEMS))
REQUESTS_PER_PATH = 200  # plus the sweep of every route x method x auth (72)


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi-routing"])
def test_generated_requests_never_get_a_5xx_or_break_the_contract(
    serve: Callable[..., str], settings: Settings, store: ModelStore, client: httpx.Client, fast_path: bool
) -> None:
    url = serve(settings, store, fast_path=fast_path)
    host, port = url.removeprefix("http://").split(":")
    report = run_fuzz(host, int(port), KEY, SERVED, REQUESTS_PER_PATH, derandomize=True)
    assert report.requests >= REQUESTS_PER_PATH * 0.9
    assert report.five_xx == 0 and report.violations == 0, report.examples
    assert set(report.by_route) >= {"/user-items", "/similar-items", "/health-check", "/", "/favicon.ico", "unknown path", "malformed HTTP"}
    statuses = {status for row in report.by_route.values() for status in row["statuses"]}
    assert statuses >= {"200", "400", "401", "404", "405"}, statuses  # every kind of answer was checked
    after = client.get(url + "/user-items?totara_user_id=2&item_type=engage_article&tenant=0&n_items=2", headers=signed())
    assert after.status_code == 200 and after.json()["success"] is True
