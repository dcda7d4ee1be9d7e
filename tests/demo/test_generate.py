"""Tests for the seeded Totara export generator and its PHP-compatible CSV writing."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from ml_service.data.tenant import ITEM_TYPES, item_type_of
from ml_service.demo.generate import (
    INTERACTION_HEADER,
    USER_HEADER,
    generate_export,
    main,
    php_csv_field,
    php_csv_line,
)

SMALL = dict(users=120, items=60, interactions=1500, tenants=2)


def read_rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle, doublequote=True))


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    generate_export(out, seed=11, **SMALL)
    return out


def test_php_fputcsv_quoting() -> None:
    assert php_csv_field("plain") == "plain"
    assert php_csv_field("") == ""
    assert php_csv_field("two words") == '"two words"'
    assert php_csv_field("a,b") == '"a,b"'
    assert php_csv_field("tab\there") == '"tab\there"'
    assert php_csv_field("line\nbreak") == '"line\nbreak"'
    assert php_csv_field("cr\rx") == '"cr\rx"'
    assert php_csv_field('say "hi"') == '"say ""hi"""'
    assert php_csv_field("back\\slash") == '"back\\slash"'
    # PHP leaves a quote that follows the escape character undoubled.
    assert php_csv_field('a\\"b') == '"a\\"b"'
    assert php_csv_field('a\\x"b') == '"a\\x""b"'
    assert php_csv_line(["1", "New York", ""]) == '1,"New York",\n'


def test_same_seed_gives_identical_bytes(tmp_path: Path, export: Path) -> None:
    again = tmp_path / "again"
    generate_export(again, seed=11, **SMALL)
    names = sorted(p.name for p in export.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    for name in names:
        assert (export / name).read_bytes() == (again / name).read_bytes(), name
    other = tmp_path / "other"
    generate_export(other, seed=12, **SMALL)
    assert (other / "user_interactions_0.csv").read_bytes() != (export / "user_interactions_0.csv").read_bytes()


def test_folder_layout_and_encoding(export: Path) -> None:
    assert (export / "export_completed").is_file()
    assert (export / "tenants.csv").read_bytes() == b"tenants\n0\n1\n2\n"
    for tenant in ("0", "1", "2"):
        for stem in ("user_data", "item_data", "user_interactions"):
            raw = (export / f"{stem}_{tenant}.csv").read_bytes()
            assert not raw.startswith(b"\xef\xbb\xbf") and b"\r\n" not in raw and raw.endswith(b"\n")
            raw.decode("utf-8")


def test_tenant_zero_files_parse_per_spec(export: Path) -> None:
    users = read_rows(export / "user_data_0.csv")
    assert tuple(users[0]) == USER_HEADER
    assert len(users) - 1 == SMALL["users"]
    user_ids = [int(row[0]) for row in users[1:]]
    assert user_ids == sorted(user_ids) and len(set(user_ids)) == len(user_ids)
    for row in users[1:]:
        assert len(row) == len(USER_HEADER)
        assert row[3] == "" or (len(row[3]) == 2 and row[3].isupper())
        for column in (4, 5, 6, 7, 9):
            assert all(v.isdigit() for v in row[column].split("|") if row[column])
        for pair in filter(None, row[8].split("|")):
            cid, _, level = pair.partition(":")
            assert cid.isdigit() and (level == "" or level.isdigit())

    items = read_rows(export / "item_data_0.csv")
    header = items[0]
    assert header[:6] == ["item_id", *ITEM_TYPES] and header[-1] == "document"
    assert all(name.startswith(("topic_", "tag_")) for name in header[6:-1])
    assert len(items) - 1 == SMALL["items"]
    types_seen = set()
    for row in items[1:]:
        assert len(row) == len(header)
        one_hot = [int(v) for v in row[1:6]]
        assert sum(one_hot) == 1 and all(v in "01" for v in row[6:-1])
        assert item_type_of(row[0]) == one_hot.index(1)
        types_seen.add(one_hot.index(1))
        assert "," not in row[-1] and '"' not in row[-1] and row[-1] == row[-1].strip()
    assert types_seen == set(range(5))
    assert len({row[0] for row in items[1:]}) == SMALL["items"]

    interactions = read_rows(export / "user_interactions_0.csv")
    assert tuple(interactions[0]) == INTERACTION_HEADER
    assert len(interactions) - 1 == SMALL["interactions"]
    pairs = {(row[0], row[1]) for row in interactions[1:]}
    assert len(pairs) == SMALL["interactions"]  # unique (user, item)
    item_ids = {row[0] for row in items[1:]}
    assert {row[0] for row in interactions[1:]} <= {str(u) for u in user_ids}
    assert {row[1] for row in interactions[1:]} <= item_ids
    assert {row[2] for row in interactions[1:]} == {"0", "1"}
    assert all(row[3].isdigit() and len(row[3]) == 10 for row in interactions[1:])
    assert all(row[2] == "1" for row in interactions[1:] if row[1].startswith("container_course"))


def test_documents_are_quoted_multi_word_and_some_multi_line_in_several_scripts(export: Path) -> None:
    raw = (export / "item_data_0.csv").read_text(encoding="utf-8")
    documents = [row[-1] for row in read_rows(export / "item_data_0.csv")[1:]]
    assert any("\n" in d for d in documents)
    for d in documents:
        if " " in d or "\n" in d:
            assert f'"{d}"' in raw
    text = " ".join(documents)
    scripts = {
        "cyrillic": any("\u0400" <= c <= "\u04ff" for c in text),
        "latin": any("a" <= c <= "z" for c in text),
        "cjk": any("\u4e00" <= c <= "\u9fff" or "\u30a0" <= c <= "\u30ff" for c in text),
    }
    assert all(scripts.values()), scripts


def test_tenant_files_only_reference_their_users_and_visible_items(export: Path) -> None:
    all_users = {row[0] for row in read_rows(export / "user_data_0.csv")[1:]}
    all_items = {row[0] for row in read_rows(export / "item_data_0.csv")[1:]}
    all_pairs = {tuple(row) for row in read_rows(export / "user_interactions_0.csv")[1:]}
    tenant_users: list[set[str]] = []
    for tenant in ("1", "2"):
        users = {row[0] for row in read_rows(export / f"user_data_{tenant}.csv")[1:]}
        items = {row[0] for row in read_rows(export / f"item_data_{tenant}.csv")[1:]}
        rows = read_rows(export / f"user_interactions_{tenant}.csv")[1:]
        assert users and items and rows
        assert users <= all_users and items <= all_items
        assert all(row[0] in users and row[1] in items for row in rows)
        # Tenant rows are exactly tenant 0's rows restricted to the tenant's users and items.
        expected = {p for p in all_pairs if p[0] in users and p[1] in items}
        assert {tuple(row) for row in rows} == expected
        tenant_users.append(users)
    assert not tenant_users[0] & tenant_users[1]


def test_ratings_follow_hidden_preferences(tmp_path: Path) -> None:
    """Users repeat topics: an item sharing a tag with the user's other positive items is rated 1 more often."""
    out = tmp_path / "x"
    generate_export(out, seed=3, users=400, items=200, interactions=8000, tenants=0)
    items = read_rows(out / "item_data_0.csv")
    tags = {row[0]: frozenset(i for i, v in enumerate(row[6:-1]) if v == "1") for row in items[1:]}
    by_user: dict[str, list[tuple[str, int]]] = {}
    for user, item, rating, _ in read_rows(out / "user_interactions_0.csv")[1:]:
        if not item.startswith("container_course"):
            by_user.setdefault(user, []).append((item, int(rating)))
    shared, other = [], []
    for rows in by_user.values():
        for k, (item, rating) in enumerate(rows):
            liked = set().union(*(tags[i] for j, (i, r) in enumerate(rows) if r == 1 and j != k))
            (shared if tags[item] & liked else other).append(rating)
    assert np.mean(shared) > np.mean(other) + 0.1


def test_invalid_requests_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="at most half"):
        generate_export(tmp_path, seed=1, users=3, items=3, interactions=100, tenants=0)
    assert main(["--out", str(tmp_path / "m"), "--users", "0"]) == 2
    assert "users and items" in capsys.readouterr().err


def test_main_writes_the_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["--out", str(out), "--seed", "5", "--users", "30", "--items", "20", "--interactions", "200",
                 "--tenants", "1"]) == 0
    assert "tenant 1:" in capsys.readouterr().out
    assert (out / "tenants.csv").read_text() == "tenants\n0\n1\n"
    assert len(read_rows(out / "user_interactions_0.csv")) == 201


def test_bundled_sample_is_the_committed_command_output(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[2] / "src" / "ml_service" / "demo" / "sample"
    fresh = tmp_path / "sample"
    generate_export(fresh, seed=7, users=300, items=120, interactions=6000, tenants=2)
    assert sorted(p.name for p in sample.iterdir()) == sorted(p.name for p in fresh.iterdir())
    for path in fresh.iterdir():
        assert (sample / path.name).read_bytes() == path.read_bytes(), path.name
    assert sum(p.stat().st_size for p in sample.iterdir()) < 1_000_000


def test_loader_accepts_the_output(export: Path) -> None:
    load = pytest.importorskip("ml_service.data.load")
    from ml_service.source.folder import FolderSource

    snapshot = FolderSource(export).fetch()
    assert snapshot.tenants == ["0", "1", "2"] and not snapshot.failed
    for tenant in snapshot.tenants:
        data = load.load_tenant(snapshot.files(tenant))
        n_users = len(read_rows(export / f"user_data_{tenant}.csv")) - 1
        n_items = len(read_rows(export / f"item_data_{tenant}.csv")) - 1
        n_rows = len(read_rows(export / f"user_interactions_{tenant}.csv")) - 1
        assert (data.n_users, data.n_items, len(data.interactions)) == (n_users, n_items, n_rows)
        assert data.report.warning_count == 0, [str(w) for w in data.report.warnings]
        assert data.report.duplicates_collapsed == 0 and data.report.skipped_rows == 0
        documents = read_rows(export / f"item_data_{tenant}.csv")[1:]
        assert data.items.documents == [row[-1] for row in documents]
        assert any(data.users.competencies)


def test_csv_reader_round_trips_php_lines() -> None:
    line = php_csv_line(["engage_article1", "1", "Title with, comma\nand \"quote\" and \\ slash"])
    assert next(csv.reader(io.StringIO(line))) == ["engage_article1", "1", "Title with, comma\nand \"quote\" and \\ slash"]
