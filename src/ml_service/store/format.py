"""The on-disk version format: one folder of .npy arrays + JSON ids + meta.json with SHA-256 sums, never pickle.

Pure functions over a local folder: `write_version` fills a (temporary) folder, `load_version` reads and verifies
one. Where a version folder lives, how it becomes visible and which one is served is `model_store.py`'s job.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ml_service.data.tenant import ITEM_TYPES
from ml_service.models.base import ARRAY_NAMES, TrainedModel, model_from_arrays
from ml_service.store.files import write_file

FORMAT_VERSION = 1
META_FILE = "meta.json"
_CSR_PARTS = ("data", "indices", "indptr")
VERSION_RE = re.compile(r"^(\d{8}T\d{6}\.\d{6})Z-[0-9a-f]{6}$")
_VERSION_TIME = "%Y%m%dT%H%M%S.%f"
_HASH_CHUNK = 1 << 20
_LIBRARIES = {"numpy": "numpy", "scipy": "scipy", "lightfm": "lightfm-next", "implicit": "implicit", "ml_service": "ml-service"}


class StoreError(Exception):
    """The store cannot do what was asked; the message says what to fix."""


class BadPointerError(StoreError):
    """A tenant's CURRENT or PINNED file cannot be read or does not hold a version id (garbage, traversal, bad bytes)."""

    def __init__(self, tenant: str, path: Path, problem: str):
        super().__init__(f"{path} {problem}")
        self.tenant, self.path, self.problem = tenant, path, problem


class CorruptVersionError(StoreError):
    """A version folder is damaged: names the version, the file and what is wrong with it."""

    def __init__(self, tenant: str, version: str, file: str, problem: str):
        super().__init__(f"model version {version} of tenant {tenant} is corrupt: {file}: {problem}")
        self.tenant, self.version, self.file, self.problem = tenant, version, file, problem


@dataclass
class LoadedModel:
    """A model read back from the store, with the meta.json it was published with."""

    tenant: str
    version: str
    model: TrainedModel
    meta: dict[str, Any]


# ------------------------------------------------------------------------------------------------- version ids
def new_version_id(existing: list[str]) -> str:
    """A time-sortable unique id, later than every existing one (newest first) even when the clock went backwards."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    if existing:
        newest = dt.datetime.strptime(VERSION_RE.fullmatch(existing[0]).group(1), _VERSION_TIME)  # type: ignore[union-attr]
        now = max(now, newest + dt.timedelta(microseconds=1))
    return f"{now.strftime(_VERSION_TIME)}Z-{secrets.token_hex(3)}"


def check_version_name(version: str) -> None:
    """StoreError unless `version` looks like a version id (it becomes a path: no '..', no '/')."""
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        raise StoreError(f"invalid model version {version!r}: expected an id like 20261123T081500.000000Z-1a2b3c")


def created_from_id(version: str) -> str:
    """The creation time encoded in a version id, ISO 8601 UTC ("" when the id is not one)."""
    match = VERSION_RE.fullmatch(version)
    if not match:
        return ""
    return dt.datetime.strptime(match.group(1), _VERSION_TIME).replace(tzinfo=dt.timezone.utc).isoformat()


def utc_now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def json_bytes(document: Any) -> bytes:
    """Indented, key-sorted JSON; numpy values, sets and paths become plain JSON."""
    return json.dumps(document, indent=1, sort_keys=True, default=json_default).encode("utf-8")


def json_default(value: Any) -> Any:
    """numpy scalars/arrays, paths and sets in params/metrics/info become plain JSON; anything else its str()."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


# ------------------------------------------------------------------------------------------------- checks
def check_publishable(model: TrainedModel, tenant: str) -> None:
    """StoreError naming the array when a model could put non-finite scores or unknown item types on the wire.

    The parts validated themselves when built; this checks again (arrays can be changed in place) with the
    position of the first bad value.
    """
    for name, value in model.arrays().items():
        values = value.data if sp.issparse(value) else value
        if isinstance(values, np.ndarray) and values.dtype.hasobject:
            raise StoreError(f"model.{name} has dtype {values.dtype}: object arrays cannot be stored (no pickle)")
        if not isinstance(values, np.ndarray) or values.dtype.kind not in "fc" or values.size == 0:
            continue
        finite = np.isfinite(values)
        if not finite.all():
            position = np.unravel_index(int(np.flatnonzero(~finite.ravel())[0]), values.shape)
            where = "data of the sparse matrix " if sp.issparse(value) else ""
            raise StoreError(
                f"refusing to publish tenant {tenant}'s model: model.{name} ({where}shape {tuple(value.shape)}) holds "
                f"{int((~finite).sum())} non-finite value(s) (NaN or inf), the first {values[position]} at "
                f"{tuple(int(i) for i in position)}"
            )
    types = np.asarray(model.item_types)
    if types.dtype.kind not in "iu":
        raise StoreError(f"refusing to publish tenant {tenant}'s model: model.item_types has dtype {types.dtype}, expected integer type codes")
    if types.size:
        names = model.type_names  # the five known types, then the tenant's newer ones (validate() below checks them)
        bad = np.flatnonzero((types < 0) | (types >= len(names)))
        if bad.size:
            raise StoreError(
                f"refusing to publish tenant {tenant}'s model: model.item_types[{int(bad[0])}] is {int(types[bad[0]])}, expected a code in "
                f"0..{len(names) - 1} ({', '.join(names)}); {bad.size} item(s) out of range"
            )
    try:
        model.validate()
    except ValueError as exc:
        raise StoreError(f"refusing to publish an inconsistent model for tenant {tenant}: {exc}") from exc


# ------------------------------------------------------------------------------------------------- writing
def write_version(folder: Path, tenant: str, version: str, model: TrainedModel) -> None:
    """Write every array of `model` as .npy, the ids as JSON and meta.json (sizes + SHA-256) into `folder`."""
    files: dict[str, dict[str, Any]] = {}
    arrays: dict[str, dict[str, Any]] = {}
    for name, value in model.arrays().items():  # the parts' arrays under their stored names: the layout on disk
        if isinstance(value, np.ndarray):
            _save_array(folder, f"{name}.npy", value, files, name)
            arrays[name] = {"format": "dense", "shape": list(value.shape), "dtype": value.dtype.str}
        elif sp.issparse(value):
            csr = sp.csr_matrix(value)
            for part in _CSR_PARTS:
                _save_array(folder, f"{name}.{part}.npy", getattr(csr, part), files, name)
            arrays[name] = {"format": "csr", "shape": list(csr.shape), "dtype": csr.dtype.str}
        else:
            raise StoreError(f"model.{name} is a {type(value).__name__}, expected a numpy array or a scipy sparse matrix")
    for name in ("user_ids", "item_ids"):
        ids = getattr(model, name)
        for position, value in enumerate(ids):
            if not isinstance(value, str):
                raise StoreError(f"model.{name}[{position}] is {value!r} ({type(value).__name__}), expected a string id")
        data = json.dumps(list(ids), ensure_ascii=True).encode("ascii")  # ASCII escapes: any str round-trips
        write_file(folder / f"{name}.json", data)
        files[f"{name}.json"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "count": len(ids)}
    meta = {
        "format_version": FORMAT_VERSION,
        "tenant": tenant,
        "version": version,
        "created_at": utc_now_iso(),
        "algorithm": model.algorithm,
        "kind": model.kind,
        "item_type_names": list(model.type_names),
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
    write_file(folder / META_FILE, json_bytes(meta))


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
        "sha256": sha256_file(path),
        "shape": list(array.shape),
        "dtype": array.dtype.str,
    }


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
def read_meta(tenant: str, version: str, folder: Path) -> dict[str, Any]:
    """meta.json of a version folder, checked for the keys every reader relies on."""
    try:
        raw = (folder / META_FILE).read_bytes()
    except FileNotFoundError:
        raise CorruptVersionError(tenant, version, META_FILE, "the file is missing") from None
    except OSError as exc:
        raise CorruptVersionError(tenant, version, META_FILE, f"not valid JSON ({exc})") from None
    return meta_from_bytes(tenant, version, raw)


def meta_from_bytes(tenant: str, version: str, raw: bytes) -> dict[str, Any]:
    """meta.json's bytes (from a folder or an object store), checked for the keys every reader relies on."""
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
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


def check_sizes(tenant: str, version: str, meta: dict[str, Any], sizes: dict[str, int]) -> None:
    """Every file meta.json lists is among `sizes` ({file name: bytes}, as a backend lists them) with its size."""
    for name, spec in meta["files"].items():
        if "/" in name or "\\" in name or name.startswith("."):
            raise CorruptVersionError(tenant, version, META_FILE, f"lists an unsafe file name {name!r}")
        if name not in sizes:
            raise CorruptVersionError(tenant, version, name, "the file is missing")
        if sizes[name] != spec.get("size"):
            raise CorruptVersionError(tenant, version, name, f"size is {sizes[name]} bytes, expected {spec.get('size')}")


def check_files(tenant: str, version: str, folder: Path, meta: dict[str, Any], *, hashes: bool) -> None:
    """Every file meta.json lists exists with its size (and, when `hashes`, its SHA-256)."""
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
        if hashes and sha256_file(path) != spec.get("sha256"):
            raise CorruptVersionError(tenant, version, name, "SHA-256 differs from meta.json: the content changed")


def load_version(tenant: str, version: str, folder: Path, *, mmap: bool, hashes: bool) -> LoadedModel:
    """Read and verify one version folder; CorruptVersionError naming the file at the first defect."""
    meta = read_meta(tenant, version, folder)
    check_files(tenant, version, folder, meta, hashes=hashes)
    files = meta["files"]
    known = set(ARRAY_NAMES)
    values: dict[str, Any] = {}
    for field, spec in meta["arrays"].items():
        if field not in known:
            raise CorruptVersionError(tenant, version, META_FILE, f"lists an array {field!r} that models do not have")
        if spec.get("format") == "dense":
            values[field] = _load_npy(tenant, version, folder, f"{field}.npy", files, mmap)
        elif spec.get("format") == "csr":
            values[field] = _load_csr(tenant, version, folder, field, spec, files, mmap=mmap, hashes=hashes)
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
    type_names = meta.get("item_type_names", list(ITEM_TYPES))  # absent in versions stored before newer types
    if not isinstance(type_names, list) or not all(isinstance(name, str) for name in type_names):
        raise CorruptVersionError(tenant, version, META_FILE, "'item_type_names' is not a list of strings")
    try:
        model = model_from_arrays(
            algorithm=meta["algorithm"],
            kind=meta["kind"],
            type_names=tuple(type_names),
            params=dict(meta.get("params") or {}),
            metrics=dict(meta.get("metrics") or {}),
            info=dict(meta.get("info") or {}),
            **values,
        )
    except (TypeError, ValueError) as exc:
        raise CorruptVersionError(tenant, version, META_FILE, f"the arrays do not form a valid model: {exc}") from None
    return LoadedModel(tenant=tenant, version=version, model=model, meta=meta)


def _load_csr(
    tenant: str, version: str, folder: Path, field: str, spec: dict[str, Any], files: dict[str, Any], *, mmap: bool, hashes: bool
) -> sp.csr_matrix:
    data, indices, indptr = (_load_npy(tenant, version, folder, f"{field}.{part}.npy", files, mmap) for part in _CSR_PARTS)
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
    return matrix


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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def folder_size(folder: Path) -> int:
    """Bytes of the files directly in `folder` (errors count as 0)."""
    total = 0
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
    return total
