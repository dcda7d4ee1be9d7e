"""The serving extras of a tenant's data (similar-item vectors, content vectors), computed once per parsed export.

A run publishes up to three versions of a tenant from the same data (quick, interim, final); the extras depend
on the data only, so they are computed for the first and shared by the others (on MovieLens-1M under load they
took ~22 s of the quick model's 48 s).
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import numpy as np

from ml_service.data.tenant import TenantData

_CACHE: dict[int, tuple[weakref.ReferenceType[Any], dict[str, Any]]] = {}


def _slot(data: TenantData) -> dict[str, Any]:
    key = id(data)
    held = _CACHE.get(key)
    if held is None or held[0]() is not data:
        _CACHE[key] = (weakref.ref(data, lambda _: _CACHE.pop(key, None)), {})
    return _CACHE[key][1]


def cached(data: TenantData, name: str, compute: Callable[[], Any]) -> Any:
    """compute() once per `data` object and `name`; later calls return the same (read-only) arrays."""
    slot = _slot(data)
    if name not in slot:
        value = compute()
        for array in value if isinstance(value, tuple) else (value,):
            if isinstance(array, np.ndarray):
                array.flags.writeable = False  # shared by several models: nobody may change it in place
        slot[name] = value
    return slot[name]
