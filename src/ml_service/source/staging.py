"""Staging folders of HTTP downloads: named after their creator, swept when that process is gone."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from ml_service.processes import process_started_at

log = logging.getLogger("ml_service.source")

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
# <UTC stamp>-<pid>-<random>, as TotaraHttpSource creates them.
_STAGING_NAME = re.compile(r"^(\d{8}T\d{6}Z)-(\d+)-")
# Without a way to ask whether a pid is alive (Windows), a folder is stale after this long.
_STALE_WITHOUT_PID_CHECK_S = 24 * 3600.0


def staging_prefix(now: float | None = None) -> str:
    """The name prefix of a new staging folder created by this process."""
    stamp = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc).strftime(STAMP_FORMAT)
    return f"{stamp}-{os.getpid()}-"


def sweep_stale_staging(staging_root: Path) -> list[Path]:
    """Delete staging folders whose creating process is gone (a killed run left them); return what was deleted.

    A folder of a live process (another run downloading now) is kept. Unrecognised names are never touched.
    """
    swept: list[Path] = []
    try:
        entries = list(Path(staging_root).iterdir())
    except OSError:  # no staging folder yet, or unreadable: creating the new one will say so
        return swept
    for entry in entries:
        match = _STAGING_NAME.match(entry.name)
        if not match or not entry.is_dir() or entry.is_symlink():
            continue
        created = datetime.strptime(match.group(1), STAMP_FORMAT).replace(tzinfo=timezone.utc).timestamp()
        if _creator_alive(int(match.group(2)), created):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            log.warning("removed staging folder %s left by an interrupted run (process %s)", entry, match.group(2))
            swept.append(entry)
    return swept


def _creator_alive(pid: int, created: float) -> bool:
    """Whether process `pid`, which created a folder at `created` (UTC seconds), may still be using it."""
    if pid == os.getpid():
        return True  # this process: a fetch of its own may still be using it
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return time.time() - created < _STALE_WITHOUT_PID_CHECK_S
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    started = process_started_at(pid)
    # A pid reused after a restart (containers restart with the same low pids): that process began after the folder.
    return started is None or started <= created + 2.0
