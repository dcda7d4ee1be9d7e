"""The model store: versioned, atomically published, pickle-free model folders per tenant, and the run lock.

Modules: `format` (a version folder: .npy + JSON + SHA-256), `model_store` (publish, pointer, pin, prune),
`backend` (where the bytes live: the Backend interface, LocalBackend), `s3` (FsspecBackend: s3://bucket/prefix and a
replica's local cache), `status` (root files STATE and status.json), `runlock` (one training run at a time),
`retention` (tenants that left tenants.csv), `files` (durable local writes).
"""

from __future__ import annotations

from ml_service.store.files import DiskFullError
from ml_service.store.format import (
    FORMAT_VERSION,
    META_FILE,
    BadPointerError,
    CorruptVersionError,
    LoadedModel,
    StoreError,
)
from ml_service.store.model_store import (
    CURRENT_FILE,
    DELETE_PREFIX,
    LOCK_FILE,
    PINNED_FILE,
    TMP_PREFIX,
    ModelStore,
    VersionInfo,
)
from ml_service.store.runlock import RUN_LOCK_FILE, LockHolder, RunLock, RunLockBusy
from ml_service.store.status import STATE_FILE, STATUS_FILE

__all__ = [
    "CURRENT_FILE", "DELETE_PREFIX", "DiskFullError", "FORMAT_VERSION", "LOCK_FILE", "META_FILE", "PINNED_FILE", "RUN_LOCK_FILE",
    "STATE_FILE", "STATUS_FILE", "TMP_PREFIX", "BadPointerError", "CorruptVersionError", "LoadedModel", "LockHolder", "ModelStore",
    "RunLock", "RunLockBusy", "StoreError", "VersionInfo",
]
