"""benchmarks/fuzz.py's `fuzz_service` hook, as benchmarks/reliability.py calls it, against a real server."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import fuzz  # noqa: E402

from tests.faults.conftest import trained_template  # noqa: E402,F401 - a fixture: a store trained on the sample
from tests.faults.harness import KEY, Service, free_port, service_env  # noqa: E402


def test_fuzz_service_counts_the_requests_it_sent_to_a_running_server(tmp_path: Path, trained_template: Path) -> None:
    shutil.copytree(trained_template / "models", tmp_path / "models")
    env = service_env(tmp_path, f"http://127.0.0.1:{free_port()}")
    with Service(env, tmp_path / "server.log") as service:
        result = fuzz.fuzz_service(service.base, KEY, 40, 9, models_dir=Path(env["ML_MODELS_DIR"]))
        assert service.answer_problems() == []
    assert result["generated"] == 40 and result["requests"] > 40  # the sweep of every route comes first
    assert result["5xx"] == 0 and result["contract_violations"] == 0, result["examples"]
    assert sum(sum(statuses.values()) for statuses in result["statuses_by_route"].values()) == result["requests"]
