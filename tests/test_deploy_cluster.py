"""deploy/cluster/: the compose file parses as YAML and is consistent (Docker cannot run here, so this is a syntax and
reference check, not a run): every service it names exists, the replicas behind nginx are the ones nginx.conf lists,
one orchestrator schedules and the replicas do not."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

CLUSTER = Path(__file__).resolve().parents[1] / "deploy" / "cluster"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / "docker-compose.yml").read_text())


def test_the_cluster_has_every_part(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"minio", "dask-scheduler", "dask-worker-1", "dask-worker-2", "orchestrator", "replica-1", "replica-2",
            "nginx"} <= set(services)
    for name, service in services.items():
        depends = service.get("depends_on", [])
        assert set(depends) <= set(services), f"{name} depends on a service that does not exist"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in compose["volumes"], f"{name}: volume {source} is not declared"


def test_training_goes_to_the_dask_scheduler_and_only_the_orchestrator_schedules(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("orchestrator", "dask-worker-1", "dask-worker-2", "replica-1", "replica-2"):
        env = services[name]["environment"]
        assert env["ML_TRAIN_EXECUTOR"] == "dask" and env["ML_DASK_SCHEDULER"] == "tcp://dask-scheduler:8786"
        assert env["ML_STORE_URL"].startswith("s3://")
    assert "--no-scheduler" not in (services["orchestrator"].get("command") or [])
    assert services["replica-1"]["command"] == ["--no-scheduler"] and services["replica-2"]["command"] == ["--no-scheduler"]
    assert services["dask-worker-2"]["entrypoint"][:2] == ["ml-service", "worker"]
    assert "--port" in services["dask-scheduler"]["entrypoint"] and "8786" in services["dask-scheduler"]["entrypoint"]


def test_nginx_balances_the_two_replicas(compose: dict[str, Any]) -> None:
    conf = (CLUSTER / "nginx.conf").read_text()
    assert sorted(re.findall(r"server (replica-\d+):5000", conf)) == ["replica-1", "replica-2"]
    assert conf.count("{") == conf.count("}")
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in compose["services"]["nginx"]["volumes"]
