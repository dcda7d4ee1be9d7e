"""Totara down, resetting, babbling, silent, failing (500), truncating bodies or answering 202 forever: the run
fails with a message naming the cause, the previous models keep serving, and the next run succeeds."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Callable

from tests.faults.conftest import Scenario
from tests.faults.harness import (
    TENANTS,
    MisbehavingServer,
    current_versions,
    free_port,
    leftovers,
    run_train,
    serving_problems,
)

# (name, how to break Totara for the whole run, extra environment, words the error must contain)
WHOLE_RUN_FAULTS: list[tuple[str, Callable[[Scenario, ExitStack], str], dict[str, str], str]] = [
    ("connection refused", lambda s, stack: f"http://127.0.0.1:{free_port()}", {}, "cannot connect"),
    ("reset without an answer", lambda s, stack: stack.enter_context(MisbehavingServer("reset")).url, {}, "GET "),
    ("non-HTTP bytes", lambda s, stack: stack.enter_context(MisbehavingServer("garbage")).url, {}, "GET "),
    ("silence", lambda s, stack: stack.enter_context(MisbehavingServer("silence")).url, {"ML_READ_TIMEOUT": "1"}, "ML_READ_TIMEOUT"),
    ("HTTP 500 on tenants.csv", lambda s, stack: _break(s, status_override={"tenants.csv": 500}), {}, "HTTP 500"),
    ("202 forever", lambda s, stack: _break(s, not_ready_times=10**9), {}, "answered 202"),
]


def _break(scenario: Scenario, **knobs: object) -> str:
    for name, value in knobs.items():
        setattr(scenario.simulator, name, value)
    return scenario.simulator.url


def test_whole_run_faults_fail_the_run_and_keep_every_model(scenario: Scenario) -> None:
    env, service = scenario.env, scenario.service
    before = current_versions(env)
    outcomes = []
    for name, breaker, extra, words in WHOLE_RUN_FAULTS:
        with ExitStack() as stack:
            try:
                url = breaker(scenario, stack)
                done = run_train({**env, **extra, "ML_TOTARA_URL": url}, timeout=120)
            finally:
                scenario.reset_simulator()
        outcomes.append((name, done.returncode, words in done.stderr, done.stderr.strip().splitlines()[-1:]))
        assert current_versions(env) == before, name
    assert [o for o in outcomes if o[1] != 1 or not o[2]] == [], outcomes
    assert serving_problems(service, env, before) == []

    done = run_train(env)
    assert done.returncode == 0, done.stderr[-2000:]
    after = current_versions(env)
    assert all(after[t] != before[t] for t in TENANTS)
    assert serving_problems(service, env, after) == []


def test_failing_and_truncated_files_fail_only_their_tenants(scenario: Scenario) -> None:
    env, service, simulator = scenario.env, scenario.service, scenario.simulator
    before = current_versions(env)
    simulator.status_override = {"user_interactions_1.csv": 500}
    simulator.truncate_bytes, simulator.fault_files = 100, {"item_data_2.csv"}
    try:
        done = run_train(env)
    finally:
        scenario.reset_simulator()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "HTTP 500" in done.stdout and "cut short" in done.stdout, done.stdout
    after_fault = current_versions(env)
    assert after_fault["0"] != before["0"] and {t: after_fault[t] for t in "12"} == {t: before[t] for t in "12"}
    assert serving_problems(service, env, after_fault) == []
    tenants = service.get("/health-check").json()["service"]["tenants"]
    assert [tenants[t]["last_run_state"] for t in TENANTS] == ["trained", "serving-previous", "serving-previous"]

    done = run_train(env)
    assert done.returncode == 0, done.stderr[-2000:]
    after = current_versions(env)
    assert all(after[t] != after_fault[t] for t in TENANTS)
    assert serving_problems(service, env, after) == []
    assert leftovers(env) == []
