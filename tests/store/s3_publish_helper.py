"""Publishes one model to an S3 store over a slow link (each upload waits first), printing each file it uploads:
the partial-version test of tests/store/test_s3_store.py kills it midway with SIGKILL."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ml_service.store import ModelStore
from ml_service.store.s3 import FsspecBackend
from tests.store.support import factors_model


def main() -> None:
    url, endpoint, cache = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    backend = FsspecBackend(url, cache, endpoint_url=endpoint)
    upload = backend.fs.put_file

    def slow_put(local: str, remote: str, **kwargs: object) -> None:
        time.sleep(0.3)  # a slow network: the parent gets time to see a partial version and kill this process
        upload(local, remote, **kwargs)
        print("uploaded", remote, flush=True)

    backend.fs.put_file = slow_put  # type: ignore[method-assign]
    ModelStore(url, backend=backend).publish("3", factors_model(seed=7))
    print("published", flush=True)


if __name__ == "__main__":
    main()
