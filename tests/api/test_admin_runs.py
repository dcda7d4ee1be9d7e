"""Runs and tenant pages: per-stage seconds of each tenant's training and the downloads' requests by HTTP status."""

from __future__ import annotations

import re
import time
from typing import Callable

from ml_service.config import Settings
from ml_service.store import ModelStore
from ml_service.training.logs import append_jsonl
from tests.api.test_admin import PASSWORD, login


def test_stage_seconds_and_download_attempts_are_shown(serve: Callable[..., str], settings: Settings, store: ModelStore) -> None:
    log = settings.training_jsonl
    append_jsonl(log, {"event": "tenant", "tenant": "0", "state": "trained", "algorithm": "als", "msg": "success", "at": time.time(),
                       "seconds": {"load": 0.25, "train": 9.0, "parse": 0.25, "features": 0.5, "fit": 6.5, "evaluate": 2.0,
                                   "publish": 0.125}})
    append_jsonl(log, {"event": "run", "ok": True, "seconds": 10.0, "at": time.time(),
                       "download": {"ok": True, "seconds": 1.5, "bytes": 2048, "attempts": {"200": 6, "202": 7, "404": 1}}})
    base = serve(settings.with_(admin_password=PASSWORD), store)
    client, _ = login(base, "admin")
    runs = client.get("/admin/runs").text
    assert re.search(r"200 × 6.*202 × 7.*404 × 1", runs, re.S)
    assert "parse 0.25 s · features 0.5 s · fit 6.5 s · evaluate 2.0 s · publish 0.125 s" in " ".join(runs.split())
    tenant = client.get("/admin/tenants/0").text
    cells = dict(re.findall(r'<td class="num" data-stage="(\w+)">([^<]*)</td>', tenant))
    assert cells == {"parse": "0.25", "features": "0.5", "fit": "6.5", "evaluate": "2.0", "publish": "0.125"}
