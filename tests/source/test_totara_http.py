"""TotaraHttpSource against the real Totara simulator over HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Callable, Iterator

import pytest

from ml_service.config import Settings
from ml_service.demo.simulator import TotaraSimulator
from ml_service.source.base import SourceError
from ml_service.source.totara_http import TotaraHttpSource, export_url

KEY = "s3cret-key"


@pytest.fixture
def export_dir(tmp_path: Path, make_export: Callable[..., Path]) -> Path:
    return make_export(tmp_path / "totara-export", ["0", "3"])


@pytest.fixture
def sim(export_dir: Path) -> Iterator[TotaraSimulator]:
    with TotaraSimulator(export_dir, KEY) as simulator:
        yield simulator


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    return tmp_path / "staging"


def settings_for(url: str, **changes: object) -> Settings:
    base = Settings(totara_url=url, totara_key=KEY, download_retry_wait_s=0.01, download_retries=3,
                    connect_timeout_s=2.0, read_timeout_s=2.0)
    return base.with_(**changes)


def source(url: str, staging: Path, sleeps: list[float] | None = None, **changes: object) -> TotaraHttpSource:
    record = sleeps if sleeps is not None else []
    return TotaraHttpSource(settings_for(url, **changes), staging, sleep=record.append)


def staged_files(staging: Path) -> list[str]:
    return sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())


def test_round_trip_two_tenants(sim: TotaraSimulator, export_dir: Path, staging: Path) -> None:
    snapshot = source(sim.url, staging).fetch()
    assert snapshot.tenants == ["0", "3"]
    assert snapshot.failed == {}
    assert snapshot.temporary is True
    assert snapshot.root.parent == staging
    for tenant in ("0", "3"):
        for path in snapshot.files(tenant).__dict__.values():
            if isinstance(path, Path):
                assert path.read_bytes() == (export_dir / path.name).read_bytes()
    assert not list(snapshot.root.glob("*.part"))
    requested = [path.rsplit("/", 1)[1] for _, path, _ in sim.requests]
    assert requested == [
        "tenants.csv",
        "user_interactions_0.csv", "user_data_0.csv", "item_data_0.csv",
        "user_interactions_3.csv", "user_data_3.csv", "item_data_3.csv",
    ]
    assert all(path.startswith("/pluginfile.php/1/ml_recommender/export/") for _, path, _ in sim.requests)
    snapshot.cleanup()
    assert not snapshot.root.exists()


def test_wrong_key_gives_precise_failure(sim: TotaraSimulator, staging: Path) -> None:
    with pytest.raises(SourceError) as caught:
        source(sim.url, staging, totara_key="not-the-key").fetch()
    message = str(caught.value)
    assert "404" in message and "ML_TOTARA_KEY" in message and "clocks" in message
    assert f"{sim.url}/pluginfile.php/1/ml_recommender/export/tenants.csv" in message
    assert "not-the-key" not in message
    assert staged_files(staging) == [] and list(staging.iterdir()) == []


def test_not_ready_three_times_then_success(sim: TotaraSimulator, staging: Path) -> None:
    sim.not_ready_times = 3
    sleeps: list[float] = []
    snapshot = source(sim.url, staging, sleeps, download_retry_wait_s=0.25).fetch()
    assert snapshot.usable_tenants == ["0", "3"]
    assert [status for _, _, status in sim.requests_for("tenants.csv")] == [202, 202, 202, 200]
    assert sleeps == [0.25] * 3 * 7  # three waits for each of the seven files
    snapshot.cleanup()


def test_not_ready_forever_fails_after_exactly_four_requests(sim: TotaraSimulator, staging: Path) -> None:
    sim.not_ready_times = 1000
    sim.fault_files = {"user_data_3.csv"}
    snapshot = source(sim.url, staging).fetch()
    assert snapshot.usable_tenants == ["0"]
    assert "202" in snapshot.failed["3"] and "4 times" in snapshot.failed["3"]
    assert [status for _, _, status in sim.requests_for("user_data_3.csv")] == [202] * 4
    assert sim.requests_for("item_data_3.csv") == []  # the tenant's remaining file is skipped
    assert staged_files(snapshot.root) == ["item_data_0.csv", "tenants.csv", "user_data_0.csv", "user_interactions_0.csv"]
    snapshot.cleanup()


def test_tenants_204_means_single_tenant(export_dir: Path, staging: Path) -> None:
    with TotaraSimulator(export_dir, KEY, multitenancy=False) as sim:
        snapshot = source(sim.url, staging).fetch()
        assert sim.requests_for("tenants.csv")[0][2] == 204
    assert snapshot.tenants == ["0"] and snapshot.failed == {}
    assert (snapshot.root / "tenants.csv").read_text() == "tenants\n0\n"
    snapshot.cleanup()


def test_204_on_a_tenant_file_is_a_failure(sim: TotaraSimulator, staging: Path) -> None:
    sim.status_override = {"user_interactions_0.csv": 204}
    snapshot = source(sim.url, staging).fetch()
    assert snapshot.usable_tenants == ["3"]
    assert "204" in snapshot.failed["0"]
    snapshot.cleanup()


def test_connection_refused_names_the_url(staging: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(SourceError) as caught:
        source(url, staging).fetch()
    assert export_url(url, "tenants.csv") in str(caught.value)
    assert "cannot connect" in str(caught.value)
    assert list(staging.iterdir()) == []


def test_read_timeout_fails_that_tenant(sim: TotaraSimulator, staging: Path) -> None:
    sim.stall_seconds = 30.0
    sim.fault_files = {"item_data_3.csv"}
    snapshot = source(sim.url, staging, read_timeout_s=0.3).fetch()
    assert snapshot.usable_tenants == ["0"]
    assert "ML_READ_TIMEOUT" in snapshot.failed["3"]
    assert staged_files(snapshot.root) == ["item_data_0.csv", "tenants.csv", "user_data_0.csv", "user_interactions_0.csv"]
    snapshot.cleanup()


def test_truncated_body_fails_and_leaves_no_partial_file(sim: TotaraSimulator, staging: Path) -> None:
    sim.truncate_bytes = 10
    sim.fault_files = {"user_data_3.csv"}
    snapshot = source(sim.url, staging).fetch()
    assert snapshot.usable_tenants == ["0"]
    assert "user_data_3.csv" in snapshot.failed["3"] and "cut short" in snapshot.failed["3"]
    assert staged_files(snapshot.root) == ["item_data_0.csv", "tenants.csv", "user_data_0.csv", "user_interactions_0.csv"]
    snapshot.cleanup()


def test_truncated_tenants_file_raises_and_cleans_staging(sim: TotaraSimulator, staging: Path) -> None:
    sim.truncate_bytes = 3
    sim.fault_files = {"tenants.csv"}
    with pytest.raises(SourceError, match="tenants.csv"):
        source(sim.url, staging).fetch()
    assert list(staging.iterdir()) == []


def test_one_tenant_500_other_tenant_ok(sim: TotaraSimulator, staging: Path) -> None:
    sim.status_override = {"user_interactions_3.csv": 500}
    snapshot = source(sim.url, staging).fetch()
    assert snapshot.tenants == ["0", "3"]
    assert snapshot.usable_tenants == ["0"]
    assert "500" in snapshot.failed["3"] and "user_interactions_3.csv" in snapshot.failed["3"]
    assert sim.requests_for("user_data_3.csv") == []
    snapshot.cleanup()


def test_partial_tenant_files_deleted(sim: TotaraSimulator, staging: Path) -> None:
    sim.status_override = {"item_data_3.csv": 404}
    snapshot = source(sim.url, staging).fetch()
    assert "404" in snapshot.failed["3"]
    assert not snapshot.files("3").user_interactions.exists()
    assert not snapshot.files("3").user_data.exists()
    snapshot.cleanup()


def test_feature_disabled_is_reported(export_dir: Path, staging: Path) -> None:
    with TotaraSimulator(export_dir, KEY, enabled=False) as sim:
        with pytest.raises(SourceError, match="500.*ml_recommender"):
            source(sim.url, staging).fetch()
    assert list(staging.iterdir()) == []


def test_trailing_slash_gives_no_double_slash(sim: TotaraSimulator, staging: Path) -> None:
    snapshot = source(sim.url + "/", staging).fetch()
    assert snapshot.failed == {}
    assert sim.requests and all("//" not in path for _, path, _ in sim.requests)
    snapshot.cleanup()


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1:8080", ""])
def test_non_http_url_refused_without_request(sim: TotaraSimulator, staging: Path, url: str) -> None:
    with pytest.raises(SourceError, match="http:// or https://"):
        source(url, staging).fetch()
    assert sim.requests == []
    assert not staging.exists() or list(staging.iterdir()) == []


def test_requests_logged_without_key(sim: TotaraSimulator, staging: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ml_service.source")
    source(sim.url, staging).fetch().cleanup()
    lines = [r.getMessage() for r in caplog.records if r.name == "ml_service.source"]
    assert any("tenants.csv -> 200" in line for line in lines)
    assert len(lines) == 7
    assert all(KEY not in line for line in lines)

