"""The observability settings: ML_METRICS, ML_METRICS_TOKEN, ML_ADMIN_* parsed, defaulted and validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_service.config import ConfigError, Settings


def test_defaults_leave_the_dashboard_off_and_metrics_open() -> None:
    settings = Settings.from_env({}, require_totara=False)
    assert settings.metrics_enabled and settings.metrics_token == ""
    assert settings.admin_users_file is None and settings.admin_password == ""
    assert settings.admin_session_s == 28800.0 and settings.admin_login_attempts == 5


def test_values_are_read() -> None:
    settings = Settings.from_env({"ML_METRICS": "0", "ML_METRICS_TOKEN": " tok ", "ML_ADMIN_USERS": "/etc/ml/users",
                                  "ML_ADMIN_PASSWORD": "pw with spaces ", "ML_ADMIN_SESSION_SECONDS": "600",
                                  "ML_ADMIN_LOGIN_ATTEMPTS": "3"}, require_totara=False)
    assert not settings.metrics_enabled and settings.metrics_token == "tok"
    assert settings.admin_users_file == Path("/etc/ml/users") and settings.admin_password == "pw with spaces "
    assert settings.admin_session_s == 600.0 and settings.admin_login_attempts == 3


@pytest.mark.parametrize("name, value, message", [
    ("ML_METRICS", "maybe", "ML_METRICS='maybe' is invalid"),
    ("ML_ADMIN_SESSION_SECONDS", "10", "ML_ADMIN_SESSION_SECONDS='10' is invalid: expected a value at least 60"),
    ("ML_ADMIN_LOGIN_ATTEMPTS", "0", "ML_ADMIN_LOGIN_ATTEMPTS='0' is invalid"),
    ("ML_ADMIN_LOGIN_ATTEMPTS", "x", "expected a whole number"),
])
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env({name: value}, require_totara=False)
