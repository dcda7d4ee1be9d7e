"""Settings: defaults, validation messages naming the variable, ML_BIND forms."""

from pathlib import Path

import pytest

from ml_service.config import BindAddress, ConfigError, Settings, parse_bind

BASE = {"ML_TOTARA_URL": "https://totara.example", "ML_TOTARA_KEY": "k"}


def test_defaults() -> None:
    s = Settings.from_env(BASE)
    assert s.models_dir == Path("data/models") and s.logs_dir == Path("data/logs")
    assert s.retrain_freq_minutes == 1440 and s.num_threads == 4 and s.algorithm == "auto"
    assert s.bind == (BindAddress("0.0.0.0", 5000),) and s.app_mode == "Production" and not s.dev
    assert s.validation_protocol == "latest" and s.identity_features and s.seen_policy == "exclude"
    assert s.anytime_publish
    assert s.train_timeout_minutes == 180.0
    assert Settings.from_env({**BASE, "ML_TRAIN_TIMEOUT": "0.05"}).train_timeout_minutes == 0.05  # fractions allowed


@pytest.mark.parametrize("missing", ["ML_TOTARA_URL", "ML_TOTARA_KEY"])
def test_required_variables_are_named(missing: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        Settings.from_env(env)


@pytest.mark.parametrize(
    "name,value,fragment",
    [
        ("ML_NUM_THREADS", "zero", "whole number"),
        ("ML_NUM_THREADS", "0", "between 1 and 256"),
        ("ML_RECOMMENDATION_RETRAIN_FREQ", "-5", "at least"),
        ("ML_RECOMMENDATION_ALGORITHM", "magic", "allowed values"),
        ("ML_BIND", "localhost", "HOST:PORT"),
        ("ML_BIND", "*:70000", "outside 1-65535"),
        ("ML_DEV", "maybe", "use 1 or 0"),
        ("ML_TOTARA_URL", "ftp://x", "http:// or https://"),
        ("FLASK_ENV", "staging", "production, development, testing"),
        ("ML_VALIDATION_PROTOCOL", "future", "latest, random"),
        ("ML_SEEN_POLICY", "hide", "exclude, demote"),
        ("ML_TRAIN_TIMEOUT", "-1", "at least 0"),
        ("ML_TRAIN_TIMEOUT", "soon", "a number"),
        ("ML_ANYTIME_PUBLISH", "maybe", "use 1 or 0"),
    ],
)
def test_bad_values_name_variable_value_and_allowed(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({**BASE, name: value})
    assert name in str(err.value) and value in str(err.value) and fragment in str(err.value)


def test_models_and_logs_dirs_must_differ(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be different"):
        Settings.from_env({**BASE, "ML_MODELS_DIR": str(tmp_path), "ML_LOGS_DIR": str(tmp_path)})


def test_bind_forms() -> None:
    assert parse_bind("*:5000") == (BindAddress("0.0.0.0", 5000),)
    assert parse_bind("127.0.0.1:5000 [::1]:5001") == (BindAddress("127.0.0.1", 5000), BindAddress("::1", 5001))
    assert str(BindAddress("::1", 5001)) == "[::1]:5001"


def test_dev_mode_and_flask_env() -> None:
    assert Settings.from_env({**BASE, "ML_DEV": "1"}).app_mode == "Development"
    assert Settings.from_env({**BASE, "FLASK_ENV": "TESTING"}).app_mode == "Testing"


def test_ensure_dirs_creates(tmp_path: Path) -> None:
    s = Settings.from_env({**BASE, "ML_MODELS_DIR": str(tmp_path / "m"), "ML_LOGS_DIR": str(tmp_path / "l")})
    s.ensure_dirs()
    assert (tmp_path / "m").is_dir() and (tmp_path / "l").is_dir()


def test_store_settings_defaults_and_validation() -> None:
    s = Settings.from_env(BASE)
    assert s.run_lock_stale_minutes == 30.0 and s.tenant_retention_runs == 3
    s = Settings.from_env({**BASE, "ML_RUN_LOCK_STALE": "2.5", "ML_TENANT_RETENTION_RUNS": "0"})
    assert s.run_lock_stale_minutes == 2.5 and s.tenant_retention_runs == 0
    for name, value, fragment in [
        ("ML_RUN_LOCK_STALE", "0", "ML_RUN_LOCK_STALE='0' is invalid: expected a value between 0.05 and 10080"),
        ("ML_RUN_LOCK_STALE", "soon", "ML_RUN_LOCK_STALE='soon' is invalid: expected a number"),
        ("ML_TENANT_RETENTION_RUNS", "-1", "ML_TENANT_RETENTION_RUNS='-1' is invalid: expected a value between 0 and 10000"),
        ("ML_TENANT_RETENTION_RUNS", "2.5", "expected a whole number"),
    ]:
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({**BASE, name: value})
        assert fragment in str(caught.value)
def test_model_load_retry_waits() -> None:
    s = Settings.from_env(BASE)
    assert (s.load_retry_wait_s, s.load_retry_max_wait_s) == (1.0, 60.0)
    s = Settings.from_env({**BASE, "ML_LOAD_RETRY_WAIT": "0.5", "ML_LOAD_RETRY_MAX_WAIT": "600"})
    assert (s.load_retry_wait_s, s.load_retry_max_wait_s) == (0.5, 600.0)
    for name in ("ML_LOAD_RETRY_WAIT", "ML_LOAD_RETRY_MAX_WAIT"):
        with pytest.raises(ConfigError, match=f"{name}='0' is invalid"):
            Settings.from_env({**BASE, name: "0"})
