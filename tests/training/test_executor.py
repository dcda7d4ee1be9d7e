"""Executor choice and settings, and what a tenant's task declares (threads, memory) for its size."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ml_service.config import ConfigError, Settings
from ml_service.training.executor import LocalExecutor, make_executor
from ml_service.training.executor_task import BASE_TASK_MB, task_limits
from ml_service.training.logs import read_summary

MB = 2**20


def test_local_is_the_default_executor() -> None:
    settings = Settings.from_env({}, require_totara=False)
    assert settings.train_executor == "local" and isinstance(make_executor(settings), LocalExecutor)


@pytest.mark.parametrize(("env", "message"), [
    ({"ML_TRAIN_EXECUTOR": "ray"}, "ML_TRAIN_EXECUTOR='ray' is invalid: allowed values are local, dask"),
    ({"ML_TRAIN_EXECUTOR": "dask"}, "ML_TRAIN_EXECUTOR=dask needs ML_DASK_SCHEDULER"),
    ({"ML_DASK_SCHEDULER": "scheduler:8786"}, "ML_DASK_SCHEDULER='scheduler:8786' is invalid"),
    ({"ML_DASK_TIMEOUT": "0"}, "ML_DASK_TIMEOUT='0' is invalid"),
])
def test_bad_executor_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env, require_totara=False)


def test_dask_settings_are_read() -> None:
    settings = Settings.from_env({"ML_TRAIN_EXECUTOR": "DASK", "ML_DASK_SCHEDULER": "tcp://scheduler:8786",
                                  "ML_DASK_TASK_MEMORY_FACTOR": "8", "ML_DASK_SMALL_TENANT_MB": "2"}, require_totara=False)
    assert (settings.train_executor, settings.dask_scheduler) == ("dask", "tcp://scheduler:8786")
    assert (settings.dask_task_memory_factor, settings.dask_small_tenant_mb) == (8.0, 2.0)


def test_task_limits_follow_the_tenant_size_within_what_workers_offer() -> None:
    settings = Settings(num_threads=4, dask_small_tenant_mb=1.0, dask_task_memory_factor=20.0)
    offered = {"threads": 4.0, "MEMORY": 8000.0}
    assert task_limits(100_000, settings, offered) == (1, BASE_TASK_MB + 1)  # a tiny tenant: one thread
    assert task_limits(50 * MB, settings, offered) == (4, BASE_TASK_MB + 1000)
    assert task_limits(1000 * MB, settings, offered) == (4, 8000)  # capped: never waits for a worker that cannot exist
    assert task_limits(50 * MB, settings, {"threads": 2.0, "MEMORY": 8000.0})[0] == 2
    assert task_limits(50 * MB, settings, {}) == (4, BASE_TASK_MB + 1000)


def test_local_map_yields_results_and_exceptions_in_order() -> None:
    def half(x: int) -> float:
        if x == 0:
            raise ZeroDivisionError("zero")
        return 1 / x

    out = list(LocalExecutor().map_tenants(half, [("a", 1, (2,)), ("b", 9, (0,)), ("c", 5, (4,))]))
    assert [t for t, _ in out] == ["a", "b", "c"] and out[0][1] == 0.5 and isinstance(out[1][1], ZeroDivisionError)


def test_an_unreachable_scheduler_fails_the_run_in_the_logs(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    sample = Path(__file__).resolve().parents[2] / "src" / "ml_service" / "demo" / "sample"
    env = {**os.environ, "ML_TRAIN_EXECUTOR": "dask", "ML_DASK_SCHEDULER": "tcp://127.0.0.1:9", "ML_DASK_TIMEOUT": "2",
           "ML_MODELS_DIR": str(tmp_path / "models"), "ML_LOGS_DIR": str(tmp_path / "logs")}
    done = subprocess.run([sys.executable, "-m", "ml_service.cli", "train", "--source", str(sample)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "cannot reach the Dask scheduler ML_DASK_SCHEDULER=tcp://127.0.0.1:9" in done.stderr
    rows = read_summary(tmp_path / "logs" / "train_summary.log")
    assert rows[-1]["TENANT_ID"] == "all" and "cannot reach the Dask scheduler" in rows[-1]["MSG"]
    shutil.copytree(sample, tmp_path / "data")
    batch = subprocess.run([sys.executable, "-m", "ml_service.cli", "batch", "--data_path", str(tmp_path / "data")], env=env,
                           capture_output=True, text=True, timeout=120)
    assert batch.returncode == 1 and "cannot reach the Dask scheduler" in batch.stderr
    assert not (tmp_path / "data" / "ml_started").exists()  # the next batch may start
