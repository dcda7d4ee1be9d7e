"""The Totara simulator over real HTTP: the pluginfile rules of spec §4.2/§3.3 and the GraphQL status probe."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from ml_service.auth import make_token, signed_headers
from ml_service.demo.simulator import TotaraSimulator

KEY = "abc123"
NOW = 1_700_000_000
EXPORT = "/pluginfile.php/1/ml_recommender/export/"


def write_export(folder: Path, tenants: list[str], *, completed: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tenants.csv").write_text("tenants\n" + "".join(f"{t}\n" for t in tenants))
    for tenant in tenants:
        for export in ("user_interactions", "user_data", "item_data"):
            (folder / f"{export}_{tenant}.csv").write_text(f"header_of_{export}\nrow_of_tenant_{tenant}\n")
    if completed:
        (folder / "export_completed").write_text(str(NOW))
    return folder


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    return write_export(tmp_path / "export", ["0", "3"])


@pytest.fixture
def sim(export_dir: Path) -> Iterator[TotaraSimulator]:
    with TotaraSimulator(export_dir, KEY, clock=lambda: NOW) as simulator:
        yield simulator


def signed(at: int = NOW) -> dict[str, str]:
    return signed_headers(KEY, now=at, lower=True)


def get(sim: TotaraSimulator, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(sim.url + path, headers=signed() if headers is None else headers)


def test_serves_file_as_csv_not_cached(sim: TotaraSimulator, export_dir: Path) -> None:
    response = get(sim, EXPORT + "user_data_3.csv")
    assert response.status_code == 200
    assert response.content == (export_dir / "user_data_3.csv").read_bytes()
    assert response.headers["content-type"] == "text/csv"
    assert response.headers["cache-control"] == "no-store"
    assert sim.requests == [("GET", EXPORT + "user_data_3.csv", 200)]


def test_upper_case_header_names_work_too(sim: TotaraSimulator) -> None:
    assert get(sim, EXPORT + "tenants.csv", signed_headers(KEY, now=NOW)).status_code == 200


def test_old_services_double_slash_works(sim: TotaraSimulator) -> None:
    assert get(sim, "/" + EXPORT + "tenants.csv").status_code == 200


@pytest.mark.parametrize(
    "name", ["secret.php", "user_data_4.csv", "user_data.csv", "i2u_0.csv", "export_completed", "..%2Ftenants.csv"]
)
def test_unknown_names_404(sim: TotaraSimulator, name: str) -> None:
    assert get(sim, EXPORT + name).status_code == 404


@pytest.mark.parametrize(
    "path", ["/pluginfile.php/1/ml_recommender/export/x/tenants.csv", "/pluginfile.php/1/ml_recommender/other/tenants.csv",
             "/pluginfile.php/2/ml_recommender/export/tenants.csv", "/tenants.csv", "/"]
)
def test_other_paths_404(sim: TotaraSimulator, path: str) -> None:
    assert get(sim, path).status_code == 404


def test_wrong_key_404_never_401(sim: TotaraSimulator) -> None:
    assert get(sim, EXPORT + "tenants.csv", signed_headers("wrong", now=NOW, lower=True)).status_code == 404
    assert get(sim, EXPORT + "tenants.csv", {}).status_code == 404
    assert get(sim, EXPORT + "tenants.csv", {"x-totara-time": str(NOW), "x-totara-ml-key": ""}).status_code == 404


def test_time_zero_refused_even_with_its_valid_token(sim: TotaraSimulator) -> None:
    headers = {"x-totara-time": "0", "x-totara-ml-key": make_token("0", KEY)}
    assert get(sim, EXPORT + "tenants.csv", headers).status_code == 404


@pytest.mark.parametrize("offset,status", [(-30, 200), (30, 200), (-10, 200), (-31, 404), (31, 404), (-32, 404)])
def test_inclusive_thirty_second_window(sim: TotaraSimulator, offset: int, status: int) -> None:
    assert get(sim, EXPORT + "tenants.csv", signed(NOW + offset)).status_code == status


def test_multitenancy_off(export_dir: Path) -> None:
    with TotaraSimulator(export_dir, KEY, multitenancy=False, clock=lambda: NOW) as sim:
        tenants = get(sim, EXPORT + "tenants.csv")
        assert tenants.status_code == 204 and tenants.content == b""
        assert get(sim, EXPORT + "user_data_0.csv").status_code == 200
        assert get(sim, EXPORT + "user_data_3.csv").status_code == 404


def test_not_ready_without_flag(tmp_path: Path) -> None:
    folder = write_export(tmp_path / "export", ["0"], completed=False)
    with TotaraSimulator(folder, KEY, clock=lambda: NOW) as sim:
        response = get(sim, EXPORT + "tenants.csv")
        assert response.status_code == 202 and response.content == b""


def test_known_but_missing_file_is_202(sim: TotaraSimulator, export_dir: Path) -> None:
    (export_dir / "item_data_3.csv").unlink()
    assert get(sim, EXPORT + "item_data_3.csv").status_code == 202


def test_feature_disabled(export_dir: Path) -> None:
    with TotaraSimulator(export_dir, KEY, enabled=False, clock=lambda: NOW) as sim:
        response = get(sim, EXPORT + "tenants.csv")
        assert response.status_code == 500
        assert "Recommendations engine is disabled" in response.text


def test_not_ready_times_counted_per_file(sim: TotaraSimulator) -> None:
    sim.not_ready_times = 2
    codes = [get(sim, EXPORT + name).status_code for name in ("tenants.csv", "tenants.csv", "user_data_0.csv", "tenants.csv")]
    assert codes == [202, 202, 202, 200]


def test_status_override(sim: TotaraSimulator) -> None:
    sim.status_override = {"item_data_0.csv": 500}
    assert get(sim, EXPORT + "item_data_0.csv").status_code == 500
    assert get(sim, EXPORT + "item_data_3.csv").status_code == 200


def test_truncation_declares_more_than_it_sends(sim: TotaraSimulator) -> None:
    sim.truncate_bytes = 5
    with pytest.raises(httpx.RemoteProtocolError):
        get(sim, EXPORT + "tenants.csv")


def test_stall_triggers_client_read_timeout(sim: TotaraSimulator) -> None:
    sim.stall_seconds = 30.0
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(sim.url + EXPORT + "tenants.csv", headers=signed(), timeout=httpx.Timeout(2.0, read=0.2))


def test_graphql_status_probe_needs_no_auth(sim: TotaraSimulator) -> None:
    body = {"operationName": "totara_webapi_status_nosession", "variables": {}, "extensions": {}}
    response = httpx.post(sim.url + "/totara/webapi/ajax.php", json=body)
    assert response.status_code == 200
    status = response.json()["data"]["totara_webapi_status"]
    assert status["status"] == "ok" and status["timestamp"] == NOW and str(2023) in status["date"]


def test_graphql_other_operation_refused(sim: TotaraSimulator) -> None:
    response = httpx.post(sim.url + "/totara/webapi/ajax.php", json={"operationName": "core_user_users"})
    assert response.status_code == 400 and "errors" in response.json()


def test_each_request_logged(sim: TotaraSimulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ml_service.simulator")
    get(sim, EXPORT + "nope.csv")
    assert f"GET {EXPORT}nope.csv -> 404" in [r.getMessage() for r in caplog.records if r.name == "ml_service.simulator"]


def test_serve_forever_prints_url_and_stops_on_sigterm(export_dir: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from ml_service.demo.simulator import serve_forever; "
        "serve_forever(Path(sys.argv[1]), 'abc123', '127.0.0.1', 0, True)"
    )
    process = subprocess.Popen([sys.executable, "-c", code, str(export_dir)], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        url = line.split(" on ", 1)[1].split()[0]
        response = httpx.get(url + EXPORT + "tenants.csv", headers=signed_headers(KEY, lower=True))
        assert response.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def test_overridden_204_keeps_the_connection_usable(sim: TotaraSimulator) -> None:
    sim.status_override = {"user_data_0.csv": 204}
    with httpx.Client() as client:
        assert client.get(sim.url + EXPORT + "user_data_0.csv", headers=signed()).status_code == 204
        follow_up = client.get(sim.url + EXPORT + "tenants.csv", headers=signed())
    assert follow_up.status_code == 200 and follow_up.text == "tenants\n0\n3\n"
