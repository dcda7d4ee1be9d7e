"""/health-check (spec §2.5, D8) against Totara down, hanging, failing, unhealthy and up (the simulator)."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from ml_service.api.health import last_training_summary
from ml_service.config import Settings
from ml_service.demo.simulator import TotaraSimulator
from ml_service.store import ModelStore
from tests.api.support import KEY, Clock, closed_port, signed

NOW = 1_800_000_000
# Totara's own limit for the whole call (spec §8.1): the check must answer within it whatever Totara does.
TOTARA_TOTAL_TIMEOUT = httpx.Timeout(2.0)


@dataclass
class Scheduler:
    next_run_at: float | None
    running: bool


def health(client: httpx.Client, url: str, offset: int = 0) -> dict:
    response = client.get(url + "/health-check", headers=signed(now=NOW + offset), timeout=TOTARA_TOTAL_TIMEOUT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return response.json()


class _GraphQLReply(BaseHTTPRequestHandler):
    status = 200
    reply: dict = {}

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps(self.reply).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def graphql_server() -> Iterator[Callable[[int, dict], str]]:
    """A stand-in Totara answering the status query with a chosen HTTP status and JSON."""
    servers: list[ThreadingHTTPServer] = []

    def start(status: int, reply: dict) -> str:
        handler = type("Handler", (_GraphQLReply,), {"status": status, "reply": reply})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[TotaraSimulator]:
    export = tmp_path / "export"
    export.mkdir()
    sim = TotaraSimulator(export, KEY).start()
    yield sim
    sim.stop()


def test_totara_down_answers_fast_with_the_reference_error(
    client: httpx.Client, serve: Callable[..., str], settings: Settings, store: ModelStore
) -> None:
    url = serve(settings, store, clock=Clock(NOW))
    body = health(client, url)
    assert body["success"] is False
    assert len(body["errors"]) == 1 and body["errors"][0].startswith("Unable to communicate with Totara: ")
    assert body["totara"] == {"url": settings.totara_url, "totara_ip": "127.0.0.1"}


def test_totara_hanging_times_out_within_totara_limit(
    client: httpx.Client, serve: Callable[..., str], settings: Settings, store: ModelStore
) -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        totara = f"http://127.0.0.1:{listener.getsockname()[1]}"
        url = serve(settings.with_(totara_url=totara), store, clock=Clock(NOW))
        body = health(client, url)
    assert body["success"] is False
    assert body["errors"][0].startswith("Timed out trying to connect to Totara (try again in a few seconds): ")
    assert set(body["totara"]) == {"url", "totara_ip"}


def test_totara_http_error(
    client: httpx.Client, serve: Callable[..., str], settings: Settings, store: ModelStore, graphql_server: Callable[[int, dict], str]
) -> None:
    totara = graphql_server(500, {"error": "boom"})
    body = health(client, serve(settings.with_(totara_url=totara), store, clock=Clock(NOW)))
    assert body["errors"][0].startswith("Unable to communicate with Totara, there was an error with the response: ")
    assert "500" in body["errors"][0]


def test_totara_not_ok(
    client: httpx.Client, serve: Callable[..., str], settings: Settings, store: ModelStore, graphql_server: Callable[[int, dict], str]
) -> None:
    totara = graphql_server(200, {"data": {"totara_webapi_status": {"status": "maintenance"}}})
    body = health(client, serve(settings.with_(totara_url=totara), store, clock=Clock(NOW)), offset=-7)
    assert body["errors"] == ["Could not connect to Totara instance. Please check your URL is correct."]
    totara_part = body["totara"]
    assert set(totara_part) == {"url", "totara_ip", "elapsed_seconds", "service_time", "variance"}
    assert totara_part["service_time"] == NOW and totara_part["variance"] == 7
    assert isinstance(totara_part["elapsed_seconds"], float)


def test_status_without_data_wrapper_is_read_whole(
    client: httpx.Client, serve: Callable[..., str], settings: Settings, store: ModelStore, graphql_server: Callable[[int, dict], str]
) -> None:
    totara = graphql_server(200, {"totara_webapi_status": {"status": "ok"}})
    assert health(client, serve(settings.with_(totara_url=totara), store, clock=Clock(NOW)))["success"] is True


def test_no_hostname(client: httpx.Client, serve: Callable[..., str], settings: Settings, store: ModelStore) -> None:
    body = health(client, serve(settings.with_(totara_url=""), store, clock=Clock(NOW)))
    assert body["errors"] == ["Unable to get Totara instance hostname"] and body["totara"] == {}


def test_unresolvable_hostname(client: httpx.Client, serve: Callable[..., str], settings: Settings, store: ModelStore) -> None:
    body = health(client, serve(settings.with_(totara_url="http://no-such-host.invalid"), store, clock=Clock(NOW)))
    assert body["errors"][0].startswith("Unable to resolve the Totara instance hostname: ")
    assert body["totara"] == {"url": "http://no-such-host.invalid"}


def test_healthy_with_simulator_and_training_log(
    client: httpx.Client, serve: Callable[..., str], settings: Settings, store: ModelStore, simulator: TotaraSimulator
) -> None:
    settings = settings.with_(totara_url=simulator.url)
    url = serve(settings, store, clock=Clock(NOW), scheduler=Scheduler(next_run_at=NOW + 600.0, running=False))
    body = health(client, url, offset=3)
    assert body["success"] is True and "errors" not in body
    assert body["totara"] == {
        "url": simulator.url,
        "totara_ip": "127.0.0.1",
        "elapsed_seconds": body["totara"]["elapsed_seconds"],
        "service_time": NOW,
        "variance": 3,
        "recommendation_model": "true",
        "logs_file_exists": "false",
    }
    assert all(isinstance(v, (str, int, float)) for v in body["totara"].values())  # flat: Totara's CLI prints key: value

    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    settings.train_summary_log.write_text(
        "TIMESTAMP,ALGORITHM,TENANT_ID,MSG,EPOCHS,N_EMBEDDINGS,SCORE\n"
        "20-Oct-2021 (16:18:30),hybrid,0,success,\"1, 5\",\"30, 40\",\"0.5, 0.6\"\n"
        "21-Oct-2021 (16:18:30),hybrid,0,success,3,30,0.7\n"
        "21-Oct-2021 (16:18:30),hybrid,1,\"The number of users or items is too small to run the recommendation engine. Skipping tenant 1\",,,\n"
    )
    body = health(client, url)
    assert body["totara"]["logs_file_exists"] == "true"
    assert body["totara"]["last_recommendation_model_training"] == (
        "{'TIMESTAMP': '21-Oct-2021 (16:18:30), 21-Oct-2021 (16:18:30)', 'ALGORITHM': 'hybrid, hybrid', "
        "'TENANT_ID': '0, 1', 'MSG': 'success, The number of users or items is too small to run the recommendation "
        "engine. Skipping tenant 1'}"
    )
    service = body["service"]
    assert service["next_training"] == NOW + 600.0 and service["training_running"] is False
    tenant = service["tenants"]["0"]
    assert tenant["version"] == store.current_version("0") and tenant["algorithm"] == "handmade"
    assert tenant["metrics"] == {"ndcg@10": 0.25} and tenant["size_bytes"] > 0 and tenant["trained_at"]
    assert service["tenants"]["3"]["last_run_state"] == "untrained"


def test_no_model_says_false(
    client: httpx.Client, serve: Callable[..., str], settings: Settings, simulator: TotaraSimulator
) -> None:
    url = serve(settings.with_(totara_url=simulator.url), ModelStore(settings.models_dir / "empty"), clock=Clock(NOW))
    body = health(client, url)
    assert body["success"] is True and body["totara"]["recommendation_model"] == "false"
    assert "logs_file_exists" not in body["totara"] and body["service"]["tenants"] == {}
    store = body["service"]["store"]
    assert store["reachable"] is True and store["url"] == str(settings.models_dir / "empty") and "error" not in store


def test_last_training_summary_of_an_empty_log(tmp_path: Path) -> None:
    log = tmp_path / "train_summary.log"
    log.write_text("TIMESTAMP,ALGORITHM,TENANT_ID,MSG,EPOCHS,N_EMBEDDINGS,SCORE\n")
    assert last_training_summary(log) is None
    assert last_training_summary(tmp_path / "missing.log") is None
