"""Item-kNN: beats popularity, similar items of new content come from content, cold items reach users."""

from __future__ import annotations

import numpy as np
import pytest

from ml_service.data.tenant import TYPE_FAMILY
from ml_service.models.base import FitContext, score_users
from ml_service.models.ease import CatalogueTooLarge
from ml_service.models.knn import ItemKNNAlgorithm, keep_top_neighbours
from ml_service.models.popular import PopularAlgorithm
from ml_service.ranking import rank_similar
from ml_service.training.metrics import ndcg_at_k
from ml_service.training.split import holdout_split
from tests.synthetic import make_tenant
from tests.models.support import fitted

N_GROUPS = 4  # make_tenant: item j has topic j % 4, user u group u % 4


def test_beats_popular_with_valid_shapes() -> None:
    data = make_tenant(seed=1)
    split = holdout_split(data, 0.2, seed=1)
    ctx = FitContext(threads=1, seed=1)
    knn = ItemKNNAlgorithm()
    model = fitted(knn, data, split.train, knn.candidates(data)[0], ctx)
    model.validate()
    popular = fitted(PopularAlgorithm(), data, split.train, {}, ctx)
    assert ndcg_at_k(model, data, split) > ndcg_at_k(popular, data, split) + 0.1


def test_keeps_only_the_top_neighbours_of_each_item() -> None:
    similarity = np.array([[0, 3, 1, 2], [3, 0, 5, 1], [1, 5, 0, 4], [2, 1, 4, 0]], dtype=np.float32)
    kept = keep_top_neighbours(similarity, 1)
    assert (np.count_nonzero(kept, axis=0) == 1).all()
    assert kept[1, 0] == 3 and kept[2, 1] == 5 and kept[1, 2] == 5 and kept[2, 3] == 4


def _without_item(data, item: int):  # type: ignore[no-untyped-def]
    return data.interactions.subset(data.interactions.item != item)


def test_similar_items_of_new_content_come_from_its_content() -> None:
    data = make_tenant(seed=4)
    new_item = 9  # topic 9 % 4 = 1
    model = fitted(ItemKNNAlgorithm(), data, _without_item(data, new_item), {}, FitContext(seed=4), serving=True)
    assert not model.item_warm[new_item] and not model.similarity_vectors[new_item].any()
    similar = rank_similar(model, new_item, 5)
    assert len(similar) == 5 and all(score > 0 for _, score in similar)
    family = TYPE_FAMILY[int(data.items.type_index[new_item])]
    for item, _ in similar:
        assert item != new_item and TYPE_FAMILY[int(data.items.type_index[item])] == family
        assert item % N_GROUPS == new_item % N_GROUPS  # same topic tag and topic words


def test_new_content_is_recommended_to_users_of_its_topic() -> None:
    data = make_tenant(seed=5)
    new_item = 10  # topic 2
    train = _without_item(data, new_item)
    with_content = fitted(ItemKNNAlgorithm(), data, train, {"content_weight": 0.3}, FitContext(seed=5))
    without = fitted(ItemKNNAlgorithm(), data, train, {"content_weight": 0.0}, FitContext(seed=5))
    users = np.arange(data.n_users - data.n_users % N_GROUPS)
    scores = score_users(with_content, users)[:, new_item]
    same_topic = users % N_GROUPS == new_item % N_GROUPS
    assert scores[same_topic].mean() > 3 * scores[~same_topic].mean()
    assert not score_users(without, users)[:, new_item].any()


def test_refuses_a_catalogue_above_its_limit() -> None:
    data = make_tenant(n_users=30, n_items=25, seed=0)
    knn = ItemKNNAlgorithm(max_items=24)
    assert not knn.supports(data)[0]
    with pytest.raises(CatalogueTooLarge, match="25 items: its limit is 24"):
        fitted(knn, data, data.interactions, {}, FitContext())
