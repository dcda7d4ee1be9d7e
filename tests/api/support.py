"""Small hand-made models and a real uvicorn server for the serving and API tests."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
import uvicorn

from ml_service.models.base import model_from_arrays
from ml_service.auth import signed_headers
from ml_service.http_protocol import CoalescingHttpToolsProtocol
from ml_service.models.base import TrainedModel

KEY = "test-secret-key-0123"

USERS = ["1", "2", "3", "4", "5"]
ITEMS = [
    "container_course1",
    "container_course2",
    "container_course3",
    "container_workspace1",
    "container_workspace2",
    "engage_article10",
    "engage_article11",
    "engage_microlearning12",
    "engage_microlearning13",
    "totara_playlist1",
    "totara_playlist2",
]
TYPES = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4], dtype=np.int8)
# User "1" liked course1 and article10; user "5" has no personalised scores (cold).
POSITIVES = {0: [0, 5], 1: [3]}
COLD_USER = 4
COLD_ITEM = 8  # engage_microlearning13 has no interactions: similarity uses content vectors


def make_model(seed: int = 0, algorithm: str = "handmade") -> TrainedModel:
    """A 5-user, 11-item factors model with positives, a cold user, popularity and both kinds of item vectors."""
    rng = np.random.default_rng(seed)
    n_users, n_items, k = len(USERS), len(ITEMS), 4
    rows = [u for u, items in POSITIVES.items() for _ in items]
    cols = [i for items in POSITIVES.values() for i in items]
    positives = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    user_cold = np.zeros(n_users, dtype=bool)
    user_cold[COLD_USER] = True
    item_warm = np.ones(n_items, dtype=bool)
    item_warm[COLD_ITEM] = False
    return model_from_arrays(
        algorithm=algorithm,
        user_ids=list(USERS),
        item_ids=list(ITEMS),
        item_types=TYPES.copy(),
        user_factors=rng.standard_normal((n_users, k)).astype(np.float32),
        item_factors=rng.standard_normal((n_items, k)).astype(np.float32),
        user_biases=(rng.standard_normal(n_users) * 0.1).astype(np.float32),
        item_biases=(rng.standard_normal(n_items) * 0.1).astype(np.float32),
        positives=positives,
        user_cold=user_cold,
        popularity=rng.permutation(n_items).astype(np.float32),
        similarity_vectors=_unit_rows(rng.standard_normal((n_items, 3))),
        content_vectors=_unit_rows(rng.standard_normal((n_items, 5))),
        item_warm=item_warm,
        metrics={"ndcg@10": 0.25 + seed / 100},
    )


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def expected_user_items(
    model: TrainedModel, user: str, item_type: int, n: int, *, seen: str = "exclude"
) -> list[tuple[str, float]]:
    """An independent oracle of /user-items: score, filter by type, drop or demote positives, sort."""
    ids = model.item_ids
    candidates = [i for i in range(len(ids)) if model.item_types[i] == item_type]
    if user not in model.user_ids:
        scores = np.asarray(model.popularity, dtype=np.float64)
        liked: set[int] = set()
    else:
        u = model.user_ids.index(user)
        liked = set(model.positives[u].indices.tolist())  # type: ignore[index]
        if model.user_cold[u]:  # type: ignore[index]
            scores = np.asarray(model.popularity, dtype=np.float64)
        else:
            scores = (
                model.item_factors.astype(np.float64) @ model.user_factors[u].astype(np.float64)  # type: ignore[union-attr]
                + model.item_biases
                + model.user_biases[u]  # type: ignore[index]
            )
    scores = scores.copy()
    if seen == "exclude":
        candidates = [i for i in candidates if i not in liked]
    else:
        unseen = [scores[i] for i in candidates if i not in liked]
        if unseen and len(unseen) < len(candidates):
            drop = 0.5 * (max(unseen) - min(unseen))
            for i in candidates:
                if i in liked:
                    scores[i] -= drop
    ranked = sorted(candidates, key=lambda i: (-scores[i], i))[:n]
    return [(ids[i], float(scores[i])) for i in ranked]


def expected_similar(model: TrainedModel, item: str, n: int) -> list[tuple[str, float]]:
    """An independent oracle of /similar-items: cosine within the target's family, target excluded."""
    ids = model.item_ids
    t = ids.index(item)
    family = {2, 3} if model.item_types[t] in (2, 3) else {int(model.item_types[t])}
    vectors = model.similarity_vectors if model.item_warm[t] else model.content_vectors  # type: ignore[index]
    candidates = [i for i in range(len(ids)) if i != t and int(model.item_types[i]) in family]
    scores = {i: float(np.dot(vectors[i], vectors[t])) for i in candidates}  # type: ignore[index]
    ranked = sorted(candidates, key=lambda i: (-scores[i], i))[:n]
    return [(ids[i], scores[i]) for i in ranked]


def wire(pairs: list[tuple[str, float]]) -> list[list[str]]:
    """What the API must send for these (prefixed id, score) pairs (spec §2.4)."""
    out = []
    for item_id, score in pairs:
        number = item_id.rstrip("0123456789")
        out.append([item_id[len(number):], format(score, " .4f")])
    return out


class RunningServer:
    """A real uvicorn server on 127.0.0.1 and a free port, in a thread, with the app's lifespan and the service's
    HTTP protocol."""

    def __init__(self, app: Any) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=0,
                log_level="warning",
                access_log=False,
                lifespan="on",
                http=CoalescingHttpToolsProtocol,  # the protocol `ml-service serve` runs
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn", daemon=True)

    def start(self) -> "RunningServer":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Clock:
    """The service clock the app is given; tests pin it to check the auth window to the second."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def signed(key: str = KEY, now: float | None = None) -> dict[str, str]:
    """Headers as Totara's PHP client sends them."""
    return {**signed_headers(key, now), "User-Agent": "TotaraBot/1.0", "Content-Length": "0"}


def assert_wire_items(body: dict, expected: list[tuple[str, float]]) -> None:
    """The response is a success listing exactly these items in order, scores ` .4f` of the expected values.

    Scores are compared to 1e-4: the oracle computes in float64, the model in float32.
    """
    assert body.get("success") is True and set(body) == {"items", "success"}, body
    want = wire(expected)
    assert [pair[0] for pair in body["items"]] == [pair[0] for pair in want]
    for (_, got), (_, score) in zip(body["items"], expected):
        assert got == format(float(got), " .4f")
        assert abs(float(got) - score) <= 1.01e-4, (got, score)
