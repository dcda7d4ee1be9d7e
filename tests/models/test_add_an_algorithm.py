"""The README's "How to add an algorithm" example, run as it stands there: register, train, serve, store."""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from ml_service.config import ConfigError, Settings
from ml_service.models import registry
from ml_service.models.parts import ItemItemModel
from ml_service.serving import TenantIndex
from ml_service.source.folder import FolderSource
from ml_service.store import ModelStore
from ml_service.training.pipeline import run_training

README = Path(__file__).resolve().parents[2] / "README.md"
SAMPLE = Path(__file__).resolve().parents[2] / "src" / "ml_service" / "demo" / "sample"


def readme_example() -> str:
    """The first python block under the README's "How to add an algorithm" heading."""
    section = README.read_text(encoding="utf-8").split("## How to add an algorithm", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's How to add an algorithm section has no python block"
    return match.group(1)


@pytest.fixture
def cooccurrence() -> Iterator[str]:
    module = types.ModuleType("ml_service.models.cooccurrence")
    exec(compile(readme_example(), "README.md (How to add an algorithm)", "exec"), module.__dict__)  # registers it
    try:
        yield "cooccurrence"
    finally:
        registry._FACTORIES.pop("cooccurrence", None)


def test_the_example_is_about_thirty_lines() -> None:
    assert len(readme_example().strip().splitlines()) <= 40


def test_the_readme_algorithm_trains_serves_and_round_trips(tmp_path: Path, cooccurrence: str) -> None:
    with pytest.raises(ConfigError, match="allowed values"):
        Settings.from_env({"ML_RECOMMENDATION_ALGORITHM": "cooccurrenze"}, require_totara=False)
    settings = Settings.from_env(
        {"ML_RECOMMENDATION_ALGORITHM": cooccurrence, "ML_MODELS_DIR": str(tmp_path / "models"),
         "ML_LOGS_DIR": str(tmp_path / "logs"), "ML_ANYTIME_PUBLISH": "false", "ML_NUM_THREADS": "1"},
        require_totara=False,
    )
    assert settings.algorithm == cooccurrence and cooccurrence in registry.names()
    settings.ensure_dirs()
    store = ModelStore(settings.recommender_dir)
    result = run_training(settings, FolderSource(SAMPLE), store)
    trained = [r for r in result.tenants if r.state == "trained"]
    assert result.ok and trained
    for r in trained:
        model = r.model
        assert r.algorithm == cooccurrence and isinstance(model.scoring, ItemItemModel)
        assert model.params["damping"] in (1.0, 0.5) and model.metrics["ndcg@10"] > 0
        # the serving extras were built by the pipeline, not by the algorithm
        assert model.extras.similarity_vectors is not None and model.extras.content_vectors is not None
        loaded = store.load(r.tenant)
        assert np.array_equal(loaded.model.scoring.item_item, model.scoring.item_item)
        fresh, served = TenantIndex(r.tenant, "mem", model), TenantIndex(r.tenant, r.version or "", loaded.model)
        user, item = model.user_ids[0], model.item_ids[0]
        for item_type in model.type_names:
            assert served.user_items(user, item_type, 5) == fresh.user_items(user, item_type, 5)
        assert served.rank_similar(item, 5) == fresh.rank_similar(item, 5)
        assert served.user_items(user, "container_course", 5)  # it recommends
