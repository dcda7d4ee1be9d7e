"""Input bounds (ML_MAX_RECORD_MB, ML_MAX_LIST_ENTRIES, ML_MAX_TAG_COLUMNS): hostile files fail fast or are cut, reported."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from ml_service.config import Settings
from ml_service.data.csvio import CsvTable, write_php_csv
from ml_service.data.limits import MB, InputLimits
from ml_service.data.load import load_tenant
from ml_service.data.schema import USER_COLUMNS
from ml_service.data.tenant import ITEM_TYPES, DataError
from ml_service.demo.generate import generate_export
from ml_service.source.base import TenantFiles
from ml_service.source.folder import FolderSource
from ml_service.store import ModelStore
from ml_service.training.pipeline import run_training

INTERACTION_HEADER = ["user_id", "item_id", "rating", "timestamp"]


def user_row(user_id: str, **values: str) -> list[str]:
    row = {c: "" for c in USER_COLUMNS} | {"user_id": user_id, "lang": "en"} | values
    return [row[c] for c in USER_COLUMNS]


def item_row(item_id: str, type_name: str, tags: list[int], document: str = "a document") -> list[object]:
    return [item_id, *(int(t == type_name) for t in ITEM_TYPES), *tags, document]


def tenant_files(folder: Path, limits: InputLimits, *, users: list[list[str]] | None = None,
                 tag_count: int = 1, document: str = "a document") -> TenantFiles:
    files = TenantFiles("0", folder / "user_interactions_0.csv", folder / "user_data_0.csv",
                        folder / "item_data_0.csv", limits)
    tags = [f"topic_{j}" for j in range(tag_count)]
    write_php_csv(files.user_data, USER_COLUMNS, users or [user_row("10"), user_row("11")])
    write_php_csv(files.item_data, ["item_id", *ITEM_TYPES, *tags, "document"], [
        item_row("engage_article1", "engage_article", [1] * tag_count, document),
        item_row("container_course2", "container_course", [0] * tag_count),
    ])
    write_php_csv(files.user_interactions, INTERACTION_HEADER, [["10", "engage_article1", 1, 1700000000]])
    return files


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe")
def test_a_line_without_newline_fails_its_file_after_reading_only_the_limit(tmp_path: Path) -> None:
    """Fed through a pipe, so the test sees how much the reader took: the limit and a little, not the stream."""
    limit = 256 * 1024
    files = tenant_files(tmp_path, InputLimits(max_record_bytes=limit))
    files.user_interactions.unlink()
    os.mkfifo(files.user_interactions)
    written = [0]

    def endless_row_without_newline() -> None:
        try:
            with open(files.user_interactions, "wb") as pipe:
                pipe.write(b"user_id,item_id,rating,timestamp\n")
                piece = b"10,engage_article1,1,1700000000," * 2048
                while written[0] < 64 * MB:  # a reader that never stops gets 64 MB, then the end of the file
                    pipe.write(piece)
                    written[0] += len(piece)
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=endless_row_without_newline, daemon=True)
    writer.start()
    with pytest.raises(DataError) as caught:
        load_tenant(files)
    writer.join(timeout=30)
    issue = caught.value.issue
    assert (issue.file, issue.line) == ("user_interactions_0.csv", 2)
    assert "longer than 262144 bytes" in issue.value and "ML_MAX_RECORD_MB" in issue.expected
    assert written[0] < 8 * limit  # the reader gave up near the limit (the pipe buffers 64 KB more)


def test_a_quoted_field_spanning_many_lines_fails_at_the_limit_naming_its_start(tmp_path: Path) -> None:
    limit = 64 * 1024
    files = tenant_files(tmp_path, InputLimits(max_record_bytes=limit), document="line\n" * 100_000)
    with pytest.raises(DataError) as caught:
        load_tenant(files)
    issue = caught.value.issue
    assert (issue.file, issue.line) == ("item_data_0.csv", 2)
    assert "a record longer than 65536 bytes" in issue.value and "quote" in issue.expected


def test_records_under_the_limit_load_whole_even_past_the_csv_module_default(tmp_path: Path) -> None:
    document = "word " * 60_000 + "\nand a second line"  # 300 KB: more than the csv module's 128 KiB default
    files = tenant_files(tmp_path, InputLimits(max_record_bytes=MB), document=document)
    data = load_tenant(files)
    assert data.items.documents[0] == document


def test_a_file_within_limits_reads_as_before_across_many_small_reads(tmp_path: Path) -> None:
    """With a limit below the read block, reads shrink to the limit; records and line numbers are unchanged."""
    path = tmp_path / "rows.csv"
    rows = [[str(i), "x" * (i % 50), "multi\nline" if i % 7 == 0 else "plain"] for i in range(3000)]
    write_php_csv(path, ["a", "b", "c"], rows)
    with CsvTable(path, max_record_bytes=200) as small, CsvTable(path) as default:
        parts_small = [(c.line_of(i), row) for c in small.chunks() for i, row in enumerate(c.rows)]
        parts_default = [(c.line_of(i), row) for c in default.chunks() for i, row in enumerate(c.rows)]
    assert parts_small == parts_default and len(parts_small) == 3000


def test_list_cells_are_cut_to_the_entry_limit_and_reported(tmp_path: Path) -> None:
    many = "|".join(f"i{j}" for j in range(5000))
    competencies = "|".join(f"{j}:1" for j in range(50))
    users = [user_row("10", interests=many, competencies_scale=competencies), user_row("11", interests="a|b")]
    files = tenant_files(tmp_path, InputLimits(max_list_entries=10), users=users)
    data = load_tenant(files)
    assert data.users.interests == [[f"i{j}" for j in range(10)], ["a", "b"]]
    assert sorted(data.users.competencies[0], key=int) == [str(j) for j in range(10)]
    assert data.report.truncated_cells == 2
    warned = [w for w in data.report.warnings if "ML_MAX_LIST_ENTRIES" in w.expected]
    assert {(w.line, w.column, w.value) for w in warned} == {
        (2, "interests", "5000 entries"), (2, "competencies_scale", "50 entries"),
    }
    assert data.report.skipped_rows == 0


def test_tag_columns_beyond_the_limit_are_ignored_and_reported(tmp_path: Path) -> None:
    files = tenant_files(tmp_path, InputLimits(max_tag_columns=3), tag_count=30)
    data = load_tenant(files)
    assert data.items.tag_names == ["topic_0", "topic_1", "topic_2"]
    assert data.items.tags.toarray().tolist() == [[1, 1, 1], [0, 0, 0]]
    assert data.report.ignored_tag_columns == 27
    (warning,) = [w for w in data.report.warnings if "ML_MAX_TAG_COLUMNS" in w.expected]
    assert (warning.line, warning.column, warning.value) == (1, "topic_3", "30 topic_/tag_ columns")
    assert data.report.as_dict()["ignored_tag_columns"] == 27


def test_limits_come_from_the_settings() -> None:
    settings = Settings.from_env({
        "ML_MAX_RECORD_MB": "2", "ML_MAX_LIST_ENTRIES": "50", "ML_MAX_TAG_COLUMNS": "7", "ML_MAX_EXPORT_MB": "9",
        "ML_DOWNLOAD_DEADLINE": "12.5",
    }, require_totara=False)
    assert InputLimits.from_settings(settings) == InputLimits(2 * MB, 50, 7, 9 * MB, 12.5)
    assert InputLimits.from_settings(Settings()) == InputLimits()


def test_a_tenant_whose_file_has_no_newline_fails_and_keeps_its_model(tmp_path: Path) -> None:
    """Before: the one giant row was skipped as 1 bad row of 1, the tenant trained empty and the run said ok."""
    folder = tmp_path / "export"
    generate_export(folder, seed=3, users=60, items=30, interactions=600, tenants=1)
    settings = Settings(models_dir=tmp_path / "models", logs_dir=tmp_path / "logs", algorithm="popular",
                        num_threads=1, max_record_mb=1)
    settings.ensure_dirs()
    store = ModelStore(settings.recommender_dir)
    source = FolderSource(folder, limits=InputLimits.from_settings(settings))
    assert run_training(settings, source, store).ok
    before = store.current_version("1")
    with open(folder / "user_interactions_1.csv", "wb") as out:
        out.write(b"user_id,item_id,rating,timestamp\n")
        out.write(b"2,engage_article1,1,1700000000," * 100_000)  # 3 MB, no newline
    result = run_training(settings, source, store)
    assert not result.ok
    by_tenant = {r.tenant: r for r in result.tenants}
    assert by_tenant["0"].state == "trained"
    assert by_tenant["1"].state == "failed"
    assert "user_interactions_1.csv, line 2" in by_tenant["1"].msg and "ML_MAX_RECORD_MB" in by_tenant["1"].msg
    assert store.current_version("1") == before


def test_a_folder_file_over_the_export_limit_fails_only_its_tenant(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    generate_export(folder, seed=3, users=30, items=20, interactions=200, tenants=1)
    snapshot = FolderSource(folder, limits=InputLimits(max_export_bytes=1000)).fetch()
    sizes = {t: (folder / f"user_interactions_{t}.csv").stat().st_size for t in snapshot.tenants}
    assert all(size > 1000 for size in sizes.values())
    assert set(snapshot.failed) == set(snapshot.tenants)
    assert "ML_MAX_EXPORT_MB" in snapshot.failed["0"] and "user_interactions_0.csv" in snapshot.failed["0"]
    shutil.rmtree(folder)


@pytest.mark.parametrize(("name", "value"), [
    ("ML_MAX_RECORD_MB", "0"), ("ML_MAX_RECORD_MB", "2048"), ("ML_MAX_RECORD_MB", "1.5"),
    ("ML_MAX_LIST_ENTRIES", "0"), ("ML_MAX_TAG_COLUMNS", "-1"), ("ML_MAX_EXPORT_MB", "0"),
    ("ML_DOWNLOAD_DEADLINE", "0.5"), ("ML_DOWNLOAD_DEADLINE", "soon"),
])
def test_bad_limit_values_stop_the_service_naming_the_variable(name: str, value: str) -> None:
    from ml_service.config import ConfigError

    with pytest.raises(ConfigError, match=f"{name}={value!r} is invalid"):
        Settings.from_env({name: value}, require_totara=False)
