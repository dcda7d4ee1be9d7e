"""ML_TOTARA_VERIFY_TLS / ML_TOTARA_CA_BUNDLE against a real HTTPS server with a certificate made in the test."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from ml_service.api.health import ProbeError, TotaraProbe
from ml_service.config import ConfigError, Settings
from ml_service.source.base import SourceError
from ml_service.source.totara_http import TotaraHttpSource
from tests.source.hostile_server import HostileServer, self_signed_certificate

KEY = "s3cret-key"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command makes the certificate")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def https_totara(certificate: tuple[Path, Path]) -> Iterator[HostileServer]:
    cert, key = certificate
    with HostileServer(tls_cert=cert, tls_key=key) as server:
        yield server


def settings_from_env(url: str, **env: str) -> Settings:
    return Settings.from_env({"ML_TOTARA_URL": url, "ML_TOTARA_KEY": KEY, "ML_DOWNLOAD_RETRIES": "0",
                              "ML_CONNECT_TIMEOUT": "5", "ML_READ_TIMEOUT": "5", **env})


def fetch(settings: Settings, staging: Path):  # type: ignore[no-untyped-def]
    return TotaraHttpSource(settings, staging, sleep=lambda s: None).fetch()


def probe(settings: Settings, url: str) -> tuple[bool, float]:
    return asyncio.run(TotaraProbe.from_settings(settings).graphql_status(url, timeout_s=1.5))


def test_verified_with_the_ca_bundle(https_totara: HostileServer, certificate: tuple[Path, Path], tmp_path: Path) -> None:
    settings = settings_from_env(https_totara.url, ML_TOTARA_VERIFY_TLS="1", ML_TOTARA_CA_BUNDLE=str(certificate[0]))
    assert settings.totara_verify_tls and settings.totara_ca_bundle == certificate[0]
    snapshot = fetch(settings, tmp_path / "staging")
    assert snapshot.failed == {} and snapshot.usable_tenants == ["0"]
    snapshot.cleanup()
    assert probe(settings, https_totara.url)[0] is True


def test_verified_without_the_bundle_fails_with_advice(https_totara: HostileServer, tmp_path: Path) -> None:
    settings = settings_from_env(https_totara.url, ML_TOTARA_VERIFY_TLS="1")
    with pytest.raises(SourceError) as caught:
        fetch(settings, tmp_path / "staging")
    message = str(caught.value)
    assert "TLS certificate was refused" in message and "ML_TOTARA_CA_BUNDLE" in message
    assert "tenants.csv" in message
    with pytest.raises(ProbeError) as probed:
        probe(settings, https_totara.url)
    assert str(probed.value).startswith("Unable to communicate with Totara: Totara's TLS certificate was refused")
    assert "ML_TOTARA_VERIFY_TLS=0" in str(probed.value)


def test_not_verified_by_default_as_the_reference(https_totara: HostileServer, tmp_path: Path) -> None:
    settings = settings_from_env(https_totara.url)
    assert settings.totara_verify_tls is False
    snapshot = fetch(settings, tmp_path / "staging")
    assert snapshot.failed == {}
    snapshot.cleanup()
    assert probe(settings, https_totara.url)[0] is True


def test_ca_bundle_is_validated_at_start(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    url = "https://totara.example"
    with pytest.raises(ConfigError, match="ML_TOTARA_CA_BUNDLE=.*no such file"):
        settings_from_env(url, ML_TOTARA_VERIFY_TLS="1", ML_TOTARA_CA_BUNDLE=str(tmp_path / "missing.pem"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="cannot be read as PEM CA certificates"):
        settings_from_env(url, ML_TOTARA_VERIFY_TLS="1", ML_TOTARA_CA_BUNDLE=str(garbage))
    with pytest.raises(ConfigError, match="ML_TOTARA_VERIFY_TLS is off"):
        settings_from_env(url, ML_TOTARA_CA_BUNDLE=str(certificate[0]))
    with pytest.raises(ConfigError, match="ML_TOTARA_VERIFY_TLS='maybe'"):
        settings_from_env(url, ML_TOTARA_VERIFY_TLS="maybe")
