"""Read an export folder in place (Totara 13/14 data path, the demo, tests): never copies or touches files."""

from __future__ import annotations

from pathlib import Path

from ml_service.data.limits import InputLimits, describe_bytes
from ml_service.data.tenant import DataError
from ml_service.source.base import COMPLETED_FLAG, EXPORTS, TENANTS_FILE, ExportSnapshot, SourceError
from ml_service.source.tenants import DEFAULT_TENANTS, parse_tenants


class FolderSource:
    """An export folder: the one holding tenants.csv, or one whose `data/` subfolder holds it (spec §5.1).

    Without tenants.csv but with tenant 0's files (`*_0.csv`), the folder is read as single-tenant ["0"]:
    older exports and hand-made folders often lack tenants.csv, and tenant 0 always exists.
    """

    def __init__(self, path: Path, *, force: bool = False, limits: InputLimits = InputLimits()):
        self.path = Path(path)
        self.force = force
        self.limits = limits
        self.description = f"export folder {self.path}"

    def fetch(self) -> ExportSnapshot:
        root = self._export_root()
        if not (root / COMPLETED_FLAG).is_file() and not self.force:
            raise SourceError(
                f"The export folder {root} has no {COMPLETED_FLAG!r} flag, so Totara's export is unfinished or "
                f"still running: wait for export_data.php to finish, or use --force to read the folder anyway."
            )
        tenants = self._tenants(root)
        failed: dict[str, str] = {}
        for tenant in tenants:
            missing = [f"{export}_{tenant}.csv" for export in EXPORTS if not (root / f"{export}_{tenant}.csv").is_file()]
            if missing:
                failed[tenant] = f"missing in {root}: {', '.join(missing)}"
                continue
            too_big = self._too_big(root, tenant)
            if too_big:
                failed[tenant] = too_big
        return ExportSnapshot(root=root, tenants=tenants, failed=failed, temporary=False, limits=self.limits)

    def _too_big(self, root: Path, tenant: str) -> str | None:
        """Why one of the tenant's files is over ML_MAX_EXPORT_MB, or None (the same limit as for downloads)."""
        limit = self.limits.max_export_bytes
        for export in EXPORTS:
            path = root / f"{export}_{tenant}.csv"
            size = path.stat().st_size
            if size > limit:
                return (
                    f"{path} is {size} bytes, over the limit of {describe_bytes(limit)} per export file "
                    "(ML_MAX_EXPORT_MB raises it); the tenant was not read"
                )
        return None

    def _export_root(self) -> Path:
        if not self.path.is_dir():
            raise SourceError(f"The export folder {self.path} does not exist or is not a folder.")
        nested = self.path / "data"
        for candidate in (self.path, nested):
            if (candidate / TENANTS_FILE).is_file():
                return candidate
        for candidate in (self.path, nested):
            if candidate.is_dir() and ((candidate / COMPLETED_FLAG).is_file() or _has_tenant_zero_files(candidate)):
                return candidate
        raise SourceError(
            f"No export found in {self.path}: expected {TENANTS_FILE} (or user_interactions_0.csv, user_data_0.csv, "
            f"item_data_0.csv) in that folder or in its data/ subfolder (Totara writes <dataroot>/recommender/data/data/)."
        )

    def _tenants(self, root: Path) -> list[str]:
        tenants_file = root / TENANTS_FILE
        if not tenants_file.is_file():
            if _has_tenant_zero_files(root):
                return list(DEFAULT_TENANTS)
            raise SourceError(f"{tenants_file} is missing and the folder has no tenant 0 files (*_0.csv).")
        try:
            return parse_tenants(tenants_file, self.limits.max_record_bytes)
        except DataError as exc:
            raise SourceError(f"{tenants_file} cannot be used: {exc}") from exc
        except OSError as exc:
            raise SourceError(f"{tenants_file} cannot be read: {exc.strerror or exc}") from exc


def _has_tenant_zero_files(folder: Path) -> bool:
    return any((folder / f"{export}_0.csv").is_file() for export in EXPORTS)
