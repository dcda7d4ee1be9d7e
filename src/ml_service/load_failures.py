"""What serving remembers about failed model loads: versions proven corrupt, transient errors to retry, what was logged."""

from __future__ import annotations

import errno
import logging
import time
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("ml_service.serving")

# OSErrors that say "this file or folder is not there / not a file": a fact about the version, not a passing
# condition. Every other OSError with an errno (EMFILE, ENFILE, ENOMEM from mmap, EIO, ESTALE on NFS, EACCES
# while an operator fixes permissions, ...) may pass and is retried.
_LASTING_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG})
_MAX_KEYS = 100  # distinct problems remembered per tenant between two healthy states


def transient_cause(exc: BaseException) -> BaseException | None:
    """The OS-level error behind `exc` that may pass by itself (EMFILE, ENOMEM, EIO...), or None.

    The store reports an unreadable file as a CorruptVersionError raised inside the `except OSError` that caught
    it, so the OSError is found on the exception's chain (__cause__, else __context__). OSErrors without an errno
    are numpy's own complaints about a file's format: corruption, not transient.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MemoryError):
            return current
        if isinstance(current, OSError) and current.errno is not None and current.errno not in _LASTING_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


def short(exc: BaseException, limit: int = 300) -> str:
    """One line naming the error, cut to `limit` characters (a garbage CURRENT file must not flood the log)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class _Retry:
    attempts: int
    next_at: float
    first_at: float
    gave_notice_at_cap: bool = False


class LoadFailures:
    """Per tenant: versions whose load failed for good, the back-off schedule of transient failures, and the
    last problem logged, so that a poll every second logs a lasting problem once rather than every second.

    Transient failures are retried after `first_wait_s`, doubling up to `max_wait_s`, for as long as they last:
    the wait is bounded, the number of attempts is not, so a model is picked up whenever the filesystem recovers.
    """

    def __init__(self, first_wait_s: float, max_wait_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.first_wait_s = first_wait_s
        self.max_wait_s = max(max_wait_s, first_wait_s)
        self.clock = clock
        self._bad: dict[str, dict[str, str]] = {}  # tenant -> {version: why}
        self._retries: dict[str, _Retry] = {}
        self._logged: dict[str, set[str]] = {}  # tenant -> keys of the problems logged since it was healthy
        self._no_fallback: dict[str, str] = {}  # tenant -> what was current when no version loaded

    # -- verified corruption ------------------------------------------------------------------------------
    def is_bad(self, tenant: str, version: str) -> bool:
        return version in self._bad.get(tenant, {})

    def mark_bad(self, tenant: str, version: str, why: str) -> None:
        """Remember a version whose load failed for a lasting reason (hash, shape, format, missing folder)."""
        self._bad.setdefault(tenant, {})[version] = why

    # -- transient errors ---------------------------------------------------------------------------------
    def transient(self, tenant: str, what: str, exc: BaseException) -> float:
        """Note a transient failure of `what` for the tenant and schedule the next attempt; return its wait."""
        now = self.clock()
        retry = self._retries.get(tenant)
        if retry is None:
            retry = self._retries[tenant] = _Retry(attempts=0, next_at=now, first_at=now)
        retry.attempts += 1
        wait = min(self.first_wait_s * 2 ** (retry.attempts - 1), self.max_wait_s)
        retry.next_at = now + wait
        if retry.attempts == 1:
            log.warning("tenant %s: %s failed with a transient error (%s); retrying in %.3g s", tenant, what, short(exc), wait)
        elif wait >= self.max_wait_s and not retry.gave_notice_at_cap:
            retry.gave_notice_at_cap = True
            log.error(
                "tenant %s: %s still fails after %d attempts over %.0f s (%s); retrying every %.3g s",
                tenant, what, retry.attempts, now - retry.first_at, short(exc), wait,
            )
        return wait

    def retry_due(self, tenant: str) -> bool:
        retry = self._retries.get(tenant)
        return retry is not None and self.clock() >= retry.next_at

    def any_retry_due(self) -> bool:
        now = self.clock()
        return any(now >= retry.next_at for retry in self._retries.values())

    def retry_pending(self, tenant: str) -> bool:
        return tenant in self._retries

    def recovered(self, tenant: str, what: str) -> None:
        """A load succeeded: forget the tenant's transient failures (saying so if there were any)."""
        retry = self._retries.pop(tenant, None)
        if retry is not None:
            log.info("tenant %s: %s succeeded after %d failed attempts", tenant, what, retry.attempts)

    # -- log once -----------------------------------------------------------------------------------------
    def problem(
        self, tenant: str, key: str, text: str, *, level: int = logging.ERROR, exc_info: BaseException | None = None
    ) -> None:
        """Log `text` unless a problem with this key was logged for the tenant since it was last healthy."""
        logged = self._logged.setdefault(tenant, set())
        if key not in logged:
            if len(logged) >= _MAX_KEYS:  # a tenant failing in ever new ways: start over rather than grow
                logged.clear()
            logged.add(key)
            log.log(level, "%s", text, exc_info=exc_info)

    def clear_problem(self, tenant: str) -> None:
        """The tenant is healthy: a problem coming back will be logged again."""
        self._logged.pop(tenant, None)
        self._no_fallback.pop(tenant, None)

    # -- fallbacks tried in vain --------------------------------------------------------------------------
    def fallback_failed(self, tenant: str, unusable: str) -> None:
        """No version of the tenant loaded while `unusable` (a version, or CURRENT's error) was current."""
        self._no_fallback[tenant] = unusable

    def fallback_known_to_fail(self, tenant: str, unusable: str) -> bool:
        return self._no_fallback.get(tenant) == unusable

    def forget(self, keep: set[str]) -> None:
        """Drop what is remembered about tenants no longer in the store."""
        for memo in (self._bad, self._retries, self._logged, self._no_fallback):
            for tenant in [t for t in memo if t not in keep]:
                del memo[tenant]
