"""ModelStore: versioned, atomically published, pickle-free model folders per tenant (plain .npy + JSON files)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, TextIO

import numpy as np
import scipy.sparse as sp

from ml_service.models.base import TrainedModel

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
META_FILE = "meta.json"
CURRENT_FILE = "CURRENT"
STATE_FILE = "STATE"  # root level: a random token replaced whenever any tenant's CURRENT changes
STATUS_FILE = "status.json"  # root level: the tenants of the last run and their state
LOCK_FILE = ".lock"
TMP_PREFIX = ".tmp-"  # a version being written; never visible as a version
DELETE_PREFIX = ".del-"  # a version being deleted by prune; never visible as a version
_CSR_PARTS = ("data", "indices", "indptr")
_VERSION_RE = re.compile(r"^(\d{8}T\d{6}\.\d{6})Z-[0-9a-f]{6}$")
_VERSION_TIME = "%Y%m%dT%H%M%S.%f"
_TENANT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HASH_CHUNK = 1 << 20
_LIBRARIES = {"numpy": "numpy", "scipy": "scipy", "lightfm": "lightfm-next", "implicit": "implicit", "ml_service": "ml-service"}


class StoreError(Exception):
    """The store cannot do what was asked; the message says what to fix."""


class CorruptVersionError(StoreError):
    """A version folder is damaged: names the version, the file and what is wrong with it."""

    def __init__(self, tenant: str, version: str, file: str, problem: str):
        super().__init__(f"model version {version} of tenant {tenant} is corrupt: {file}: {problem}")
        self.tenant, self.version, self.file, self.problem = tenant, version, file, problem


@dataclass(frozen=True)
class VersionInfo:
    """One published version as `versions()` lists it; `ok`/`error` come from a cheap check (meta, file sizes)."""

    version: str
    created_at: str
    algorithm: str
    metrics: dict[str, Any]
    size_bytes: int
    is_current: bool
    ok: bool
    error: str = ""


@dataclass
class LoadedModel:
    """A model read back from the store, with the meta.json it was published with."""

    tenant: str
    version: str
    model: TrainedModel
    meta: dict[str, Any]


class ModelStore:
    """Tenants' model versions under `<root>/<tenant>/<version>/`, with a `CURRENT` file naming the served one.

    Writers (publish, rollback, prune) of one tenant are serialised with a lock file where the platform has
    fcntl; readers never lock: everything they can see is complete.
    """

    def __init__(self, root: Path, keep_versions: int = 5) -> None:
        if keep_versions < 1:
            raise ValueError(f"keep_versions must be at least 1, got {keep_versions}")
        self.root = Path(root)
        self.keep_versions = keep_versions

    # ----------------------------------------------------------------------------------------- reading
    def tenants(self) -> list[str]:
        """Tenants with a folder in the store (published or not), sorted numerically where possible."""
        if not self.root.is_dir():
            return []
        names = [p.name for p in self.root.iterdir() if p.is_dir() and _TENANT_RE.fullmatch(p.name)]
        return sorted(names, key=lambda n: (0, int(n), "") if n.isdigit() else (1, 0, n))

    def current_version(self, tenant: str) -> str | None:
        """The version CURRENT names, or None when the tenant has never been published."""
        path = self._tenant_dir(tenant) / CURRENT_FILE
        try:
            name = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"{path} cannot be read: {exc.strerror or exc}") from exc
        if not _VERSION_RE.fullmatch(name):
            raise StoreError(f"{path} holds {name[:80]!r}, which is not a version id like 20261123T081500.000000Z-1a2b3c")
        return name

    def versions(self, tenant: str) -> list[VersionInfo]:
        """Every complete version of a tenant, newest first, each with a cheap integrity check."""
        tenant_dir = self._tenant_dir(tenant)
        current = self._current_or_none(tenant)
        infos = []
        for name in self._version_names(tenant_dir):
            folder = tenant_dir / name
            error = ""
            meta: dict[str, Any] = {}
            try:
                meta = _read_meta(tenant, name, folder)
                _check_files(tenant, name, folder, meta, hashes=False)
            except CorruptVersionError as exc:
                error = f"{exc.file}: {exc.problem}"
            infos.append(
                VersionInfo(
                    version=name,
                    created_at=str(meta.get("created_at") or _created_from_id(name)),
                    algorithm=str(meta.get("algorithm", "")),
                    metrics=dict(meta.get("metrics") or {}),
                    size_bytes=_folder_size(folder),
                    is_current=name == current,
                    ok=not error,
                    error=error,
                )
            )
        return infos

    def load(
        self, tenant: str, version: str | None = None, *, mmap: bool = True, verify_hashes: bool = True
    ) -> LoadedModel:
        """Read and validate a version (default: the current one), arrays memory-mapped read-only when mmap.

        verify_hashes=False skips the SHA-256 check (sizes, dtypes and shapes are still checked). Without an
        explicit version, a corrupt current version is skipped with a warning for the newest good older one
        (then any good newer one); StoreError when there is none. An explicit version is never substituted.
        """
        tenant_dir = self._tenant_dir(tenant)
        if version is not None:
            _check_version_name(version)
            if not (tenant_dir / version).is_dir():
                raise StoreError(f"tenant {tenant} has no model version {version} in {tenant_dir}")
            return _load_version(tenant, version, tenant_dir / version, mmap=mmap, hashes=verify_hashes)
        names = self._version_names(tenant_dir)
        current = self._current_or_none(tenant)
        if current is None and not names:
            raise StoreError(f"no model has been published for tenant {tenant} in {self.root}")
        if current is None:
            raise StoreError(
                f"tenant {tenant} has no {CURRENT_FILE} file in {tenant_dir}: no publish completed; "
                f"use `ml-service models rollback {tenant} VERSION` to choose one of {', '.join(names)}"
            )
        older = [n for n in names if n < current]
        newer = [n for n in names if n > current]
        errors = []
        for name in [current] + older + newer:
            if not (tenant_dir / name).is_dir():
                errors.append(f"{name}: the folder is missing")
                continue
            try:
                loaded = _load_version(tenant, name, tenant_dir / name, mmap=mmap, hashes=verify_hashes)
            except CorruptVersionError as exc:
                errors.append(f"{name}: {exc.file}: {exc.problem}")
                continue
            if name != current:
                log.warning(
                    "tenant %s: current model version is unusable (%s); serving version %s instead",
                    tenant, errors[0], name,
                )
            return loaded
        raise StoreError(f"tenant {tenant} has no usable model version in {tenant_dir}: " + "; ".join(errors))

    def state_token(self) -> str:
        """Changes whenever a tenant's current pointer changes (one small read): servers poll it to hot-swap."""
        try:
            return (self.root / STATE_FILE).read_text(encoding="ascii").strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return ""

    def read_status(self) -> dict[str, dict]:
        """The per-tenant states `write_status` saved last ({} when none or unreadable, with a warning)."""
        path = self.root / STATUS_FILE
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            tenants = document["tenants"]
            if not isinstance(tenants, dict):
                raise ValueError("'tenants' is not an object")
            return {str(k): dict(v) for k, v in tenants.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s cannot be read (%s); no training status is shown", path, exc)
            return {}

    # ----------------------------------------------------------------------------------------- writing
    def publish(self, tenant: str, model: TrainedModel) -> str:
        """Write a new version and make it current atomically; return its id. Prunes beyond keep_versions."""
        try:
            model.validate()
        except ValueError as exc:
            raise StoreError(f"refusing to publish an inconsistent model for tenant {tenant}: {exc}") from exc
        tenant_dir = self._tenant_dir(tenant)
        tenant_dir.mkdir(parents=True, exist_ok=True)
        with self._lock(tenant_dir):
            _remove_leftovers(tenant_dir)
            version = _new_version_id(self._version_names(tenant_dir))
            tmp = tenant_dir / f"{TMP_PREFIX}{version}"
            tmp.mkdir()
            try:
                _write_version(tmp, tenant, version, model)
                _fsync_dir(tmp)
                os.rename(tmp, tenant_dir / version)
                _fsync_dir(tenant_dir)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self._switch_current(tenant_dir, version)
            self._prune_tenant(tenant_dir, version)
        return version

    def rollback(self, tenant: str, version: str | None = None) -> str:
        """Make `version` current (None: the newest good version older than the current); return it."""
        tenant_dir = self._tenant_dir(tenant)
        if not tenant_dir.is_dir():
            raise StoreError(f"no model has been published for tenant {tenant} in {self.root}")
        with self._lock(tenant_dir):
            names = self._version_names(tenant_dir)
            current = self._current_or_none(tenant)
            if version is None:
                if current is None:
                    raise StoreError(f"tenant {tenant} has no current version to roll back from; name a version: {', '.join(names)}")
                candidates = [n for n in names if n < current]
                problems = []
                for name in candidates:
                    try:
                        _load_version(tenant, name, tenant_dir / name, mmap=True, hashes=True)
                    except CorruptVersionError as exc:
                        problems.append(f"{name} ({exc.file}: {exc.problem})")
                        continue
                    version = name
                    break
                if version is None:
                    why = f"; corrupt: {', '.join(problems)}" if problems else ""
                    raise StoreError(f"tenant {tenant} has no good version older than the current {current}{why}")
            else:
                _check_version_name(version)
                if version not in names:
                    raise StoreError(
                        f"tenant {tenant} has no model version {version}; available: {', '.join(names) or 'none'}"
                    )
                _load_version(tenant, version, tenant_dir / version, mmap=True, hashes=True)
            if version != current:
                self._switch_current(tenant_dir, version)
        return version

    def prune(self, tenant: str | None = None) -> list[str]:
        """Delete versions beyond the keep_versions newest (never the current one) and leftovers; return paths."""
        removed: list[str] = []
        for name in [tenant] if tenant is not None else self.tenants():
            tenant_dir = self._tenant_dir(name)
            if not tenant_dir.is_dir():
                continue
            with self._lock(tenant_dir):
                removed += _remove_leftovers(tenant_dir)
                removed += self._prune_tenant(tenant_dir, self._current_or_none(name))
        return removed

    def write_status(self, statuses: dict[str, dict]) -> None:
        """Save the tenants of the last run and their state atomically, e.g. {"3": {"state": "failed", ...}}."""
        self.root.mkdir(parents=True, exist_ok=True)
        document = {"format_version": FORMAT_VERSION, "written_at": _utc_now_iso(), "tenants": statuses}
        _atomic_write(self.root / STATUS_FILE, _json_bytes(document))

    # ----------------------------------------------------------------------------------------- helpers
    def _tenant_dir(self, tenant: str) -> Path:
        if not isinstance(tenant, str) or not _TENANT_RE.fullmatch(tenant):
            raise StoreError(
                f"invalid tenant id {tenant!r}: expected 1-64 letters, digits, '_' or '-' "
                "(Totara tenant ids are whole numbers such as 0 or 3)"
            )
        return self.root / tenant

    def _current_or_none(self, tenant: str) -> str | None:
        try:
            return self.current_version(tenant)
        except StoreError as exc:
            log.warning("%s", exc)
            return None

    @staticmethod
    def _version_names(tenant_dir: Path) -> list[str]:
        """Complete version folders, newest first (temporary and half-deleted folders start with a dot)."""
        if not tenant_dir.is_dir():
            return []
        return sorted((p.name for p in tenant_dir.iterdir() if _VERSION_RE.fullmatch(p.name) and p.is_dir()), reverse=True)

    def _switch_current(self, tenant_dir: Path, version: str) -> None:
        _atomic_write(tenant_dir / CURRENT_FILE, (version + "\n").encode("ascii"))
        _atomic_write(self.root / STATE_FILE, (secrets.token_hex(16) + "\n").encode("ascii"))

    def _prune_tenant(self, tenant_dir: Path, current: str | None) -> list[str]:
        removed = []
        for name in self._version_names(tenant_dir)[self.keep_versions:]:
            if name == current:
                continue
            doomed = tenant_dir / f"{DELETE_PREFIX}{name}"
            os.rename(tenant_dir / name, doomed)  # invisible at once; deleting the files may take a while
            shutil.rmtree(doomed, ignore_errors=True)
            removed.append(str(tenant_dir / name))
        if removed:
            _fsync_dir(tenant_dir)
        return removed

    @contextlib.contextmanager
    def _lock(self, tenant_dir: Path) -> Iterator[None]:
        try:
            import fcntl
        except ImportError:  # Windows: one writer at a time is the operator's job
            yield
            return
        with open(tenant_dir / LOCK_FILE, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------------- writing
def _write_version(folder: Path, tenant: str, version: str, model: TrainedModel) -> None:
    files: dict[str, dict[str, Any]] = {}
    arrays: dict[str, dict[str, Any]] = {}
    for field in dataclasses.fields(model):
        value = getattr(model, field.name)
        if isinstance(value, np.ndarray):
            _save_array(folder, f"{field.name}.npy", value, files, field.name)
            arrays[field.name] = {"format": "dense", "shape": list(value.shape), "dtype": value.dtype.str}
        elif sp.issparse(value):
            csr = sp.csr_matrix(value)
            for part in _CSR_PARTS:
                _save_array(folder, f"{field.name}.{part}.npy", getattr(csr, part), files, field.name)
            arrays[field.name] = {"format": "csr", "shape": list(csr.shape), "dtype": csr.dtype.str}
        elif value is not None and ("ndarray" in str(field.type) or "csr_matrix" in str(field.type)):
            raise StoreError(f"model.{field.name} is a {type(value).__name__}, expected a numpy array or a scipy sparse matrix")
    for name in ("user_ids", "item_ids"):
        ids = getattr(model, name)
        for position, value in enumerate(ids):
            if not isinstance(value, str):
                raise StoreError(f"model.{name}[{position}] is {value!r} ({type(value).__name__}), expected a string id")
        data = json.dumps(list(ids), ensure_ascii=True).encode("ascii")  # ASCII escapes: any str round-trips
        _write_file(folder / f"{name}.json", data)
        files[f"{name}.json"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "count": len(ids)}
    meta = {
        "format_version": FORMAT_VERSION,
        "tenant": tenant,
        "version": version,
        "created_at": _utc_now_iso(),
        "algorithm": model.algorithm,
        "kind": model.kind,
        "n_users": model.n_users,
        "n_items": model.n_items,
        "params": model.params,
        "metrics": model.metrics,
        "info": model.info,
        "data_fingerprint": model.info.get("data_fingerprint"),
        "arrays": arrays,
        "files": files,
        "library_versions": _library_versions(),
    }
    _write_file(folder / META_FILE, _json_bytes(meta))


def _save_array(folder: Path, file_name: str, array: np.ndarray, files: dict[str, dict[str, Any]], field: str) -> None:
    if array.dtype.hasobject:
        raise StoreError(f"model.{field} has dtype {array.dtype}: object arrays cannot be stored (no pickle)")
    path = folder / file_name
    with open(path, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    files[file_name] = {
        "size": path.stat().st_size,
        "sha256": _sha256_file(path),
        "shape": list(array.shape),
        "dtype": array.dtype.str,
    }


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to `<name>.tmp`, fsync, rename over `path`, fsync the folder: readers see old or new, never half."""
    tmp = path.with_name(path.name + ".tmp")
    _write_file(tmp, data)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    if os.name == "nt":  # Windows cannot open folders for fsync; NTFS journals the rename
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_leftovers(tenant_dir: Path) -> list[str]:
    """Delete folders of publishes or prunes that died midway (only called with the tenant's lock held)."""
    removed = []
    for path in tenant_dir.iterdir():
        if path.is_dir() and path.name.startswith((TMP_PREFIX, DELETE_PREFIX)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
        elif path.is_file() and path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)
    return removed


def _new_version_id(existing: list[str]) -> str:
    """A time-sortable unique id, later than every existing one even when the clock went backwards."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    if existing:
        newest = dt.datetime.strptime(_VERSION_RE.fullmatch(existing[0]).group(1), _VERSION_TIME)  # type: ignore[union-attr]
        now = max(now, newest + dt.timedelta(microseconds=1))
    return f"{now.strftime(_VERSION_TIME)}Z-{secrets.token_hex(3)}"


def _check_version_name(version: str) -> None:
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
        raise StoreError(f"invalid model version {version!r}: expected an id like 20261123T081500.000000Z-1a2b3c")


def _created_from_id(version: str) -> str:
    match = _VERSION_RE.fullmatch(version)
    if not match:
        return ""
    return dt.datetime.strptime(match.group(1), _VERSION_TIME).replace(tzinfo=dt.timezone.utc).isoformat()


def _utc_now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, indent=1, sort_keys=True, default=_json_default).encode("utf-8")


def _json_default(value: Any) -> Any:
    """numpy scalars/arrays, paths and sets in params/metrics/info become plain JSON; anything else its str()."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


@lru_cache(maxsize=1)
def _library_versions() -> dict[str, str]:
    versions = {}
    for name, distribution in _LIBRARIES.items():
        try:
            versions[name] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["python"] = sys.version.split()[0]
    return versions


# ------------------------------------------------------------------------------------------------- reading
def _read_meta(tenant: str, version: str, folder: Path) -> dict[str, Any]:
    path = folder / META_FILE
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise CorruptVersionError(tenant, version, META_FILE, "the file is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptVersionError(tenant, version, META_FILE, f"not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or "format_version" not in meta:
        raise CorruptVersionError(tenant, version, META_FILE, "no format_version: not a model meta file")
    if not isinstance(meta["format_version"], int) or meta["format_version"] > FORMAT_VERSION:
        raise CorruptVersionError(
            tenant, version, META_FILE,
            f"format_version {meta['format_version']!r} was written by a newer ml-service; this one reads up to {FORMAT_VERSION}",
        )
    for key, kind in (("files", dict), ("arrays", dict), ("algorithm", str), ("kind", str)):
        if not isinstance(meta.get(key), kind):
            raise CorruptVersionError(tenant, version, META_FILE, f"{key!r} is missing or not a {kind.__name__}")
    return meta


def _check_files(tenant: str, version: str, folder: Path, meta: dict[str, Any], *, hashes: bool) -> None:
    for name, spec in meta["files"].items():
        if "/" in name or "\\" in name or name.startswith("."):
            raise CorruptVersionError(tenant, version, META_FILE, f"lists an unsafe file name {name!r}")
        path = folder / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise CorruptVersionError(tenant, version, name, "the file is missing") from None
        if size != spec.get("size"):
            raise CorruptVersionError(tenant, version, name, f"size is {size} bytes, expected {spec.get('size')}")
        if hashes and _sha256_file(path) != spec.get("sha256"):
            raise CorruptVersionError(tenant, version, name, "SHA-256 differs from meta.json: the content changed")


def _load_version(tenant: str, version: str, folder: Path, *, mmap: bool, hashes: bool) -> LoadedModel:
    meta = _read_meta(tenant, version, folder)
    _check_files(tenant, version, folder, meta, hashes=hashes)
    files = meta["files"]
    known = {f.name for f in dataclasses.fields(TrainedModel)}
    values: dict[str, Any] = {}
    for field, spec in meta["arrays"].items():
        if field not in known:
            raise CorruptVersionError(tenant, version, META_FILE, f"lists an array {field!r} that models do not have")
        if spec.get("format") == "dense":
            values[field] = _load_npy(tenant, version, folder, f"{field}.npy", files, mmap)
        elif spec.get("format") == "csr":
            data, indices, indptr = (
                _load_npy(tenant, version, folder, f"{field}.{part}.npy", files, mmap) for part in _CSR_PARTS
            )
            shape = tuple(spec.get("shape") or ())
            if len(shape) != 2 or indptr.shape != (shape[0] + 1,) or indices.shape != data.shape:
                raise CorruptVersionError(tenant, version, f"{field}.indptr.npy", f"CSR parts do not fit shape {shape}")
            if indptr.size and (indptr[0] != 0 or indptr[-1] != data.size):
                raise CorruptVersionError(tenant, version, f"{field}.indptr.npy", "indptr does not span the data")
            try:
                matrix = sp.csr_matrix((data, indices, indptr), shape=shape, copy=False)
                if hashes:
                    matrix.check_format(full_check=True)
            except ValueError as exc:
                raise CorruptVersionError(tenant, version, f"{field}.indices.npy", f"invalid CSR matrix: {exc}") from None
            values[field] = matrix
        else:
            raise CorruptVersionError(tenant, version, META_FILE, f"array {field!r} has unknown format {spec.get('format')!r}")
    for name in ("user_ids", "item_ids"):
        file_name = f"{name}.json"
        if file_name not in files:
            raise CorruptVersionError(tenant, version, META_FILE, f"does not list {file_name}")
        try:
            ids = json.loads((folder / file_name).read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise CorruptVersionError(tenant, version, file_name, f"not a valid JSON list ({exc})") from None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise CorruptVersionError(tenant, version, file_name, "expected a JSON list of strings")
        values[name] = ids
    try:
        model = TrainedModel(
            algorithm=meta["algorithm"],
            kind=meta["kind"],
            params=dict(meta.get("params") or {}),
            metrics=dict(meta.get("metrics") or {}),
            info=dict(meta.get("info") or {}),
            **values,
        )
        model.validate()
    except (TypeError, ValueError) as exc:
        raise CorruptVersionError(tenant, version, META_FILE, f"the arrays do not form a valid model: {exc}") from None
    return LoadedModel(tenant=tenant, version=version, model=model, meta=meta)


def _load_npy(tenant: str, version: str, folder: Path, name: str, files: dict[str, Any], mmap: bool) -> np.ndarray:
    spec = files.get(name)
    if spec is None:
        raise CorruptVersionError(tenant, version, META_FILE, f"does not list {name}")
    path = folder / name
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        if mmap and "empty" in str(exc):  # some numpy versions cannot map a zero-size array
            array = np.load(path, allow_pickle=False)
        else:
            raise CorruptVersionError(tenant, version, name, f"not a plain numpy array file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise CorruptVersionError(tenant, version, name, f"cannot be read as .npy ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise CorruptVersionError(tenant, version, name, "not a single numpy array")
    if list(array.shape) != spec.get("shape") or array.dtype.str != spec.get("dtype"):
        raise CorruptVersionError(
            tenant, version, name,
            f"holds {array.dtype.str} {list(array.shape)}, meta.json says {spec.get('dtype')} {spec.get('shape')}",
        )
    return array


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _folder_size(folder: Path) -> int:
    total = 0
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
    return total


# ------------------------------------------------------------------------------------------------- CLI
def models_command(
    store: ModelStore, action: str, tenant: str | None, version: str | None, out: TextIO, err: TextIO | None = None
) -> int:
    """`ml-service models list [TENANT] | show TENANT [VERSION] | rollback TENANT [VERSION] | prune [TENANT]`."""
    err = err if err is not None else sys.stderr
    try:
        if action == "list":
            if tenant is None:
                _print_tenants(store, out)
            else:
                _print_versions(store, tenant, out)
        elif action == "show":
            if tenant is None:
                raise StoreError("`models show` needs a tenant id, e.g. `ml-service models show 0`")
            loaded = store.load(tenant, version, verify_hashes=True)
            if version is None and loaded.version != store.current_version(tenant):
                print(f"note: the current version is corrupt; showing the version served instead", file=err)
            document = {"tenant": tenant, "version": loaded.version, "is_current": loaded.version == store.current_version(tenant), "meta": loaded.meta}
            out.write(json.dumps(document, indent=2, sort_keys=True, default=_json_default) + "\n")
        elif action == "rollback":
            if tenant is None:
                raise StoreError("`models rollback` needs a tenant id, e.g. `ml-service models rollback 0 [VERSION]`")
            before = store.current_version(tenant)
            after = store.rollback(tenant, version)
            out.write(f"tenant {tenant}: current version is now {after} (was {before or 'none'})\n")
        elif action == "prune":
            removed = store.prune(tenant)
            for path in removed:
                out.write(f"removed {path}\n")
            out.write(f"{len(removed)} folder(s) removed; keeping the {store.keep_versions} newest versions and the current one\n")
        else:
            raise StoreError(f"unknown models action {action!r}: use list, show, rollback or prune")
    except StoreError as exc:
        print(f"error: {exc}", file=err)
        return 1
    return 0


def _print_tenants(store: ModelStore, out: TextIO) -> None:
    rows = [("TENANT", "CURRENT VERSION", "ALGORITHM", "CREATED", "NDCG@10", "SIZE", "VERSIONS", "STATE")]
    status = store.read_status()
    for tenant in store.tenants():
        infos = store.versions(tenant)
        current = next((i for i in infos if i.is_current), None)
        state = status.get(tenant, {}).get("state", "")
        if current is None:
            rows.append((tenant, "-", "-", "-", "-", "-", str(len(infos)), state))
            continue
        rows.append(
            (
                tenant,
                current.version + ("" if current.ok else " (CORRUPT)"),
                current.algorithm,
                current.created_at,
                _format_metric(_ndcg10(current.metrics)),
                _format_size(current.size_bytes),
                str(len(infos)),
                state,
            )
        )
    if len(rows) == 1:
        out.write(f"no models in {store.root}\n")
        return
    _print_table(rows, out)


def _print_versions(store: ModelStore, tenant: str, out: TextIO) -> None:
    infos = store.versions(tenant)
    if not infos:
        out.write(f"tenant {tenant} has no model versions in {store.root}\n")
        return
    rows = [("", "VERSION", "ALGORITHM", "CREATED", "NDCG@10", "SIZE", "CHECK")]
    for info in infos:
        rows.append(
            (
                "*" if info.is_current else "",
                info.version,
                info.algorithm,
                info.created_at,
                _format_metric(_ndcg10(info.metrics)),
                _format_size(info.size_bytes),
                "ok" if info.ok else f"CORRUPT: {info.error}",
            )
        )
    _print_table(rows, out)


def _print_table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n")


def _ndcg10(metrics: dict[str, Any]) -> Any:
    for key, value in metrics.items():
        if re.sub(r"[^a-z0-9]", "", str(key).lower()) in ("ndcg10", "ndcgat10", "valndcg10", "validationndcg10"):
            return value
    return None


def _format_metric(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.4f}"
    return "-"


def _format_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size} B"
