"""`ml-service worker`: the command line of a Dask worker that offers its threads and memory as task resources."""

from __future__ import annotations

import sys

from ml_service.config import ConfigError, Settings

MEMORY_SHARE = 0.8  # of the machine's RAM, by default: the rest for the OS and page cache of the store's files


def worker_command(settings: Settings, scheduler: str | None, *, nthreads: int | None = None,
                   memory_mb: int | None = None, name: str | None = None) -> list[str]:
    """argv of `dask worker` with `--resources "threads=N MEMORY=MB"` matching its --nthreads and --memory-limit.

    Tasks declare what their tenant needs (executor_task.task_limits), so one worker runs one large tenant on
    all its threads or several small ones side by side; its nanny restarts it beyond the memory limit, and the
    scheduler re-runs its tasks elsewhere.
    """
    try:
        import distributed  # noqa: F401
        import psutil
    except ImportError as exc:
        raise ConfigError("`ml-service worker` needs the cluster extra: pip install 'ml-service[cluster]'") from exc
    address = scheduler or settings.dask_scheduler
    if not address:
        raise ConfigError("no scheduler: give its address (ml-service worker tcp://scheduler:8786) or set ML_DASK_SCHEDULER")
    threads = nthreads or settings.num_threads
    if threads < 1:
        raise ConfigError(f"--nthreads {threads} is invalid: expected at least 1")
    memory = memory_mb or int(psutil.virtual_memory().total * MEMORY_SHARE / 2**20)
    if memory < 256:
        raise ConfigError(f"--memory-mb {memory} is invalid: a training task needs at least 256 MB")
    argv = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1", "--nthreads", str(threads),
            "--memory-limit", f"{memory}MiB", "--resources", f"threads={threads} MEMORY={memory}"]
    return argv + (["--name", name] if name else [])
