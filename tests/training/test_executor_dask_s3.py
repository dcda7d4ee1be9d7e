"""The cluster form end to end: Dask worker processes that share nothing with the orchestrator but an S3 store (moto).

The export is staged in the bucket, each worker downloads its tenant's files, trains, gates and publishes to the
bucket; the staging prefix is gone afterwards; a second run on the same export reuses the last search.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

distributed = pytest.importorskip("distributed")

from ml_service.config import Settings  # noqa: E402
from ml_service.demo.generate import generate_export  # noqa: E402
from ml_service.source.folder import FolderSource  # noqa: E402
from ml_service.store import ModelStore  # noqa: E402
from ml_service.store.s3 import FsspecBackend  # noqa: E402
from ml_service.training.executor import make_executor  # noqa: E402
from ml_service.training.executor_stage import STAGING_PREFIX  # noqa: E402
from tests.store.s3_support import BUCKET, S3, moto_s3  # noqa: E402


@pytest.fixture(scope="module")
def s3_and_client() -> Iterator[tuple[S3, Any]]:
    with moto_s3() as s3:  # sets the credentials before the worker processes start: they inherit them
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                      resources={"threads": 1, "MEMORY": 4000}, silence_logs=40) as cluster:
            with distributed.Client(cluster, set_as_default=False) as client:
                client.wait_for_workers(2, timeout=60)
                yield s3, client


def test_workers_train_from_and_publish_to_the_object_store(tmp_path: Path, s3_and_client: tuple[S3, Any]) -> None:
    s3, client = s3_and_client
    export = tmp_path / "export"
    generate_export(export, seed=5, users=200, items=60, interactions=4000, tenants=2)
    settings = Settings(models_dir=tmp_path / "orchestrator", logs_dir=tmp_path / "logs", algorithm="auto",
                        num_threads=1, auto_time_budget_s=60, anytime_publish=False,
                        store_url=f"s3://{BUCKET}/cluster", s3_endpoint_url=s3.endpoint)
    settings.ensure_dirs()
    store = ModelStore.from_settings(settings)
    assert isinstance(store.backend, FsspecBackend)
    executor = make_executor(settings, client)

    leftover = f"{STAGING_PREFIX}/20260101T000000Z-99999-dead/user_data_0.csv"  # a killed run's staged export
    store.backend.write(leftover, b"user_id\n")
    first = executor.train(settings, FolderSource(export), store)
    assert first.ok, [(r.tenant, r.msg) for r in first.tenants]
    tenants = sorted(r.tenant for r in first.tenants)
    assert tenants == ["0", "1", "2"]
    for result in first.tenants:
        assert result.version is not None and store.current_version(result.tenant) == result.version
        assert store.load(result.tenant).model.n_users > 0  # complete in the bucket, hashes checked
    assert store.backend.children(STAGING_PREFIX) == []  # the run's staged export was deleted, and the leftover
    assert not Path(settings.staging_dir).exists() or not any(Path(settings.staging_dir).iterdir())

    second = executor.train(settings, FolderSource(export), store)
    assert second.ok
    records = [json.loads(line) for line in settings.training_jsonl.read_text().splitlines()]
    finals = [r for r in records if r.get("event") == "tenant" and r.get("executor") == "dask"]
    assert len(finals) == 2 * len(tenants)
    trained = [r for r in finals[len(tenants):] if r["state"] == "trained"]
    assert trained and all(r["gate"] is not None for r in trained)  # the final gate ran on the worker
    # the same export again: the worker found the last search in the bucket and refitted its choice
    assert all(r["auto"]["search"]["kind"] == "reuse" for r in trained)


def test_the_models_in_the_bucket_are_the_local_executors(tmp_path: Path, s3_and_client: tuple[S3, Any]) -> None:
    import numpy as np
    import scipy.sparse as sp

    from ml_service.training.executor import LocalExecutor

    s3, client = s3_and_client
    export = tmp_path / "export"
    generate_export(export, seed=6, users=160, items=50, interactions=3000, tenants=1)
    common = {"algorithm": "mf", "num_threads": 1, "auto_time_budget_s": 3600, "anytime_publish": False}
    local = Settings(models_dir=tmp_path / "local", logs_dir=tmp_path / "local-logs", **common)  # type: ignore[arg-type]
    local.ensure_dirs()
    local_store = ModelStore(local.recommender_dir)
    assert LocalExecutor().train(local, FolderSource(export), local_store).ok
    remote = Settings(models_dir=tmp_path / "orchestrator", logs_dir=tmp_path / "logs",  # type: ignore[arg-type]
                      store_url=f"s3://{BUCKET}/same-models", s3_endpoint_url=s3.endpoint, **common)
    remote.ensure_dirs()
    remote_store = ModelStore.from_settings(remote)
    assert make_executor(remote, client).train(remote, FolderSource(export), remote_store).ok
    for tenant in ("0", "1"):
        ours, theirs = remote_store.load(tenant).model, local_store.load(tenant).model
        mine, other = ours.arrays(), theirs.arrays()
        assert sorted(mine) == sorted(other)
        for name, value in mine.items():  # same seed, 1 thread: the same model, array for array
            if sp.issparse(value):
                assert (value != other[name]).nnz == 0, name
            else:
                np.testing.assert_array_equal(value, other[name], err_msg=name)
        assert ours.metrics == theirs.metrics
