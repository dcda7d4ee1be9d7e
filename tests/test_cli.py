"""The `ml-service` command in subprocesses: train exit codes and summary, startup refusal, models list, call."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ml_service.demo.run import SAMPLE_DIR


def _run(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ml_service.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ML_")}
    return {**clean, "ML_MODELS_DIR": str(tmp_path / "models"), "ML_LOGS_DIR": str(tmp_path / "logs"),
            "ML_NUM_THREADS": "1"}


def test_train_from_a_folder_prints_the_summary_table(env: dict[str, str]) -> None:
    done = _run(["train", "--source", str(SAMPLE_DIR), "--algorithm", "popular"], env)
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[0].split()
    assert header == ["tenant", "state", "users", "items", "interactions", "algorithm", "parameters", "NDCG@10", "seconds"]
    assert [line.split()[0] for line in done.stdout.splitlines()[1:4]] == ["0", "1", "2"]
    assert "tenant 0: load" in done.stderr  # plain progress lines when not on a terminal
    listing = _run(["models", "list"], env)
    assert listing.returncode == 0 and "popular" in listing.stdout


def test_train_exits_non_zero_when_a_tenant_fails(env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "export"
    shutil.copytree(SAMPLE_DIR, folder)
    (folder / "user_interactions_2.csv").write_text("user_id,item_id\n1,engage_article1\n")
    done = _run(["train", "--source", str(folder), "--algorithm", "popular"], env)
    assert done.returncode == 1
    assert "tenant 2: Invalid export data: user_interactions_2.csv" in done.stdout


def test_train_a_tenant_that_is_not_in_the_export_exits_non_zero_naming_it(env: dict[str, str]) -> None:
    done = _run(["train", "--source", str(SAMPLE_DIR), "--algorithm", "popular", "--tenant", "1", "--tenant", "7"], env)
    assert done.returncode == 1
    assert f"Tenant '7' is not in the export ({SAMPLE_DIR}): nothing was trained for it" in done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()[1:]] == ["1"]  # the tenant that exists was trained
    alone = _run(["train", "--source", str(SAMPLE_DIR), "--algorithm", "popular", "--tenant", "7"], env)
    assert alone.returncode == 1 and "Tenant '7' is not in the export" in alone.stderr


@pytest.mark.parametrize("missing", ["ML_TOTARA_URL", "ML_TOTARA_KEY"])
def test_serve_refuses_to_start_without_totara_settings(env: dict[str, str], missing: str) -> None:
    env = {**env, "ML_TOTARA_URL": "https://totara.example", "ML_TOTARA_KEY": "k"}
    del env[missing]
    done = _run(["serve"], env, timeout=60)
    assert done.returncode == 2 and missing in done.stderr


def test_serve_refuses_a_bad_value_naming_it(env: dict[str, str]) -> None:
    env = {**env, "ML_TOTARA_URL": "https://totara.example", "ML_TOTARA_KEY": "k", "ML_BIND": "nonsense"}
    done = _run(["serve"], env, timeout=60)
    assert done.returncode == 2 and "ML_BIND='nonsense'" in done.stderr


def test_call_without_a_key_says_so(env: dict[str, str]) -> None:
    done = _run(["call", "/health-check"], env, timeout=60)
    assert done.returncode == 2 and "ML_TOTARA_KEY" in done.stderr
