"""kill -9 of `ml-service train` while it downloads, loads, fits or publishes: the previous models keep serving,
no half-written version is ever loaded, and the next run publishes and serves new versions."""

from __future__ import annotations

import random
import signal

import pytest

from tests.faults.conftest import Scenario
from tests.faults.harness import kill_and_recover, run_train, staging_leftovers, train_and_kill

SEED = 9


@pytest.mark.parametrize("stage, tenant", [("download", "0"), ("load", "0"), ("fit", "0"), ("publish", "1")])
def test_kill_in_stage_keeps_serving_and_the_next_run_succeeds(scenario: Scenario, stage: str, tenant: str) -> None:
    outcome, problems = kill_and_recover(
        scenario.env, scenario.service, scenario.simulator, stage, tenant, random.Random(f"{SEED}-{stage}")
    )
    assert outcome.in_stage and outcome.returncode == -signal.SIGKILL, outcome
    assert problems == []


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
