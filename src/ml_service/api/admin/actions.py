"""What an operator can do from the dashboard: start a training run, roll back, pin and unpin a version."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

from ml_service.config import Settings
from ml_service.training.progress import current_run


def pin_supported(store: Any) -> bool:
    """True when this build's ModelStore can pin a version (added by another change; disabled until then)."""
    return callable(getattr(store, "pin", None)) and callable(getattr(store, "unpin", None))


def start_training(settings: Settings, tenant: str | None = None) -> str:
    """Start `ml-service train` in a child process (as the scheduler does); refuse while a run is in progress."""
    run = current_run(settings.logs_dir)
    if run is not None and run.get("state") == "running":
        raise RuntimeError(f"a training run is in progress (process {run.get('pid')}); wait for it to finish")
    env = dict(os.environ)
    env.update({
        "ML_TOTARA_URL": settings.totara_url, "ML_TOTARA_KEY": settings.totara_key, "ML_MODELS_DIR": str(settings.models_dir),
        "ML_LOGS_DIR": str(settings.logs_dir), "ML_RECOMMENDATION_ALGORITHM": settings.algorithm,
    })
    command = [sys.executable, "-m", "ml_service.cli", "train", "--scheduled"] + (["--tenant", tenant] if tenant else [])
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    # Reap the child when it ends: an unreaped (zombie) child still answers kill(pid, 0), so a killed run would
    # never show as dead.
    threading.Thread(target=process.wait, name=f"train-{process.pid}", daemon=True).start()
    return f"training started (process {process.pid})"
