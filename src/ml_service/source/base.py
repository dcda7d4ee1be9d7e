"""What every source hands downstream: a folder of export files plus which tenants are usable."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ml_service.data.limits import InputLimits

EXPORTS = ("user_interactions", "user_data", "item_data")  # per-tenant download order (spec §4.1)
TENANTS_FILE = "tenants.csv"
COMPLETED_FLAG = "export_completed"


class SourceError(Exception):
    """Nothing usable could be fetched (e.g. tenants.csv failed); the message says exactly why."""


@dataclass(frozen=True)
class TenantFiles:
    """The three export files of one tenant."""

    tenant: str
    user_interactions: Path
    user_data: Path
    item_data: Path
    limits: InputLimits = InputLimits()  # how much of them parsing may take in (record size, list entries, tags)


@dataclass
class ExportSnapshot:
    """One fetched export: tenants in file order, their files, and the tenants whose files failed."""

    root: Path
    tenants: list[str]
    failed: dict[str, str] = field(default_factory=dict)  # tenant -> why its files could not be fetched
    temporary: bool = False  # True when `root` is a staging folder to delete after use
    limits: InputLimits = field(default_factory=InputLimits)

    def files(self, tenant: str) -> TenantFiles:
        return TenantFiles(
            tenant,
            self.root / f"user_interactions_{tenant}.csv",
            self.root / f"user_data_{tenant}.csv",
            self.root / f"item_data_{tenant}.csv",
            self.limits,
        )

    @property
    def usable_tenants(self) -> list[str]:
        return [t for t in self.tenants if t not in self.failed]

    def cleanup(self) -> None:
        """Delete the staging folder of a temporary snapshot; a folder source's files are never touched."""
        if self.temporary:
            shutil.rmtree(self.root, ignore_errors=True)


class Source(Protocol):
    """Fetches one snapshot of the export; HTTP pull and folder read return the same thing."""

    description: str

    def fetch(self) -> ExportSnapshot:
        ...
