"""Fixtures of the API tests: a store with hand-made models and a real uvicorn server around create_app."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from ml_service.api.app import create_app
from ml_service.config import Settings
from ml_service.store import ModelStore
from tests.api.support import KEY, RunningServer, closed_port, make_model

@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        totara_url=f"http://127.0.0.1:{closed_port()}",
        totara_key=KEY,
        models_dir=tmp_path / "models",
        logs_dir=tmp_path / "logs",
        app_mode="Testing",
    )


@pytest.fixture
def store(settings: Settings) -> ModelStore:
    """Tenant 0 trained, tenant 3 reported untrained by the last run."""
    store = ModelStore(settings.recommender_dir)
    store.publish("0", make_model(seed=0))
    store.write_status(
        {
            "0": {"state": "trained", "msg": "success"},
            "3": {"state": "untrained", "msg": "The number of users or items is too small"},
        }
    )
    return store


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """serve(settings, store, **create_app kwargs) -> base URL of a running server (stopped after the test)."""
    servers: list[RunningServer] = []

    def start(settings: Settings, store: ModelStore, **kwargs: Any) -> str:
        server = RunningServer(create_app(settings, store, **kwargs)).start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def base_url(serve: Callable[..., str], settings: Settings, store: ModelStore) -> str:
    return serve(settings, store)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as http:
        yield http

