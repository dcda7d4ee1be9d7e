"""`ml-service demo`: a full round trip in a subprocess (simulator → pull → train → serve → signed calls), and the
printed "in another terminal" commands run as printed in a shell without the virtualenv on its PATH."""

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
            [sys.executable, "-m", "ml_service.cli", "demo", "--host", "0.0.0.0", "--port", str(port),
             "--workdir", str(tmp_path / "work")],
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
        _run_printed_commands(text, tmp_path, base)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _run_printed_commands(text: str, tmp_path: Path, base: str) -> None:
    """Paste the printed block into a new shell whose PATH lacks the virtualenv, in another folder."""
    block = text.split("In another terminal:\n", 1)[1].split("or with curl:", 1)[0]
    commands = [line.strip() for line in block.splitlines() if line.strip()]
    assert commands[0].startswith(f"export ML_SERVICE_URL={base} ")  # 127.0.0.1, not the 0.0.0.0 it listens on
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env = {"PATH": path, "HOME": str(tmp_path), "LANG": "C.UTF-8"}  # a fresh terminal: no ML_* variables
    assert subprocess.run(["bash", "-c", "command -v ml-service"], env=env, capture_output=True).returncode != 0
    for command in commands[1:]:
        script = commands[0] + "\n" + command
        done = subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert "HTTP 200" in done.stderr or "healthcheck" in command, (command, done.stderr)
