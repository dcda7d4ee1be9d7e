"""The dashboard's try it: a learner's recent interactions with type, rating and date, newest first; older models say so."""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
import scipy.sparse as sp

from ml_service.config import Settings
from ml_service.models.base import with_arrays
from ml_service.store import ModelStore
from tests.api.support import ITEMS, make_model
from tests.api.test_admin import PASSWORD, login


def test_try_it_lists_recent_interactions_with_dates(serve: Callable[..., str], settings: Settings, store: ModelStore) -> None:
    model = make_model(seed=3)
    times = np.array([1_700_000_000.0, 1_800_000_000.0])  # learner "1" (row 0): items 0 then 5, 2023 and 2027
    model = with_arrays(model, recent=sp.csr_matrix((times, ([0, 0], [0, 5])), shape=(model.n_users, model.n_items)))
    store.publish("0", model)
    base = serve(settings.with_(admin_password=PASSWORD), store)
    client, _ = login(base, "admin")
    page = client.get("/admin/tenants/0/try", params={"user": "1"}).text
    table = re.search(r'<table id="interactions">(.*?)</table>', page, re.S)
    assert table is not None
    rows = re.findall(r'<td class="date">([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td class="num">(\d)</td>', table.group(1))
    assert [(date[:10], item) for date, item, _, _ in rows] == [("2027-01-15", ITEMS[5]), ("2023-11-14", ITEMS[0])]
    assert all(rating == "1" for *_, rating in rows)  # both are among the learner's positives in make_model
    assert "stored before models kept dates" not in page


def test_try_it_on_a_model_without_dates_says_so(serve: Callable[..., str], settings: Settings, store: ModelStore) -> None:
    base = serve(settings.with_(admin_password=PASSWORD), store)  # the fixture's model has no `recent`
    client, _ = login(base, "admin")
    page = client.get("/admin/tenants/0/try", params={"user": "1"}).text
    assert "stored before models kept dates" in page and ITEMS[0] in page
