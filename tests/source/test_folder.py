"""FolderSource: the export_completed flag, the data/ subfolder, missing files and tenant defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from ml_service.source.base import SourceError
from ml_service.source.folder import FolderSource


def test_reads_folder_in_place(tmp_path: Path, make_export: Callable[..., Path]) -> None:
    folder = make_export(tmp_path / "export", ["0", "3"])
    before = sorted(p.name for p in folder.iterdir())
    snapshot = FolderSource(folder).fetch()
    assert snapshot.root == folder
    assert snapshot.tenants == ["0", "3"]
    assert snapshot.failed == {}
    assert snapshot.temporary is False
    assert snapshot.files("3").user_data.read_text().startswith("user_id,lang")
    snapshot.cleanup()
    assert sorted(p.name for p in folder.iterdir()) == before


def test_refuses_unfinished_export_naming_path_and_flag(tmp_path: Path, make_export: Callable[..., Path]) -> None:
    folder = make_export(tmp_path / "export", ["0"], completed=False)
    with pytest.raises(SourceError) as caught:
        FolderSource(folder).fetch()
    message = str(caught.value)
    assert str(folder) in message and "export_completed" in message and "--force" in message


def test_force_reads_unfinished_export(tmp_path: Path, make_export: Callable[..., Path]) -> None:
    folder = make_export(tmp_path / "export", ["0"], completed=False)
    assert FolderSource(folder, force=True).fetch().usable_tenants == ["0"]


def test_totara_data_subfolder(tmp_path: Path, make_export: Callable[..., Path]) -> None:
    data_path = tmp_path / "recommender" / "data"
    make_export(data_path / "data", ["0", "7"])
    snapshot = FolderSource(data_path).fetch()
    assert snapshot.root == data_path / "data"
    assert snapshot.usable_tenants == ["0", "7"]


def test_tenant_missing_files_goes_to_failed(tmp_path: Path, make_export: Callable[..., Path]) -> None:
    folder = make_export(tmp_path / "export", ["0", "3", "5"])
    (folder / "user_data_3.csv").unlink()
    (folder / "item_data_3.csv").unlink()
    snapshot = FolderSource(folder).fetch()
    assert snapshot.usable_tenants == ["0", "5"]
    assert "user_data_3.csv" in snapshot.failed["3"] and "item_data_3.csv" in snapshot.failed["3"]
    assert "user_interactions_3.csv" not in snapshot.failed["3"]


def test_empty_tenants_file_means_tenant_zero(tmp_path: Path, make_export: Callable[..., Path]) -> None:
    folder = make_export(tmp_path / "export", ["0"])
    (folder / "tenants.csv").write_bytes(b"")
    assert FolderSource(folder).fetch().tenants == ["0"]


def test_missing_tenants_file_with_tenant_zero_files(tmp_path: Path, make_export: Callable[..., Path]) -> None:
    folder = make_export(tmp_path / "export", ["0"])
    (folder / "tenants.csv").unlink()
    snapshot = FolderSource(folder).fetch()
    assert snapshot.tenants == ["0"] and snapshot.failed == {}


def test_folder_without_export(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="No export found"):
        FolderSource(tmp_path / "empty").fetch()
    with pytest.raises(SourceError, match="does not exist"):
        FolderSource(tmp_path / "absent").fetch()


def test_invalid_tenants_file_names_line(tmp_path: Path, make_export: Callable[..., Path]) -> None:
    folder = make_export(tmp_path / "export", ["0"])
    (folder / "tenants.csv").write_text("tenants\n0\nx\n")
    with pytest.raises(SourceError, match="line 3"):
        FolderSource(folder).fetch()
