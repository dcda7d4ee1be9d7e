"""kill -9 of `ml-service train` while it downloads, loads, fits or publishes: the previous models keep serving,
no half-written version is ever loaded, and the next run publishes and serves new versions."""

from __future__ import annotations

import random
import signal
import time

import pytest

from tests.faults.conftest import Scenario
from tests.faults.harness import (
    TENANTS,
    current_versions,
    leftovers,
    run_train,
    serving_problems,
    staging_leftovers,
    touch_state,
    train_and_kill,
)

SEED = 9


def _kill_then_recover(scenario: Scenario, stage: str, tenant: str) -> None:
    env, service = scenario.env, scenario.service
    before = current_versions(env)
    frozen_problems: list[str] = []

    def while_frozen() -> None:  # the half-written .tmp- folder is on disk: make the server re-read the store
        touch_state(env)
        time.sleep(2.5)  # more than two refresh intervals
        now = current_versions(env)  # tenants before the killed one have published in this run
        if now[tenant] != before[tenant]:
            frozen_problems.append(f"tenant {tenant}: CURRENT switched to {now[tenant]} while its publish was frozen")
        frozen_problems.extend(serving_problems(service, env, now, timeout=5))

    if stage == "download":  # each file stalls after its headers, so the kill lands inside a transfer
        scenario.simulator.stall_seconds = 3.0
    try:
        outcome = train_and_kill(env, (), stage, tenant, random.Random(f"{SEED}-{stage}"), while_frozen=while_frozen)
    finally:
        scenario.reset_simulator()
    assert outcome.in_stage and outcome.returncode == -signal.SIGKILL, outcome
    assert frozen_problems == []
    after_kill = current_versions(env)
    killed_at = TENANTS.index(tenant)
    assert {t: after_kill[t] for t in TENANTS[killed_at:]} == {t: before[t] for t in TENANTS[killed_at:]}
    assert serving_problems(service, env, after_kill) == []

    done = run_train(env)
    assert done.returncode == 0, done.stderr[-2000:]
    after = current_versions(env)
    assert all(after[t] != after_kill[t] for t in TENANTS)
    assert serving_problems(service, env, after) == []
    assert leftovers(env) == []


@pytest.mark.parametrize("stage, tenant", [("download", "0"), ("load", "0"), ("fit", "0"), ("publish", "1")])
def test_kill_in_stage_keeps_serving_and_the_next_run_succeeds(scenario: Scenario, stage: str, tenant: str) -> None:
    _kill_then_recover(scenario, stage, tenant)


@pytest.mark.xfail(
    strict=True,
    reason="a training run killed while downloading leaves its staging folder <ML_MODELS_DIR>/staging/<stamp>-<pid>-* "
    "behind, and the next run does not sweep it (issue 9, point 4)",
)
def test_staging_folder_of_a_killed_download_is_swept_by_the_next_run(scenario: Scenario) -> None:
    scenario.simulator.stall_seconds = 3.0
    try:
        outcome = train_and_kill(scenario.env, (), "download", "0", random.Random(SEED))
    finally:
        scenario.reset_simulator()
    assert outcome.in_stage and staging_leftovers(scenario.env), outcome
    done = run_train(scenario.env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert staging_leftovers(scenario.env) == []
