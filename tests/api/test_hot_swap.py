"""Hot swap: a model published while requests stream in is picked up with zero failed requests."""

from __future__ import annotations

import threading
import time
from typing import Callable

import httpx

from ml_service.config import Settings
from ml_service.store import ModelStore
from tests.api.support import expected_user_items, make_model, signed, wire

USER_ITEMS = "/user-items?totara_user_id=2&item_type=engage_article&tenant=0&n_items=3"


def ids_of(pairs: list[list[str]]) -> list[str]:
    return [item_id for item_id, _ in pairs]


def test_publish_mid_stream_swaps_without_failures(
    serve: Callable[..., str], settings: Settings, store: ModelStore
) -> None:
    old_model, new_model = make_model(seed=0), make_model(seed=7)
    old_answer = wire(expected_user_items(old_model, "2", 2, 3))
    new_answer = wire(expected_user_items(new_model, "2", 2, 3))
    assert old_answer != new_answer  # the two models must be told apart by their answers
    url = serve(settings, store, refresh_interval_s=0.05)

    answers: list[tuple[int, dict]] = []  # every answer, in arrival order
    per_worker: list[list[tuple[int, dict]]] = [[], [], []]  # each worker's answers, in its own strict order
    stop = threading.Event()

    def hammer(mine: list[tuple[int, dict]]) -> None:
        with httpx.Client(timeout=5.0) as http:
            while not stop.is_set():
                try:
                    response = http.get(url + USER_ITEMS, headers=signed())
                    answer = (response.status_code, response.json())
                except Exception as exc:  # a failed request is a test failure, recorded rather than lost
                    answer = (0, {"exception": repr(exc)})
                mine.append(answer)
                answers.append(answer)

    workers = [threading.Thread(target=hammer, args=(mine,)) for mine in per_worker]
    for worker in workers:
        worker.start()
    try:
        _wait_for(lambda: len(answers) >= 30)
        store.publish("0", new_model)
        published_at = len(answers)
        _wait_for(lambda: any(a[1].get("items") and _close(a[1]["items"], new_answer) for a in answers[published_at:]))
        switched_at = len(answers)
        _wait_for(lambda: len(answers) >= switched_at + 30)
    finally:
        stop.set()
        for worker in workers:
            worker.join(10)

    assert all(status == 200 and body.get("success") is True for status, body in answers), [
        a for a in answers if a[0] != 200 or not a[1].get("success")
    ][:3]
    def kinds(sequence: list[tuple[int, dict]]) -> str:
        return "".join("N" if _close(b["items"], new_answer) else "O" if _close(b["items"], old_answer) else "?" for _, b in sequence)

    assert kinds(answers[:30]) == "O" * 30
    for sequence in per_worker:
        seen = kinds(sequence)
        assert "?" not in seen and "NO" not in seen, seen  # every answer is one whole model; once new, never old again
        assert seen.endswith("N")


def _close(items: list[list[str]], expected: list[list[str]]) -> bool:
    return ids_of(items) == ids_of(expected) and all(
        abs(float(a[1]) - float(b[1])) <= 1.01e-4 for a, b in zip(items, expected)
    )


def _wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)
