"""The dashboard in a real headless Chromium (Selenium) against `ml-service demo`: log in, look, try, retrain, roll back.

Needs Debian's `chromium` and `chromium-driver` (run-tests.sh installs them when it can); skipped with the reason
when either is missing. ML_UPDATE_SCREENSHOTS=1 writes the screenshots into docs/screenshots/ (committed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="no headless browser: install Debian's chromium and chromium-driver (run-tests.sh does so when run as root)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`ml-service demo` in a subprocess (knn: fast, item-based); its URL, dashboard password and work folder."""
    tmp = tmp_path_factory.mktemp("demo")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_")}
    env.update({"ML_RECOMMENDATION_ALGORITHM": "knn", "ML_NUM_THREADS": "1"})
    log = tmp / "demo.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ml_service.cli", "demo", "--port", str(port), "--workdir", str(tmp / "work")],
                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while "listening on" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        text = log.read_text()
        match = re.search(r"Dashboard: (http://\S+)\s+user: admin\s+password: (\S+)", text)
        assert match and "listening on" in text, text
        base = match.group(1).rstrip("/").removesuffix("/admin")
        for _ in range(50):
            try:
                httpx.get(base + "/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield {"base": base, "password": match.group(2), "work": tmp / "work"}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1366,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.implicitly_wait(15)  # find_element waits for the page a click submitted to load (busy shared host)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("ML_UPDATE_SCREENSHOTS") == "1":
        folder = REPO / "docs" / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


def _shot(driver: Any, folder: Path, name: str) -> None:
    """A full-page screenshot: the window grows to the page's height first."""
    height = driver.execute_script("return Math.max(document.documentElement.scrollHeight, 600)")
    driver.set_window_size(1366, min(int(height) + 40, 2400))
    assert driver.save_screenshot(str(folder / f"{name}.png"))
    driver.set_window_size(1366, 900)


def _login(driver: Any, base: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + "/admin/login")
    driver.find_element(By.ID, "username").send_keys("admin")
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-button").click()


def test_dashboard_end_to_end(demo: dict[str, Any], browser: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    base, driver = demo["base"], browser
    # A wrong password is refused.
    _login(driver, base, "not-the-password")
    assert "Wrong name or password" in driver.find_element(By.ID, "login-error").text
    _shot(driver, shots, "login")
    # The right one shows the demo's tenants.
    _login(driver, base, demo["password"])
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(lambda d: d.current_url.endswith("/admin/"))
    tenants = [row.get_attribute("data-tenant") for row in driver.find_elements(By.CSS_SELECTOR, "tr.tenant-row")]
    assert tenants == ["0", "1", "2"]
    assert driver.find_elements(By.CSS_SELECTOR, "svg.spark")
    _shot(driver, shots, "overview")
    # A tenant: the chart's data, as points and as JSON.
    driver.find_element(By.LINK_TEXT, "0").click()
    chart = json.loads(driver.find_element(By.ID, "chart-data").get_attribute("textContent"))
    # Two versions from the demo's one run: the quick popular model and the final one (ML_ANYTIME_PUBLISH).
    assert len(chart) == 2 and all(point["ndcg@10"] is not None for point in chart)
    points = driver.find_elements(By.CSS_SELECTOR, "#metrics-chart circle.point[data-series='ndcg@10']")
    assert [float(p.get_attribute("data-value")) for p in points] == pytest.approx([c["ndcg@10"] for c in chart], abs=1e-6)
    assert not driver.find_elements(By.ID, "pin-note")  # the store can pin: the buttons are enabled
    assert not driver.find_elements(By.ID, "unpin") and "Not pinned" in driver.find_element(By.ID, "pin-state").text
    # Every x-axis label of the chart is drawn whole inside the chart (none cut at its edges), and reads as a date.
    labels = driver.execute_script(
        "const svg = document.getElementById('metrics-chart'); const w = svg.viewBox.baseVal.width;"
        "return [...svg.querySelectorAll('text.xlabel')].map(t => { const b = t.getBBox();"
        " return [t.textContent, b.x >= 0 && b.x + b.width <= w]; });"
    )
    assert labels and all(inside for _, inside in labels), labels
    assert all(re.match(r"\d{4}-\d{2}-\d{2}\d{2}:\d{2}:\d{2}", text) for text, _ in labels), labels
    # Each tenant's runs with seconds per stage.
    stages = [c.get_attribute("data-stage") for c in driver.find_elements(By.CSS_SELECTOR, "#tenant-runs tbody tr:first-child td[data-stage]")]
    assert stages == ["parse", "features", "fit", "evaluate", "publish"]
    assert float(driver.find_element(By.CSS_SELECTOR, "#tenant-runs tbody tr:first-child td[data-stage='fit']").text) >= 0
    _shot(driver, shots, "tenant")
    # Try a learner: their items and each type's recommendations with scores and why.
    driver.get(base + "/admin/tenants/0/try")
    learner = driver.find_element(By.ID, "user")
    learner.send_keys(driver.find_element(By.ID, "users").find_elements(By.TAG_NAME, "option")[0].get_attribute("value"))
    driver.find_element(By.ID, "try-button").click()
    tables = driver.find_elements(By.CSS_SELECTOR, "table.recs")
    assert len(tables) == 5 and any(t.find_elements(By.CSS_SELECTOR, "tbody td.num") for t in tables)
    dates = [d.text for d in driver.find_elements(By.CSS_SELECTOR, "#interactions td.date")]
    assert dates and all(re.match(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", d) for d in dates), dates
    assert dates == sorted(dates, reverse=True)  # newest first
    _shot(driver, shots, "try-it")
    # Start a retrain from the tenant page and watch the progress reach done.
    driver.get(base + "/admin/tenants/0")
    driver.find_element(By.ID, "retrain").click()
    assert "training started" in driver.find_element(By.ID, "flash").text
    deadline, state = time.monotonic() + 240, ""
    while time.monotonic() < deadline:
        driver.get(base + "/admin/runs")
        found = driver.find_elements(By.ID, "progress")
        state = found[0].get_attribute("data-state") if found else ""
        if state in ("done", "failed", "dead"):
            break
        time.sleep(1.0)
    assert state == "done"
    attempts = driver.find_element(By.CSS_SELECTOR, "#runs tbody tr:first-child .attempts").text
    assert re.search(r"200 × \d+", attempts), attempts  # the demo downloads from its Totara simulator
    _shot(driver, shots, "runs")
    # Two versions now: roll back to the first (confirmation accepted).
    driver.get(base + "/admin/tenants/0")
    for _ in range(20):  # the server hot-swaps the new version within a second or two
        if len(driver.find_elements(By.CSS_SELECTOR, "#versions tbody tr[data-version]")) == 2:
            break
        time.sleep(0.5)
        driver.refresh()
    driver.find_element(By.CSS_SELECTOR, "button.rollback").click()
    driver.switch_to.alert.accept()
    assert "rolled back to" in driver.find_element(By.ID, "flash").text
    pin = driver.find_elements(By.CSS_SELECTOR, "button.pin")[0]
    assert pin.get_attribute("disabled") is None
    pin.click()
    driver.switch_to.alert.accept()
    assert "pin done" in driver.find_element(By.ID, "flash").text
    assert "Pinned to version" in driver.find_element(By.ID, "pin-state").text
    assert len(driver.find_elements(By.CSS_SELECTOR, "#versions strong.pinned")) == 1
    _shot(driver, shots, "tenant-pinned")
    driver.find_element(By.ID, "unpin").click()  # shown now that the tenant is pinned
    driver.switch_to.alert.accept()
    assert "unpin done" in driver.find_element(By.ID, "flash").text
    assert not driver.find_elements(By.ID, "unpin") and "Not pinned" in driver.find_element(By.ID, "pin-state").text
    driver.get(base + "/admin/")
    assert len(driver.find_elements(By.CSS_SELECTOR, "tr[data-tenant='0'] svg.spark polyline[points*=' ']")) == 1  # 2 versions: a line
    _shot(driver, shots, "overview-after-retrain")
    driver.get(base + "/admin/settings")
    assert "(set, hidden)" in driver.find_element(By.ID, "settings").text
    _shot(driver, shots, "settings")
    driver.get(base + "/admin/api")
    driver.find_element(By.ID, "api-send").click()
    assert "success" in driver.find_element(By.ID, "api-result").text and "HTTP 200" in driver.page_source
    _shot(driver, shots, "api")
    # /docs: Swagger UI from the service itself (the test host has no internet: a CDN script would never load).
    driver.find_element(By.ID, "docs-link").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    paths = {e.text for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/user-items", "/similar-items"} <= {p.replace("\u200b", "") for p in paths}, paths
    _shot(driver, shots, "docs")
    driver.get(base + "/admin/api")
    # An action without the CSRF token, sent from the logged-in page, is refused.
    status = driver.execute_script(
        "return fetch('/admin/tenants/0/rollback', {method: 'POST', body: new URLSearchParams({})}).then(r => r.status)"
    )
    assert status == 403
    # An expired (here: unknown) session cookie sends the browser back to the login page.
    driver.delete_all_cookies()
    driver.add_cookie({"name": "ml_admin_session", "value": "expired-session-id", "path": "/"})
    driver.get(base + "/admin/")
    WebDriverWait(driver, 20).until(lambda d: d.current_url.endswith("/admin/login"))
