"""Fixtures of the fault suite: one trained store per session, copied into each module's own scenario."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from ml_service.demo.run import SAMPLE_DIR
from ml_service.demo.simulator import TotaraSimulator
from tests.faults.harness import KEY, Service, current_versions, run_train, service_env


@dataclass
class Scenario:
    """A running simulator, a store with one good model per sample tenant, and a server serving it."""

    workdir: Path
    simulator: TotaraSimulator
    env: dict[str, str]
    service: Service

    def reset_simulator(self) -> None:
        """No fault knob set: the simulator serves the sample as Totara would."""
        sim = self.simulator
        sim.not_ready_times, sim.stall_seconds, sim.truncate_bytes = 0, 0.0, None
        sim.status_override, sim.fault_files = {}, None


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir whose store holds one model per sample tenant, trained by a real `ml-service train` run."""
    workdir = tmp_path_factory.mktemp("template")
    with TotaraSimulator(SAMPLE_DIR, KEY, port=0) as simulator:
        done = run_train(service_env(workdir, simulator.url))
    assert done.returncode == 0, done.stderr[-2000:]
    return workdir


def clone_workdir(template: Path, dest: Path) -> Path:
    """A private copy of the template's models and logs."""
    shutil.copytree(template / "models", dest / "models")
    shutil.copytree(template / "logs", dest / "logs")
    return dest


@pytest.fixture(scope="module")
def scenario(trained_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    workdir = clone_workdir(trained_template, tmp_path_factory.mktemp("scenario"))
    with TotaraSimulator(SAMPLE_DIR, KEY, port=0) as simulator:
        env = service_env(workdir, simulator.url)
        with Service(env, workdir / "server.log") as service:
            assert service.served_versions() == current_versions(env)
            yield Scenario(workdir, simulator, env, service)
