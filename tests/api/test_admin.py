"""The dashboard over a real server: login, sessions, CSRF, roles, audit log, every page, no key in any body."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import httpx
import pytest

from ml_service.api.admin.accounts import AccountsError, add_account, read_accounts
from ml_service.config import Settings
from ml_service.store import ModelStore
from tests.api.support import KEY, make_model

PASSWORD = "correct horse battery"
GET_PAGES = ["/admin/", "/admin/tenants/0", "/admin/tenants/0/try?user=1", "/admin/tenants/0/try?item=container_course1",
             "/admin/runs", "/admin/settings", "/admin/api", "/admin/progress"]
ACTIONS = ["/admin/tenants/0/retrain", "/admin/tenants/0/rollback", "/admin/tenants/0/pin", "/admin/tenants/0/unpin",
           "/admin/runs/start", "/admin/api", "/admin/logout"]


@pytest.fixture
def admin_settings(settings: Settings, tmp_path: Path) -> Settings:
    users = tmp_path / "admin-users"
    add_account(users, "olivia", "operator", PASSWORD)
    add_account(users, "victor", "viewer", PASSWORD)
    return settings.with_(admin_users_file=users, metrics_token="scrape-token-1")


@pytest.fixture
def admin_url(serve: Callable[..., str], admin_settings: Settings, store: ModelStore) -> str:
    store.publish("0", make_model(seed=1))  # two versions: rollback has somewhere to go
    return serve(admin_settings, store)


def login(base: str, name: str, password: str = PASSWORD) -> tuple[httpx.Client, str]:
    """A client holding the session cookie of `name`, and the CSRF token of its pages."""
    client = httpx.Client(base_url=base, timeout=10.0)
    answer = client.post("/admin/login", data={"username": name, "password": password})
    assert answer.status_code == 303, answer.text
    page = client.get("/admin/")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    return client, csrf.group(1)


def served_row(page: str) -> str:
    """The version whose row in the tenant page's versions table says `served` (exactly one must)."""
    rows = re.findall(r'<tr data-version="([^"]+)">(.*?)</tr>', page, re.S)
    served = [version for version, body in rows if 'class="good">served' in body]
    assert len(served) == 1, served
    return served[0]


def test_every_admin_route_refuses_without_a_session(admin_url: str, admin_settings: Settings, store: ModelStore) -> None:
    from ml_service.api.admin.app import build_admin_app
    from ml_service.serving import Recommender

    admin = build_admin_app(admin_settings, store, Recommender(store))
    assert admin is not None
    public = {"/admin", "/admin/login", "/admin/static/admin.css"}
    routes = [(r.path.replace("{tenant}", "0"), sorted(r.methods - {"HEAD"})) for r in admin.app.routes]  # type: ignore[attr-defined]
    # The lists below cover every route the dashboard has: a new route must be added to them (and so tested).
    assert {path for path, _ in routes} - public == {p.split("?")[0] for p in GET_PAGES + ACTIONS}
    with httpx.Client(base_url=admin_url, timeout=10.0) as client:
        for path in GET_PAGES:
            answer = client.get(path)
            assert answer.status_code == 303 and answer.headers["location"] == "/admin/login", path
        for path in ACTIONS:
            assert client.post(path, data={"csrf": "x"}).status_code == 401, path
        assert client.get("/docs").status_code == 401  # without a session /docs still needs Totara's signature


def test_login_sets_a_strict_httponly_cookie_and_pages_render(admin_url: str) -> None:
    client, _ = login(admin_url, "olivia")
    cookie = [h for k, h in client.cookies.jar._cookies.items()]  # noqa: F841 - presence checked below via header
    with httpx.Client(base_url=admin_url, timeout=10.0) as raw:
        answer = raw.post("/admin/login", data={"username": "olivia", "password": PASSWORD})
        header = answer.headers["set-cookie"].lower()
        assert "httponly" in header and "samesite=strict" in header and "secure" not in header
    for path in GET_PAGES:
        answer = client.get(path)
        assert answer.status_code == 200, path
    assert "engage_article" in client.get("/admin/tenants/0/try?user=1").text
    assert client.get("/docs").status_code == 200  # the API docs for a logged-in admin


def test_docs_page_loads_nothing_from_outside(admin_url: str) -> None:
    """/docs works behind a firewall: every script, style and icon it names is served by this service."""
    client, _ = login(admin_url, "olivia")
    page = client.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert len(assets) >= 3 and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
    assert "cdn" not in page.text.lower()
    for asset in assets:
        answer = client.get(asset)
        assert answer.status_code == 200 and len(answer.content) > 1000, asset
    assert "SwaggerUIBundle" in client.get("/docs/static/swagger-ui-bundle.js").text
    assert client.get("/openapi.json").json()["paths"]["/user-items"]
    with httpx.Client(base_url=admin_url, timeout=10.0) as anonymous:  # without a session: Totara's signature first
        assert anonymous.get("/docs/static/swagger-ui-bundle.js").status_code == 401


def test_wrong_password_is_refused_and_rate_limited(admin_url: str) -> None:
    with httpx.Client(base_url=admin_url, timeout=10.0) as client:
        statuses = [client.post("/admin/login", data={"username": "olivia", "password": "wrong"}).status_code for _ in range(6)]
        assert statuses[:5] == [401] * 5 and statuses[5] == 429
        # Even the right password is refused while the address is blocked.
        assert client.post("/admin/login", data={"username": "olivia", "password": PASSWORD}).status_code == 429


def test_missing_csrf_token_is_refused_and_audited(admin_url: str, admin_settings: Settings, store: ModelStore) -> None:
    client, _ = login(admin_url, "olivia")
    before = store.current_version("0")
    answer = client.post("/admin/tenants/0/rollback", data={})
    assert answer.status_code == 403 and "CSRF" in answer.text
    assert store.current_version("0") == before
    audit = (admin_settings.logs_dir / "admin_audit.jsonl").read_text()
    assert "refused: bad or missing CSRF token" in audit


def test_viewer_action_is_refused_operator_action_is_audited(admin_url: str, admin_settings: Settings, store: ModelStore) -> None:
    viewer, viewer_csrf = login(admin_url, "victor")
    before = store.current_version("0")
    assert viewer.post("/admin/tenants/0/rollback", data={"csrf": viewer_csrf}).status_code == 403
    assert store.current_version("0") == before
    operator, csrf = login(admin_url, "olivia")
    assert served_row(operator.get("/admin/tenants/0").text) == before
    answer = operator.post("/admin/tenants/0/rollback", data={"csrf": csrf})
    assert answer.status_code == 303 and "rolled%20back" in answer.headers["location"]
    assert store.current_version("0") != before
    # The versions list is cached per tenant: the rollback must show at once.
    assert served_row(operator.get("/admin/tenants/0").text) == store.current_version("0")
    lines = [json.loads(line) for line in (admin_settings.logs_dir / "admin_audit.jsonl").read_text().splitlines()]
    assert any(e["user"] == "victor" and e["action"] == "rollback" and e["outcome"] == "refused: viewer" for e in lines)
    assert any(e["user"] == "olivia" and e["action"] == "rollback" and e["outcome"].startswith("rolled back") for e in lines)


def test_expired_session_and_logout_are_refused(serve: Callable[..., str], admin_settings: Settings, store: ModelStore) -> None:
    now = [1_000_000.0]
    base = serve(admin_settings.with_(admin_session_s=60.0), store, clock=lambda: now[0])
    client, csrf = login(base, "olivia")
    assert client.get("/admin/settings").status_code == 200
    now[0] += 61.0
    assert client.get("/admin/settings").status_code == 303  # expired: back to the login page
    client, csrf = login(base, "olivia")
    assert client.post("/admin/logout", data={"csrf": csrf}).status_code == 303
    assert client.get("/admin/settings").status_code == 303


def test_the_totara_key_never_appears_in_any_body(admin_url: str) -> None:
    client, csrf = login(admin_url, "olivia")
    bodies = [client.get(path).text for path in GET_PAGES + ["/docs", "/openapi.json"]]
    bodies.append(client.post("/admin/api", data={"csrf": csrf, "path": "/user-items",
                                                   "params": "totara_user_id=1&item_type=container_course&tenant=0&n_items=3"}).text)
    assert '"success":true' in bodies[-1].replace("&#34;", '"').replace(" ", "")  # the signed call went through
    with httpx.Client(base_url=admin_url, timeout=10.0) as anonymous:
        bodies += [anonymous.get(p).text for p in ["/admin/login", "/metrics", "/", "/health-check"]]
        bodies.append(anonymous.get("/metrics", headers={"Authorization": "Bearer scrape-token-1"}).text)
    for body in bodies:
        assert KEY not in body


def test_settings_page_masks_secrets_and_names_sources(admin_url: str) -> None:
    client, _ = login(admin_url, "olivia")
    page = client.get("/admin/settings").text
    assert "ML_TOTARA_KEY</code></td><td>(set, hidden)" in page
    assert "scrape-token-1" not in page


def test_dashboard_is_off_without_accounts(base_url: str) -> None:
    answer = httpx.get(base_url + "/admin/", timeout=5.0)
    assert answer.status_code == 404 and "ML_ADMIN_PASSWORD" in answer.text


def test_accounts_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("alice:operator:$argon2id$v=19$m=1,t=1,p=1$x$y\nbob:root:nohash\n")
    with pytest.raises(AccountsError, match=r"line 2"):
        read_accounts(path)
    with pytest.raises(AccountsError, match="viewer or operator"):
        add_account(tmp_path / "other", "carol", "admin", PASSWORD)
