"""The algorithms the trainer can use, by name; adding one is one line here."""

from __future__ import annotations

from typing import Callable

from ml_service.models.base import Algorithm

_FACTORIES: dict[str, Callable[[], Algorithm]] = {}
_BUILTIN_LOADED: list[bool] = []  # non-empty once every built-in module was imported


def register(name: str, factory: Callable[[], Algorithm]) -> None:
    _FACTORIES[name] = factory


def get(name: str) -> Algorithm:
    """The algorithm called `name`; KeyError names the known ones."""
    _load_builtin()
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}; known: {', '.join(sorted(_FACTORIES))}") from None


def names() -> list[str]:
    _load_builtin()
    return sorted(_FACTORIES)


def _load_builtin() -> None:
    # Not "if _FACTORIES": importing one algorithm module directly registers it before the others load.
    if _BUILTIN_LOADED:
        return
    # Each import registers its algorithms; a module missing here is simply not offered.
    import importlib

    for module in ("popular", "lightfm_modes", "als", "ease", "knn", "lda", "edlae", "seq_edlae"):
        try:
            importlib.import_module(f"ml_service.models.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ml_service.models.{module}":
                raise
    _BUILTIN_LOADED.append(True)
