"""TotaraHttpSource counts each download attempt by HTTP status or error kind (what /metrics adds up)."""

from __future__ import annotations

import socket
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

import pytest

from ml_service.demo.simulator import TotaraSimulator
from ml_service.source.base import SourceError
from tests.source.test_totara_http import KEY, source


@pytest.fixture
def sim(tmp_path: Path, make_export: Callable[..., Path]) -> Iterator[TotaraSimulator]:
    with TotaraSimulator(make_export(tmp_path / "export", ["0", "3"]), KEY) as simulator:
        yield simulator


def test_attempts_by_status_match_what_totara_answered(sim: TotaraSimulator, tmp_path: Path) -> None:
    sim.not_ready_times = 1
    sim.status_override = {"item_data_3.csv": 404}
    fetcher = source(sim.url, tmp_path / "staging")
    snapshot = fetcher.fetch()
    answered = Counter(str(status) for _, _, status in sim.requests.snapshot())
    assert answered["202"] >= 1 and answered["404"] == 1 and answered["200"] == 6
    assert fetcher.attempts == dict(answered)
    snapshot.cleanup()
    again = fetcher.fetch()  # each fetch counts its own attempts
    assert sum(fetcher.attempts.values()) == len(sim.requests.snapshot()) - sum(answered.values())
    again.cleanup()


def test_failed_transfers_are_counted_by_kind(sim: TotaraSimulator, tmp_path: Path) -> None:
    sim.truncate_bytes = 10
    sim.fault_files = {"user_data_3.csv"}
    fetcher = source(sim.url, tmp_path / "staging")
    fetcher.fetch().cleanup()
    assert fetcher.attempts["cut_short"] == 1 and fetcher.attempts["200"] == 5  # tenants.csv + 0's three + 3's interactions
    sim.truncate_bytes, sim.fault_files = None, set()
    sim.stall_seconds = 30.0
    sim.fault_files = {"item_data_3.csv"}
    slow = source(sim.url, tmp_path / "staging", read_timeout_s=0.3)
    slow.fetch().cleanup()
    assert slow.attempts.get("read_timeout") == 1


def test_a_refused_connection_is_counted_though_the_fetch_raises(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fetcher = source(f"http://127.0.0.1:{port}", tmp_path / "staging")
    with pytest.raises(SourceError):
        fetcher.fetch()
    assert fetcher.attempts == {"connect_error": 1}
