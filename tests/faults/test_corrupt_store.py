"""Corrupt version files and garbage CURRENT files under a running server (and at its start): every other tenant
keeps being served and hot-swapped, the damaged tenant answers from its previous index, the next run succeeds."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.faults.conftest import Scenario
from tests.faults.harness import (
    PROBES,
    TENANTS,
    Service,
    copy_as_new_version,
    current_versions,
    flip_bytes,
    run_train,
    serving_problems,
    store_of,
    wait_until,
    write_current,
)

SEED = 9


def _largest_npy(folder: Path) -> Path:
    return max(folder.glob("*.npy"), key=lambda p: p.stat().st_size)


def _truncate(folder: Path) -> None:
    path = _largest_npy(folder)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGES = {
    "0": lambda folder: flip_bytes(_largest_npy(folder), random.Random(SEED)),
    "1": _truncate,
    "2": lambda folder: _largest_npy(folder).unlink(),
}


def _republish(scenario: Scenario, tenant: str) -> str:
    """A real publish of a new version of `tenant` (its current model again), as a training run would do."""
    store = store_of(scenario.env)
    return store.publish(tenant, store.load(tenant, mmap=False).model)


def test_corrupt_new_versions_are_never_loaded(scenario: Scenario) -> None:
    env, service = scenario.env, scenario.service
    before = current_versions(env)
    damaged = {tenant: copy_as_new_version(env, tenant, damage) for tenant, damage in DAMAGES.items()}
    assert current_versions(env) == damaged
    time.sleep(3)  # three refresh intervals: the server saw the new CURRENTs and refused each damaged version
    assert serving_problems(service, env, before) == []

    done = run_train(env)
    assert done.returncode == 0, done.stderr[-2000:]
    after = current_versions(env)
    assert all(after[t] not in (before[t], damaged[t]) for t in TENANTS)
    assert serving_problems(service, env, after) == []


GARBAGE = {
    "random bytes": bytes(random.Random(SEED).randrange(256) for _ in range(40)),
    "path traversal": b"../0/20261202T000000.000000Z-abcdef\n",
    "missing version": b"20261202T000000.000000Z-abcdef\n",
}


@pytest.mark.parametrize("garbage", list(GARBAGE))
def test_garbage_current_does_not_stop_other_tenants_hot_swapping(scenario: Scenario, garbage: str) -> None:
    env, service = scenario.env, scenario.service
    before = current_versions(env)
    write_current(env, "1", GARBAGE[garbage])
    try:
        expected = {**before, "0": _republish(scenario, "0")}  # tenant 1 keeps its previous index
        assert serving_problems(service, env, expected, timeout=8) == []  # eight refresh intervals
    finally:
        write_current(env, "1", (before["1"] + "\n").encode("ascii"))
    assert serving_problems(service, env, current_versions(env)) == []


def test_next_run_repairs_a_garbage_current(scenario: Scenario) -> None:
    env, service = scenario.env, scenario.service
    before = current_versions(env)
    write_current(env, "1", GARBAGE["random bytes"])
    done = run_train(env)
    assert done.returncode == 0, done.stderr[-2000:]
    after = current_versions(env)
    assert all(after[t] != before[t] for t in TENANTS)
    assert serving_problems(service, env, after) == []


def test_start_with_a_corrupt_current_version_serves_the_previous_one(scenario: Scenario) -> None:
    env = scenario.env
    before = current_versions(env)
    damaged = copy_as_new_version(env, "1", DAMAGES["0"])
    try:
        with Service(env, scenario.workdir / "server-corrupt.log") as fresh:
            assert serving_problems(fresh, env, before) == []
    finally:
        write_current(env, "1", (before["1"] + "\n").encode("ascii"))
    assert damaged != before["1"]


def test_start_with_a_garbage_current_serves_every_other_tenant(scenario: Scenario) -> None:
    env = scenario.env
    before = current_versions(env)
    write_current(env, "1", GARBAGE["path traversal"])
    try:
        with Service(env, scenario.workdir / "server-garbage.log") as fresh:
            others = {t: v for t, v in before.items() if t != "1"}
            wait_until(lambda: set(others.items()) <= set(fresh.served_versions().items()), 8, "tenants 0 and 2")
            assert serving_problems(fresh, env, {**others, **({"1": v} if (v := fresh.served_versions().get("1")) else {})}) == []
            user, _ = PROBES["1"]
            answer = fresh.get("/user-items", totara_user_id=user, item_type="container_course", tenant="1", n_items="5")
            assert answer.status_code < 500
    finally:
        write_current(env, "1", (before["1"] + "\n").encode("ascii"))
