"""The in-memory serving index: one TenantIndex per tenant, hot-swapped as the store publishes new versions."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import scipy.sparse as sp

from ml_service.data.tenant import ITEM_TYPES, type_families, type_index_of
from ml_service.load_failures import LoadFailures, short, transient_cause
from ml_service.models.base import TrainedModel
from ml_service.models.parts import FactorModel, replace_arrays
from ml_service.ranking import EXCLUDE, family_candidates, rank, similar, type_candidates
from ml_service.store import ModelStore, StoreError

log = logging.getLogger("ml_service.serving")
_STORE = "*"  # the key LoadFailures logs store-wide problems under (no tenant id can be "*")
_UNREAD = object()  # a tenant's CURRENT was not read in bulk: read it alone



def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def _longest_first(type_names: tuple[str, ...]) -> tuple[str, ...]:
    """Longest names first so that no type name is left half-removed by a shorter one."""
    return tuple(sorted(type_names, key=len, reverse=True))


_TYPE_NAMES_LONGEST_FIRST = _longest_first(ITEM_TYPES)


def wire_id(item_id: str, type_names: tuple[str, ...] = ITEM_TYPES) -> str:
    """The id as Totara receives it (spec §2.4): every occurrence of any type name (the five, plus a model's
    newer types when given) removed, e.g. `123`."""
    names = _TYPE_NAMES_LONGEST_FIRST if type_names == ITEM_TYPES else _longest_first(type_names)
    for name in names:
        if name in item_id:
            item_id = item_id.replace(name, "")
    return item_id


def plain_arrays(model: TrainedModel) -> TrainedModel:
    """The model with memory-mapped arrays seen as plain ndarrays (same memory, no copy).

    Indexing a np.memmap goes through a Python-level __getitem__; a plain view of the same pages does not,
    which matters at thousands of requests per second.
    """
    parts = {"scoring": model.scoring, "extras": model.extras}
    for key, part in parts.items():
        changes: dict[str, Any] = {}
        for name, value in part.arrays().items():
            if isinstance(value, np.memmap):
                changes[name] = value.view(np.ndarray)
            elif sp.isspmatrix_csr(value) and any(isinstance(a, np.memmap) for a in (value.data, value.indices, value.indptr)):
                arrays = (value.data.view(np.ndarray), value.indices.view(np.ndarray), value.indptr.view(np.ndarray))
                changes[name] = sp.csr_matrix(arrays, shape=value.shape, copy=False)
        if changes:  # the same memory as the validated part: no second validation
            parts[key] = replace_arrays(part, **changes)
    changed = any(parts[key] is not getattr(model, key) for key in parts)
    return dataclasses.replace(model, **parts) if changed else model


def _rows(array: Any, rows: np.ndarray) -> np.ndarray | None:
    """array[rows] as a contiguous float32 copy (None stays None)."""
    return None if array is None else np.ascontiguousarray(np.asarray(array)[rows], dtype=np.float32)


class TenantIndex:
    """One tenant's model plus the lookups computed once at load: id -> index, items per type and family."""

    def __init__(self, tenant: str, version: str, model: TrainedModel, meta: Mapping[str, Any] | None = None):
        self.tenant = tenant
        self.version = version
        self.model = model = plain_arrays(model)
        self.meta: dict[str, Any] = dict(meta or {})
        self.user_index: dict[str, int] = {uid: i for i, uid in enumerate(model.user_ids)}
        self.item_index: dict[str, int] = {iid: i for i, iid in enumerate(model.item_ids)}
        # The model's own item types: the five known ones, then the tenant's newer ones (spec §11 item 16).
        self.type_index: dict[str, int] = type_index_of(model.type_names)
        self.type_family: tuple[int, ...] = type_families(model.type_names)
        # What each type's and family's lists may show, from the ranking module (its item filters apply here too).
        self.type_items: tuple[np.ndarray, ...] = tuple(type_candidates(model, t) for t in range(len(model.type_names)))
        self.family_items: dict[int, np.ndarray] = {f: family_candidates(model, f) for f in sorted(set(self.type_family))}
        self.wire_ids: list[str] = [wire_id(iid, model.type_names) for iid in model.item_ids]
        # The same ids as JSON strings (quotes, escapes), so a response body is joined rather than encoded.
        self.json_wire_ids: list[str] = [json.dumps(wid, ensure_ascii=True) for wid in self.wire_ids]
        # Contiguous item-factor rows per type: /user-items then scores only the requested type's items.
        part, extras = model.scoring, model.extras
        factors = isinstance(part, FactorModel)
        self.type_factors: tuple[np.ndarray | None, ...] = tuple(
            _rows(part.item_factors, rows) if factors else None for rows in self.type_items
        )
        self.type_biases: tuple[np.ndarray | None, ...] = tuple(
            _rows(part.item_biases, rows) if factors else None for rows in self.type_items
        )
        self.type_popularity: tuple[np.ndarray, ...] = tuple(_rows(extras.popularity, rows) for rows in self.type_items)
        # Contiguous similarity / content vectors per family: /similar-items is one product on one block.
        self.family_vectors: dict[int, np.ndarray | None] = {
            f: _rows(extras.similarity_vectors, rows) for f, rows in self.family_items.items()
        }
        self.family_content: dict[int, np.ndarray | None] = {
            f: _rows(extras.content_vectors, rows) for f, rows in self.family_items.items()
        }

    @property
    def n_users(self) -> int:
        return len(self.user_index)

    @property
    def n_items(self) -> int:
        return len(self.item_index)

    def has_type(self, item_type: str) -> bool:
        """True for the five known item types and the newer types this tenant's model has (spec §11 item 16)."""
        return item_type in self.type_index

    def find_item(self, item_id: str) -> int | None:
        """Index of a prefixed item id; unknown ids retry with `article` -> `microlearning` (spec §2.2 step 4)."""
        index = self.item_index.get(item_id)
        if index is None and "article" in item_id:
            index = self.item_index.get(item_id.replace("article", "microlearning"))
        return index

    def find_user(self, user_id: str) -> int | None:
        """Index of a user id, accepting `007` for `7` as Totara's integer ids would."""
        index = self.user_index.get(user_id)
        if index is None and user_id.isascii() and user_id.isdigit():
            # Not int(): Python refuses to convert strings of more than 4,300 digits (a 500 on a long id).
            index = self.user_index.get(user_id.lstrip("0") or "0")
        return index

    def rank_user(self, user_id: str, item_type: str, n: int, seen_policy: str = EXCLUDE) -> list[tuple[int, float]]:
        """(item index, score) of the n best items of `item_type`; an unknown user gets cold start (D1).

        Raises KeyError for an item type that is not one of the model's type_names (see has_type).
        """
        type_index = self.type_index[item_type]
        return rank(
            self.model,
            [self.find_user(user_id)],
            type_index,
            n,
            seen_policy,
            type_items=self.type_items[type_index],
            type_factors=self.type_factors[type_index],
            type_biases=self.type_biases[type_index],
            type_popularity=self.type_popularity[type_index],
        ).pairs(0)

    def user_items(self, user_id: str, item_type: str, n: int, seen_policy: str = EXCLUDE) -> list[tuple[str, float]]:
        """(prefixed item id, raw score) of the n best items of `item_type` for the user, best first."""
        ids = self.model.item_ids
        return [(ids[i], s) for i, s in self.rank_user(user_id, item_type, n, seen_policy)]

    def rank_similar(self, item_id: str, n: int) -> list[tuple[int, float]] | None:
        """(item index, cosine) of the n items of the target's family most like it (D2); None = unknown item."""
        item = self.find_item(item_id)
        if item is None:
            return None
        family = self.type_family[int(self.model.item_types[item])]
        return similar(
            self.model,
            [item],
            n,
            family_items=self.family_items[family],
            family_vectors=self.family_vectors[family],
            family_content=self.family_content[family],
        ).pairs(0)

    def similar_items(self, item_id: str, n: int) -> list[tuple[str, float]] | None:
        """(prefixed item id, cosine) of the items most similar to the target, or None for an unknown item."""
        ranked = self.rank_similar(item_id, n)
        if ranked is None:
            return None
        ids = self.model.item_ids
        return [(ids[i], s) for i, s in ranked]

    def describe(self) -> dict[str, Any]:
        """What /health-check shows about this tenant's model (D8)."""
        model = self.model
        return {
            "version": self.version,
            "algorithm": model.algorithm,
            "users": model.n_users,
            "items": model.n_items,
            "metrics": dict(model.metrics),
            "meta": self.meta,
        }


@dataclass(frozen=True)
class ServingState:
    """Everything a request reads, replaced as a whole: a request never sees half of an update."""

    indexes: Mapping[str, TenantIndex] = field(default_factory=dict)
    status: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # store.read_status()
    known_tenants: frozenset[str] = frozenset()  # tenants the store lists, trained or not
    token: str | None = None  # the store's state_token() this state was built from


class Recommender:
    """Serves the store's current models; `refresh()` rebuilds changed tenants beside the old ones and swaps.

    One tenant's broken files never stop the others: a tenant whose CURRENT is garbage or unreadable, or whose
    version fails to load, keeps its previous index (or, with none, its newest version that loads) and the
    problem is logged once. Transient OS errors (EMFILE, ENOMEM from mmap, EIO...) are retried with back-off
    from `retry_wait_s` up to `retry_max_wait_s`; only lasting failures (hash, shape, format, missing
    folder) mark a version as bad, until the tenant's CURRENT names another one.
    """

    def __init__(
        self,
        store: ModelStore,
        *,
        retry_wait_s: float = 1.0,
        retry_max_wait_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.state = ServingState()  # the one attribute requests read; only ever replaced whole
        self._refresh_lock = threading.Lock()
        self._failures = LoadFailures(retry_wait_s, retry_max_wait_s, clock)
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._clock = clock
        self._store_error: tuple[float, float, str] | None = None  # (since, wall-clock since, error) while unreachable
        self._store_ok_at: float | None = None  # wall-clock time of the last successful poll of the store

    # -- questions requests ask -------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """False until the store holds at least one model or a training run has reported on some tenant."""
        state = self.state
        return bool(state.indexes) or bool(state.status) or bool(state.known_tenants)

    def index(self, tenant: str) -> TenantIndex | None:
        return self.state.indexes.get(tenant)

    def knows_tenant(self, tenant: str) -> bool:
        state = self.state
        return tenant in state.indexes or tenant in state.known_tenants or tenant in state.status

    def store_health(self) -> dict[str, Any]:
        """What /health-check says about the model store: reachable at the last poll, or since when it is not."""
        error = self._store_error
        health: dict[str, Any] = {
            "url": str(self.store.root),
            "reachable": error is None,
            "last_ok_at": _iso(self._store_ok_at),
        }
        if error is not None:
            health["unreachable_since"] = _iso(error[1])
            health["unreachable_seconds"] = round(self._clock() - error[0], 1)
            health["error"] = error[2]
        return health

    # -- keeping up with the store -------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Load tenants whose current version changed (or whose transient failure is due for a retry), then
        swap the whole state at once; True if it changed. Never raises for one tenant's files."""
        with self._refresh_lock:
            old = self.state
            failures = self._failures
            try:
                token = self.store.state_token()
                due = token != old.token or old.token is None or failures.any_retry_due()
                tenants = self.store.tenants() if due else None
                pointers = self._pointers(tenants) if tenants else {}
            except Exception as exc:  # the store root itself is unreadable: keep everything as it is
                failures.problem(  # keyed by the error's type: an outage's messages vary from poll to poll
                    _STORE, type(exc).__name__, f"reading the model store {self.store.root} failed ({short(exc)}); "
                    "serving the models loaded before",
                )
                if self._store_error is None:
                    self._store_error = (self._clock(), time.time(), short(exc))
                return False
            if self._store_error is not None:
                log.warning("the model store %s is reachable again after %.0f s", self.store.root, self._clock() - self._store_error[0])
                self._store_error = None
            self._store_ok_at = time.time()
            failures.clear_problem(_STORE)
            status = self._read_status(old)
            if tenants is None:
                # No publish since last time; a run may still have reported untrained or failed tenants.
                if status == old.status:
                    return False
                self.state = dataclasses.replace(old, status=status)
                return True
            indexes: dict[str, TenantIndex] = {}
            for tenant in tenants:
                index = self._resolve(tenant, old.indexes.get(tenant), pointers.get(tenant, _UNREAD))
                if index is not None:
                    indexes[tenant] = index
            failures.forget(set(tenants) | {_STORE})
            new = ServingState(indexes=indexes, status=status, known_tenants=frozenset(tenants), token=token)
            changed = (
                new.status != old.status
                or new.known_tenants != old.known_tenants
                or set(indexes) != set(old.indexes)
                or any(indexes[t] is not old.indexes.get(t) for t in indexes)
            )
            self.state = new  # the hot swap: one reference assignment
            if changed:
                self._prune_cache(new, old)
            return changed

    def _prune_cache(self, new: ServingState, old: ServingState) -> None:
        """Drop locally cached versions (object-store backends) of tenants whose served version changed."""
        prune = getattr(self.store.backend, "prune_cache", None)
        if prune is None:
            return
        for tenant in set(old.indexes) | set(new.indexes):
            before, after = old.indexes.get(tenant), new.indexes.get(tenant)
            if before is after:
                continue
            try:
                prune(tenant, {after.version} if after is not None else set())
            except OSError as exc:
                log.warning("tenant %s: cleaning the local cache of model versions failed: %s", tenant, exc)

    def _pointers(self, tenants: list[str]) -> dict[str, Any]:
        """Every tenant's CURRENT read at once where the store can (an object store: concurrent GETs)."""
        bulk = getattr(self.store, "current_versions", None)
        return dict(bulk(tenants)) if bulk is not None else {}

    def _resolve(self, tenant: str, current: TenantIndex | None, pointer: Any = _UNREAD) -> TenantIndex | None:
        """The index to serve for one tenant now: unchanged, newly loaded, kept after a failure, or a fallback.

        `pointer` is the tenant's CURRENT as read in bulk (a version, None, or the exception), or _UNREAD."""
        failures = self._failures
        keeping = f"still serving version {current.version}" if current is not None else "the tenant is not served"
        try:
            if pointer is _UNREAD:
                version = self.store.current_version(tenant)
            elif isinstance(pointer, Exception):
                raise pointer
            else:
                version = pointer
        except Exception as exc:  # unreadable or garbage CURRENT (StoreError, UnicodeDecodeError, OSError...)
            if transient_cause(exc) is not None:
                failures.transient(tenant, "reading CURRENT", exc)
                return current
            error = short(exc)
            if current is not None:
                failures.problem(tenant, error, f"tenant {tenant}: {error}; {keeping}")
                return current
            failures.problem(tenant, error, f"tenant {tenant}: {error}; looking for its newest model version that loads")
            return self._newest_good(tenant, None, error)
        if version is None:
            if current is not None:
                log.info("tenant %s has no current model any more; it is no longer served", tenant)
            return None
        if current is not None and current.version == version:
            failures.recovered(tenant, "reading CURRENT")
            failures.clear_problem(tenant)
            return current
        if failures.is_bad(tenant, version):
            return current if current is not None else self._newest_good(tenant, version, version)
        what = f"loading model version {version}"
        try:
            index = self._load(tenant, version)
        except Exception as exc:  # a broken version must never take serving down
            if transient_cause(exc) is not None:
                failures.transient(tenant, what, exc)
                return current
            error = short(exc)
            failures.mark_bad(tenant, version, error)
            trace = None if isinstance(exc, StoreError) else exc  # a bug rather than a damaged file: keep the traceback
            if current is not None:
                failures.problem(tenant, version, f"tenant {tenant}: {what} failed: {error}; {keeping}", exc_info=trace)
                return current
            failures.problem(
                tenant, version, f"tenant {tenant}: {what} failed: {error}; looking for its last good version", exc_info=trace
            )
            return self._newest_good(tenant, version, version)
        failures.recovered(tenant, what)
        failures.clear_problem(tenant)
        log.info("serving tenant %s model version %s (%s)", tenant, index.version, index.model.algorithm)
        return index

    def _load(self, tenant: str, version: str) -> TenantIndex:
        loaded = self.store.load(tenant, version)
        return TenantIndex(tenant, loaded.version, loaded.model, loaded.meta)

    def _newest_good(self, tenant: str, unusable: str | None, why: str) -> TenantIndex | None:
        """With nothing served yet and the current version unusable (or unknown: None), the first version that
        loads: older than the unusable one newest first, then newer ones (as ModelStore.load chooses).

        `why` (the unusable version, or CURRENT's error) marks a search that found nothing, so that it is not
        repeated, nor logged, at every hot swap of other tenants while the tenant stays as it is.
        """
        failures = self._failures
        if failures.fallback_known_to_fail(tenant, why):
            return None
        try:
            infos = self.store.versions(tenant)  # newest first
        except Exception as exc:
            if transient_cause(exc) is not None:
                failures.transient(tenant, "listing model versions", exc)
                return None
            error = short(exc)
            failures.problem(tenant, "versions:" + error, f"tenant {tenant}: listing its model versions failed: {error}; the tenant is not served")
            failures.fallback_failed(tenant, why)
            return None
        names = [info.version for info in infos]
        if unusable is not None:
            names = [n for n in names if n < unusable] + [n for n in reversed(names) if n > unusable]
        for info in infos:
            if not info.ok:
                failures.mark_bad(tenant, info.version, info.error)
        for name in names:
            if failures.is_bad(tenant, name):
                continue
            try:
                index = self._load(tenant, name)
            except Exception as exc:
                if transient_cause(exc) is not None:
                    failures.transient(tenant, f"loading model version {name}", exc)
                    return None
                failures.mark_bad(tenant, name, short(exc))
                continue
            failures.problem(
                tenant, "fallback:" + name,
                f"tenant {tenant}: serving its last good model version {name} "
                f"({'current version ' + unusable if unusable else 'CURRENT'} is unusable)",
                level=logging.WARNING,
            )
            return index
        failures.problem(tenant, "nothing:" + why, f"tenant {tenant} has no model version that loads ({len(names)} tried); the tenant is not served")
        failures.fallback_failed(tenant, why)
        return None

    def _read_status(self, old: ServingState) -> dict[str, Mapping[str, Any]]:
        try:
            return dict(self.store.read_status())
        except OSError as exc:  # the object store went away between two reads
            log.warning("reading the training status failed (%s); keeping the previous status", short(exc))
            return dict(old.status)
        except Exception:
            log.exception("reading the training status failed; keeping the previous status")
            return dict(old.status)

    def start_polling(self, interval_s: float = 1.0) -> None:
        """Call refresh() every `interval_s` seconds in a daemon thread until stop_polling()."""
        if self._poller is not None and self._poller.is_alive():
            return
        self._stop.clear()
        self._poller = threading.Thread(target=self._poll, args=(interval_s,), name="model-refresh", daemon=True)
        self._poller.start()

    def stop_polling(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout_s)
            self._poller = None

    def _poll(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.refresh()
            except Exception:
                log.exception("refreshing the served models failed; serving the previous ones")
