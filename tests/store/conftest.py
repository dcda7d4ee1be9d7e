"""Fixtures of the store tests: an empty store in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_service.store import ModelStore


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "recommender", keep_versions=5)
