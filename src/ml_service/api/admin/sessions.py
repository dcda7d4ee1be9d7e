"""Dashboard sessions (files shared by all workers), CSRF tokens, the login rate limit and the audit log."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

COOKIE = "ml_admin_session"


@dataclass(frozen=True)
class Session:
    sid: str
    user: str
    role: str
    csrf: str
    expires_at: float

    def csrf_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given), self.csrf)


class SessionStore:
    """One small file per session under `<ML_MODELS_DIR>/admin/sessions/`, named by a hash of the cookie value."""

    def __init__(self, folder: Path, lifetime_s: float, clock: Callable[[], float] = time.time) -> None:
        self.folder = Path(folder)
        self.lifetime_s = lifetime_s
        self.clock = clock

    def _path(self, sid: str) -> Path:
        return self.folder / hashlib.sha256(sid.encode()).hexdigest()

    def create(self, user: str, role: str) -> Session:
        self.folder.mkdir(parents=True, exist_ok=True)
        session = Session(secrets.token_urlsafe(32), user, role, secrets.token_urlsafe(32), self.clock() + self.lifetime_s)
        path = self._path(session.sid)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"user": user, "role": role, "csrf": session.csrf, "expires_at": session.expires_at}, handle)
        os.replace(tmp, path)
        self._sweep()
        return session

    def get(self, sid: str | None) -> Session | None:
        """The live session of a cookie value; None when unknown, expired (the file is removed) or malformed."""
        if not sid or len(sid) > 100:
            return None
        path = self._path(sid)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if float(data.get("expires_at", 0)) <= self.clock():
            path.unlink(missing_ok=True)
            return None
        return Session(sid, str(data["user"]), str(data["role"]), str(data["csrf"]), float(data["expires_at"]))

    def delete(self, sid: str) -> None:
        self._path(sid).unlink(missing_ok=True)

    def _sweep(self) -> None:
        now = self.clock()
        for path in self.folder.glob("*"):
            try:
                if path.suffix != ".tmp" and json.loads(path.read_text()).get("expires_at", 0) <= now:
                    path.unlink(missing_ok=True)
            except (OSError, ValueError, AttributeError):
                continue


class LoginLimiter:
    """At most `attempts` failed logins per client address per minute (per worker process)."""

    def __init__(self, attempts: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts = attempts
        self.clock = clock
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, client: str) -> bool:
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if self.clock() - t < 60.0]
            self._failures[client] = recent
            return len(recent) >= self.attempts

    def failed(self, client: str) -> None:
        with self._lock:
            self._failures.setdefault(client, []).append(self.clock())


class AuditLog:
    """One JSON line per dashboard action or login: when, who, role, what, on which tenant, the outcome."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()

    def record(self, user: str, role: str, action: str, outcome: str, **details: Any) -> None:
        entry = {"at": self.clock(), "user": user, "role": role, "action": action, "outcome": outcome, **details}
        line = json.dumps(entry, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)

    def tail(self, n: int = 50) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()[-n:]
        except OSError:
            return []
        out = []
        for line in reversed(lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out
