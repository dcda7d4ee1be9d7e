"""`ml-service demo`: a full round trip in a subprocess (simulator → pull → train → serve → signed calls)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ml_service.auth import signed_headers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_round_trip(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "ML_RECOMMENDATION_ALGORITHM": "popular", "ML_NUM_THREADS": "1"}
    for name in ("ML_TOTARA_URL", "ML_TOTARA_KEY", "ML_MODELS_DIR", "ML_LOGS_DIR", "ML_BIND"):
        env.pop(name, None)
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ml_service.cli", "demo", "--port", str(port), "--workdir", str(tmp_path / "work")],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 180
        while "listening on" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        text = log.read_text()
        assert "listening on" in text, text
        key = re.search(r"ML_TOTARA_KEY=(\w+)", text).group(1)  # type: ignore[union-attr]
        call = re.search(r"call /user-items totara_user_id=(\d+) item_type=(\w+)", text)
        assert call, text
        base = f"http://127.0.0.1:{port}"
        for _ in range(50):  # the server may need a moment after printing
            try:
                httpx.get(base + "/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        answer = httpx.get(
            base + "/user-items",
            params={"totara_user_id": call.group(1), "item_type": call.group(2), "tenant": "0", "n_items": "5"},
            headers=signed_headers(key), timeout=5,
        ).json()
        assert answer["success"] is True and 0 < len(answer["items"]) <= 5
        health = httpx.get(base + "/health-check", headers=signed_headers(key), timeout=5).json()
        assert health["success"] is True and health["totara"]["recommendation_model"] == "true"
        assert httpx.get(base + "/user-items", timeout=5).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
