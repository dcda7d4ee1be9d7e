"""Shared fixtures of the source tests: tiny but valid Totara export folders (spec §5)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

INTERACTIONS = "user_id,item_id,rating,timestamp\n2,engage_article7,1,1700000000\n3,container_course4,0,1700000100\n"
USERS = (
    "user_id,lang,city,country,interests,asp_position,positions,organisations,competencies_scale,badges,description\n"
    '2,en,"New York",US,11|12,,3,4,5:1,,"Likes data"\n'
    "3,fr,Paris,FR,,,,,,,\n"
)
ITEMS = (
    "item_id,container_course,container_workspace,engage_article,engage_microlearning,totara_playlist,topic_data,document\n"
    'engage_article7,0,0,1,0,0,1,"Data basics"\n'
    'container_course4,1,0,0,0,0,0,"Intro course"\n'
)


def write_export(folder: Path, tenants: list[str], *, completed: bool = True) -> Path:
    """tenants.csv, three files per tenant (each marked with its tenant) and the export_completed flag."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tenants.csv").write_text("tenants\n" + "".join(f"{t}\n" for t in tenants), encoding="utf-8")
    for tenant in tenants:
        (folder / f"user_interactions_{tenant}.csv").write_text(INTERACTIONS + f"9{tenant},totara_playlist1,1,1\n")
        (folder / f"user_data_{tenant}.csv").write_text(USERS)
        (folder / f"item_data_{tenant}.csv").write_text(ITEMS)
    if completed:
        (folder / "export_completed").write_text("1700000000")
    return folder


@pytest.fixture
def make_export() -> Callable[..., Path]:
    return write_export
