"""One training run at a time across processes: a lock file at the store root naming its holder, stale ones taken over.

`run.lock` holds JSON {pid, host, started_at, command, token, pid_start}; its mtime is the holder's heartbeat,
renewed while the run lives. A lock is stale (and taken over) when its holder is on this host and its process is
gone (or the pid now belongs to another process), or when its heartbeat is older than the stale limit. A free lock
is taken by exclusive creation and a stale one by a replace conditional on the stale file being unchanged: in a
folder both happen under an flock on `.run.lock.guard`; on S3 they are conditional PutObjects (`If-None-Match: *`,
`If-Match: <ETag>`), so two processes, on one host or many, never both hold the lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ml_service.processes import pid_alive, process_start_time
from ml_service.store.backend import Backend, Stamp, as_backend
from ml_service.store.files import sweep_tmp_files
from ml_service.store.format import StoreError

if TYPE_CHECKING:
    from ml_service.config import Settings

log = logging.getLogger("ml_service.store")

RUN_LOCK_FILE = "run.lock"
GUARD_FILE = ".run.lock.guard"
_ROOT_TMP_MAX_AGE_S = 3600.0  # a root-level .tmp file this old was left by a killed writer


@dataclass(frozen=True)
class LockHolder:
    """Who holds the run lock, as its file says."""

    pid: int
    host: str
    started_at: float
    command: str
    token: str
    heartbeat_at: float
    pid_start: str = ""

    def describe(self) -> str:
        started = dt.datetime.fromtimestamp(self.started_at, dt.timezone.utc).isoformat(timespec="seconds")
        age = max(0.0, time.time() - self.started_at)
        what = f" ({self.command})" if self.command else ""
        return f"pid {self.pid} on host {self.host}{what}, started {started.replace('+00:00', 'Z')} ({age:.0f} s ago)"


class RunLockBusy(StoreError):
    """Another training run holds the lock; `holder` says which."""

    def __init__(self, lock_path: Any, holder: LockHolder):
        super().__init__(f"another training run holds {lock_path}: {holder.describe()}")
        self.holder = holder


class RunLock:
    """The store-wide run lock; use `with lock.held(wait=...)` or acquire()/release()."""

    def __init__(self, root: Path | Backend, *, stale_after_s: float, command: str = "") -> None:
        if stale_after_s <= 0:
            raise ValueError(f"stale_after_s must be positive, got {stale_after_s}")
        self.backend: Backend = as_backend(root)
        self.root = Path(root) if isinstance(root, (str, Path)) else None  # a local folder's path
        self.path: Any = Path(self.backend.where(RUN_LOCK_FILE)) if self.backend.is_local else self.backend.where(RUN_LOCK_FILE)
        self.stale_after_s = stale_after_s
        self.command = command
        self._token: str | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @classmethod
    def for_settings(cls, settings: "Settings", command: str) -> "RunLock":
        """The lock of the store ML_STORE_URL names, stale after ML_RUN_LOCK_STALE minutes without a heartbeat."""
        from ml_service.store.model_store import ModelStore

        store = ModelStore.from_settings(settings)
        where = store.root if store.backend.is_local else store.backend
        return cls(where, stale_after_s=settings.run_lock_stale_minutes * 60.0, command=command)

    @contextlib.contextmanager
    def held(self, *, wait: bool = False, poll_s: float = 1.0, on_wait: Callable[[LockHolder], None] | None = None) -> Iterator["RunLock"]:
        self.acquire(wait=wait, poll_s=poll_s, on_wait=on_wait)
        try:
            yield self
        finally:
            self.release()

    def acquire(self, *, wait: bool = False, poll_s: float = 1.0, on_wait: Callable[[LockHolder], None] | None = None) -> None:
        """Take the lock (or a stale one); RunLockBusy at once, or (`wait`) poll until it is free."""
        if self._token is not None:
            raise StoreError(f"{self.path} is already held by this RunLock")
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
        announced = False
        while True:
            with self._guard():
                stamp = self.backend.stamp(RUN_LOCK_FILE)
                holder = self.holder()
                if holder is None or self._stale_reason(holder):
                    if holder is not None:
                        log.warning("taking over the stale run lock %s of %s: %s", self.path, holder.describe(), self._stale_reason(holder))
                    if self._take(stamp if holder is not None else None):
                        break
                    holder = self.holder()  # another process took it between our read and our write
            if holder is None:
                continue
            if not wait:
                raise RunLockBusy(self.path, holder)
            if not announced and on_wait is not None:
                on_wait(holder)
            announced = True
            time.sleep(poll_s)
        for path in sweep_tmp_files(self.root, _ROOT_TMP_MAX_AGE_S) if self.root is not None else []:
            log.info("removed %s, left by a writer that was killed", path)
        self._stop.clear()
        interval = min(60.0, max(0.05, self.stale_after_s / 6))
        self._heartbeat = threading.Thread(target=self._beat, args=(interval,), name="run-lock-heartbeat", daemon=True)
        self._heartbeat.start()

    def release(self) -> None:
        """Remove the lock file if it is still this process's (a takeover is not undone)."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(5.0)
            self._heartbeat = None
        token, self._token = self._token, None
        if token is None:
            return
        with self._guard():
            holder = self.holder()
            if holder is not None and holder.token == token:
                self.backend.delete(RUN_LOCK_FILE)
            else:
                log.warning("the run lock %s was taken over while this run held it; left to its new holder", self.path)

    def holder(self) -> LockHolder | None:
        """The current holder, None when the lock is free. An unreadable file counts as held until it goes stale."""
        try:
            raw = self.backend.read(RUN_LOCK_FILE)
            stamp = self.backend.stamp(RUN_LOCK_FILE)
        except FileNotFoundError:
            return None
        if stamp is None:
            return None
        heartbeat = stamp.mtime
        try:
            data = json.loads(raw.decode("utf-8"))
            return LockHolder(
                pid=int(data["pid"]), host=str(data["host"]), started_at=float(data["started_at"]),
                command=str(data.get("command", "")), token=str(data["token"]), heartbeat_at=heartbeat,
                pid_start=str(data.get("pid_start", "")),
            )
        except (ValueError, KeyError, TypeError):
            return LockHolder(pid=0, host="unknown (unreadable lock file)", started_at=heartbeat, command="", token="", heartbeat_at=heartbeat)

    def _stale_reason(self, holder: LockHolder) -> str:
        age = time.time() - holder.heartbeat_at
        if age > self.stale_after_s:
            return f"no heartbeat for {age:.0f} s (limit {self.stale_after_s:.0f} s)"
        if holder.host == socket.gethostname() and holder.pid > 0 and os.name != "nt":
            if not pid_alive(holder.pid):
                return f"process {holder.pid} is no longer running"
            if holder.pid_start and (process_start_time(holder.pid) or "") not in ("", holder.pid_start):
                return f"process {holder.pid} is a different process now (the pid was reused)"
        return ""

    def _take(self, stale: Stamp | None) -> bool:
        """Create the lock file (`stale` None) or replace the stale one if unchanged; False when another was faster."""
        token = secrets.token_hex(8)
        document = {
            "pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time(), "command": self.command,
            "token": token, "pid_start": process_start_time(os.getpid()) or "",
        }
        data = json.dumps(document).encode("utf-8")
        taken = self.backend.create(RUN_LOCK_FILE, data) if stale is None else self.backend.replace_if(RUN_LOCK_FILE, data, stale)
        if taken:
            self._token = token
        return taken

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            holder = self.holder()
            if holder is None or holder.token != self._token:
                log.error("the run lock %s is no longer this run's (now %s)", self.path, holder.describe() if holder else "free")
                return
            with contextlib.suppress(OSError):
                self.backend.touch(RUN_LOCK_FILE)

    def _guard(self) -> contextlib.AbstractContextManager[None]:
        if not self.backend.is_local:
            return contextlib.nullcontext()  # the conditional writes are the guard
        return self.backend.lock(GUARD_FILE)  # on Windows the check-and-write is then only nearly atomic
