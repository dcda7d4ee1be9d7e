"""Distributed training on a real Dask LocalCluster (worker processes): same models as the local executor, a worker
killed mid-task, a malformed tenant failing alone, `ml-service train` / `batch` / `worker` on the cluster."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

distributed = pytest.importorskip("distributed")

from ml_service.batch import run_batch  # noqa: E402
from ml_service.config import Settings  # noqa: E402
from ml_service.demo.generate import generate_export  # noqa: E402
from ml_service.source.folder import FolderSource  # noqa: E402
from ml_service.store import ModelStore  # noqa: E402
from ml_service.training.executor import LocalExecutor, make_executor  # noqa: E402
from ml_service.training.logs import read_summary  # noqa: E402

WORKER_RESOURCES = {"threads": 1, "MEMORY": 4000}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  resources=WORKER_RESOURCES, silence_logs=40) as local:
        yield local


@pytest.fixture()
def client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster, set_as_default=False) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    generate_export(out, seed=3, users=240, items=80, interactions=4800, tenants=3)
    return out


def _settings(root: Path, **changes: object) -> Settings:
    settings = Settings(models_dir=root / "models", logs_dir=root / "logs", algorithm="mf", num_threads=1,
                        auto_time_budget_s=30, anytime_publish=False).with_(**changes)
    settings.ensure_dirs()
    return settings


def _arrays(store: ModelStore, tenant: str) -> dict[str, str]:
    """SHA-256 of every array file of the tenant's current version: equal digests = equal models."""
    folder = store.root / tenant / str(store.current_version(tenant))
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.npy"))}


def test_dask_trains_the_same_models_as_the_local_executor(tmp_path: Path, export: Path, client: Any) -> None:
    local = _settings(tmp_path / "local", auto_time_budget_s=3600)  # no tuning deadline that a busy machine could hit
    local_store = ModelStore(local.recommender_dir)
    assert LocalExecutor().train(local, FolderSource(export), local_store).ok
    dask = _settings(tmp_path / "dask", auto_time_budget_s=3600)
    dask_store = ModelStore(dask.recommender_dir)
    result = make_executor(dask, client).train(dask, FolderSource(export), dask_store)
    assert result.ok and sorted(r.tenant for r in result.tenants) == ["0", "1", "2", "3"]
    for tenant in ("0", "1", "2", "3"):
        assert dask_store.current_version(tenant) == next(r.version for r in result.tenants if r.tenant == tenant)
        arrays = _arrays(dask_store, tenant)
        assert arrays and arrays == _arrays(local_store, tenant), f"tenant {tenant}: the models differ"
        assert dask_store.load(tenant).model.metrics == local_store.load(tenant).model.metrics
    columns = ("ALGORITHM", "TENANT_ID", "MSG", "EPOCHS", "N_EMBEDDINGS", "SCORE")
    rows = lambda s: sorted(tuple(r[c] for c in columns) for r in read_summary(s.train_summary_log))  # noqa: E731
    assert rows(dask) == rows(local)  # the orchestrator wrote train_summary.log as the local run does
    assert dask_store.read_status()["2"]["state"] == "trained"
    assert not any(Path(dask.staging_dir).iterdir())  # the run's staging area is gone


def test_a_malformed_tenant_fails_alone_and_keeps_its_model(tmp_path: Path, export: Path, client: Any) -> None:
    data = tmp_path / "export"
    shutil.copytree(export, data)
    settings = _settings(tmp_path, algorithm="popular")
    store = ModelStore(settings.recommender_dir)
    executor = make_executor(settings, client)
    assert executor.train(settings, FolderSource(data), store).ok
    before = {t: store.current_version(t) for t in ("0", "1", "2", "3")}
    (data / "user_interactions_2.csv").write_text("this,is\nnot,an,export\n")
    result = executor.train(settings, FolderSource(data), store)
    states = {r.tenant: (r.state, r.msg) for r in result.tenants}
    assert not result.ok and states["2"][0] == "failed" and "user_interactions_2.csv" in states["2"][1]
    assert all(states[t][0] != "failed" for t in ("0", "1", "3"))
    assert store.current_version("2") == before["2"]  # its previous model keeps serving
    assert all(store.current_version(t) != before[t] for t in ("0", "1", "3"))
    assert store.read_status()["2"]["state"] == "serving-previous"
    last = [r for r in read_summary(settings.train_summary_log) if r["TENANT_ID"] == "2"][-1]
    assert last["MSG"].startswith("Invalid export data")


def test_a_worker_killed_mid_task_does_not_lose_a_tenant(tmp_path: Path, client: Any) -> None:
    export = tmp_path / "big"
    generate_export(export, seed=5, users=1500, items=300, interactions=40000, tenants=3)
    settings = _settings(tmp_path, auto_time_budget_s=60)
    store = ModelStore(settings.recommender_dir)
    killed: list[int] = []

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            busy = [w for w, keys in client.processing().items() if any(str(k).startswith("train_task") or "train-" in str(k) for k in keys)]
            if busy:
                # No sleep "to be inside the task": a quiet machine fits an mf tenant of this size in well under a
                # second, so a fixed wait could outlast every task. The task must still be running at the kill.
                pid = client.run(os.getpid, workers=[busy[0]]).get(busy[0])
                if pid and any("train-" in str(k) for k in client.processing().get(busy[0], ())):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    result = make_executor(settings, client).train(settings, FolderSource(export), store)
    killer.join(10)
    assert killed, "no worker was killed while it trained a tenant"
    assert result.ok, [(r.tenant, r.msg) for r in result.tenants]
    served = {r.tenant: (r.state, r.version, store.current_version(r.tenant), r.msg) for r in result.tenants}
    assert all(state == "trained" and current == version for state, version, current, _ in served.values()), served
    assert len(result.tenants) == 4
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker for the next tests


def test_train_command_and_batch_use_the_cluster(tmp_path: Path, export: Path, cluster: Any, client: Any) -> None:
    env = {**os.environ, "ML_TRAIN_EXECUTOR": "dask", "ML_DASK_SCHEDULER": cluster.scheduler_address,
           "ML_MODELS_DIR": str(tmp_path / "models"), "ML_LOGS_DIR": str(tmp_path / "logs"),
           "ML_RECOMMENDATION_ALGORITHM": "popular", "ML_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "ml_service.cli", "train", "--source", str(export)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    records = (tmp_path / "logs" / "training.jsonl").read_text()
    assert '"executor": "dask"' in records
    assert ModelStore(tmp_path / "models" / "recommender").current_version("3")
    # The legacy batch, one task per tenant: the same files as the local batch writes.
    outputs = {}
    for name, executor in (("local", None), ("dask", make_executor(_settings(tmp_path), client))):
        folder = tmp_path / f"batch-{name}"
        shutil.copytree(export, folder)
        code = run_batch(folder, _settings(tmp_path, algorithm="popular"), result_count_user=5, result_count_item=5,
                         executor=executor, out=open(os.devnull, "w"))
        assert code == 0
        outputs[name] = {p.name: p.read_bytes() for p in sorted(folder.glob("i2*_*.csv"))}
    assert outputs["dask"] == outputs["local"] and len(outputs["local"]) == 8


def test_worker_command_joins_with_its_resources(cluster: Any, client: Any) -> None:
    worker = subprocess.Popen([sys.executable, "-m", "ml_service.cli", "worker", cluster.scheduler_address,
                               "--nthreads", "2", "--memory-mb", "1500", "--name", "extra-worker"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        client.wait_for_workers(3, timeout=120)
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        extra = next(w for w in workers if w.get("name") == "extra-worker")
        assert extra["resources"] == {"threads": 2.0, "MEMORY": 1500.0} and extra["nthreads"] == 2
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(60)
