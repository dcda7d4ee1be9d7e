"""Where tenants train: ML_TRAIN_EXECUTOR=local (one after another in this process, as always) or dask (a cluster).

`ml-service train` (and so the service's scheduler, which runs it as its child) and `ml-service batch` ask
`make_executor` for one and use its two operations: `train` for a whole run, `map_tenants` for a function per tenant.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol, Sequence

from ml_service.config import Settings
from ml_service.source.base import Source

Reporter = Callable[[str, dict[str, Any]], None]
TenantCall = tuple[str, int, tuple[Any, ...]]  # (tenant, size in bytes: largest first on a cluster, arguments)


class Executor(Protocol):
    """Runs a training run, or a function per tenant, somewhere."""

    name: str

    def train(self, settings: Settings, source: Source, store: Any, *, tenants: list[str] | None = None,
              algorithm: str | None = None, reporter: Reporter | None = None) -> Any:
        ...

    def map_tenants(self, fn: Callable[..., Any], calls: Sequence[TenantCall]) -> Iterator[tuple[str, Any]]:
        ...

    def close(self) -> None:
        ...


class LocalExecutor:
    """Today's way: every tenant in this process, in the export's order."""

    name = "local"

    def train(self, settings: Settings, source: Source, store: Any, *, tenants: list[str] | None = None,
              algorithm: str | None = None, reporter: Reporter | None = None) -> Any:
        from ml_service.training.pipeline import run_training

        return run_training(settings, source, store, tenants=tenants, algorithm=algorithm, reporter=reporter)

    def map_tenants(self, fn: Callable[..., Any], calls: Sequence[TenantCall]) -> Iterator[tuple[str, Any]]:
        """fn(*args) per call in the given order; an exception is yielded as the tenant's result, as on a cluster."""
        for tenant, _size, args in calls:
            try:
                yield tenant, fn(*args)
            except Exception as exc:
                yield tenant, exc

    def close(self) -> None:
        pass


def make_executor(settings: Settings, client: Any = None) -> Executor:
    """The executor ML_TRAIN_EXECUTOR names; `client` (a distributed.Client) overrides ML_DASK_SCHEDULER."""
    if settings.train_executor == "dask" or client is not None:
        from ml_service.training.executor_dask import DaskExecutor

        return DaskExecutor(settings, client)
    return LocalExecutor()
