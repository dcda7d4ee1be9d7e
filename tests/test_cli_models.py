"""`ml-service models`: the tables, the JSON of show, rollback, pin, unpin and prune as an operator sees them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from ml_service.cli_models import models_command
from ml_service.store import ModelStore
from tests.store.support import factors_model


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "recommender", keep_versions=5)


def test_models_command_outputs(store: ModelStore) -> None:
    v1 = store.publish("0", factors_model(0))
    v2 = store.publish("0", factors_model(1))
    store.write_status({"0": {"state": "trained", "msg": "success"}})
    out, err = io.StringIO(), io.StringIO()
    assert models_command(store, "list", None, None, out, err) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:3] == ["TENANT", "CURRENT", "VERSION"]
    assert lines[1].split()[:3] == ["0", v2, "mf"] and "0.2500" in lines[1] and "trained" in lines[1]
    out = io.StringIO()
    assert models_command(store, "show", "0", None, out, err) == 0
    shown = json.loads(out.getvalue())
    assert shown["version"] == v2 and shown["is_current"] and shown["meta"]["algorithm"] == "mf"
    out = io.StringIO()
    assert models_command(store, "rollback", "0", None, out, err) == 0
    assert out.getvalue() == f"tenant 0: current version is now {v1} (was {v2})\n"
    out = io.StringIO()
    assert models_command(store, "list", "0", None, out, err) == 0
    assert [line.split()[:2] for line in out.getvalue().splitlines()[1:]] == [[v2, "mf"], ["*", v1]]
    out = io.StringIO()
    assert models_command(store, "prune", None, None, out, err) == 0 and "0 folder(s) removed" in out.getvalue()
    assert models_command(store, "show", "../x", None, out, err) == 1 and "invalid tenant id" in err.getvalue()
    assert models_command(store, "frobnicate", None, None, out, err) == 1 and "unknown models action" in err.getvalue()


def test_pin_and_unpin_as_printed(store: ModelStore) -> None:
    v1 = store.publish("0", factors_model(0))
    v2 = store.publish("0", factors_model(1))
    out, err = io.StringIO(), io.StringIO()
    assert models_command(store, "pin", "0", v1, out, err) == 0, err.getvalue()
    assert out.getvalue() == (
        f"tenant 0: pinned to version {v1} (was serving {v2}); new trainings are stored but not served until "
        "`ml-service models unpin 0`\n"
    )
    out = io.StringIO()
    assert models_command(store, "list", None, None, out, err) == 0
    assert out.getvalue().splitlines()[1].split()[:3] == ["0", v1, "(pinned)"]
    out = io.StringIO()
    assert models_command(store, "list", "0", None, out, err) == 0
    assert out.getvalue().splitlines()[1].split()[:2] == [v2, "mf"]
    assert out.getvalue().splitlines()[2].split()[:3] == ["*", v1, "(pinned)"]
    out = io.StringIO()
    assert models_command(store, "show", "0", None, out, err) == 0
    assert json.loads(out.getvalue())["pinned"] == v1
    assert models_command(store, "rollback", "0", v2, io.StringIO(), err) == 1 and "is pinned to version" in err.getvalue()
    out = io.StringIO()
    assert models_command(store, "unpin", "0", None, out, err) == 0
    assert out.getvalue() == (
        f"tenant 0: unpinned; still serving {v1} until the next published version; the newest stored version is "
        f"{v2}: `ml-service models rollback 0 {v2}` serves it now\n"
    )
    out = io.StringIO()
    assert models_command(store, "unpin", "0", None, out, err) == 0 and out.getvalue() == "tenant 0 was not pinned\n"
    assert models_command(store, "pin", None, None, out, err) == 1 and "`models pin` needs a tenant id" in err.getvalue()


def test_models_pin_through_the_command_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    store = ModelStore(tmp_path / "models" / "recommender")
    v1 = store.publish("0", factors_model(0))
    store.publish("0", factors_model(1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_")}
    env.update(ML_MODELS_DIR=str(tmp_path / "models"), ML_LOGS_DIR=str(tmp_path / "logs"))
    done = subprocess.run([sys.executable, "-m", "ml_service.cli", "models", "pin", "0", v1], env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert store.pinned_version("0") == v1 == store.current_version("0")


def test_rollback_repairs_a_garbage_current(store: ModelStore) -> None:
    v1 = store.publish("0", factors_model(0))
    store.publish("0", factors_model(1))
    (store.root / "0" / "CURRENT").write_bytes(b"\xff\xfe../1/x")
    out, err = io.StringIO(), io.StringIO()
    assert models_command(store, "rollback", "0", v1, out, err) == 0, err.getvalue()
    assert out.getvalue() == f"tenant 0: current version is now {v1} (was an unreadable CURRENT)\n"
    assert "CURRENT holds bytes that are not UTF-8 text" in err.getvalue()
    assert store.current_version("0") == v1
