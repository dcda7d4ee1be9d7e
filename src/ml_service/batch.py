"""Legacy Totara 13/14 batch (spec §9): train each tenant of a data folder and write the i2i_/i2u_ CSVs Totara imports."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, TextIO

import numpy as np

from ml_service.config import ALGORITHMS, ConfigError, Settings
from ml_service.data.tenant import TenantData, item_type_of, type_index_of
from ml_service.models.base import TrainedModel
from ml_service.ranking import EXCLUDE, LEGACY_BATCH_DEMOTION, rank, score, similar
from ml_service.source.base import TenantFiles

log = logging.getLogger(__name__)

STARTED_FLAG = "ml_started"
COMPLETED_FLAG = "ml_completed"
I2I_HEADER = "target_iid,similar_iid,ranking"
I2U_HEADER = "uid,iid,ranking"
# Totara's importer splits an item id into its type (letters_letters) and the trailing number (spec §9.6).
ITEM_ID_PATTERN = re.compile(r"[a-z]+_[a-z]+\d+")
USER_ID_PATTERN = re.compile(r"\d+")  # ml_recommender_users.user_id is an integer column
SCORE_CELLS = 4_000_000  # floats per block of users scored at once (16 MB): bounds memory whatever the catalogue size
FEATURE_MODES = ("mf", "partial", "hybrid")  # algorithms whose feature names the processed_*.txt files list
# The batch, unlike the service, serves nothing: a tiny tenant gets header-only files, as the legacy script wrote (§9.3).
BATCH_SMALL_TENANT_MSG = (
    "The number of users or items is too small to train a model for tenant {tenant}: its i2i_{tenant}.csv and "
    "i2u_{tenant}.csv hold only their header, so Totara imports no recommendations for it"
)


@dataclass
class TenantOutcome:
    """What the batch did for one tenant, printed as one line."""

    tenant: str
    state: str  # "trained" | "skipped" (too small: header-only files) | "failed" (previous files left as they were)
    msg: str
    i2i_rows: int = 0
    i2u_rows: int = 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ml-service batch",
        description=(
            "Totara 13/14 batch flow: read the export in --data_path (tenants.csv and the per-tenant CSVs), "
            "train each tenant, and write i2i_<t>.csv and i2u_<t>.csv next to the export for "
            "import_recommendations.php. Accepts the arguments of the legacy ml_recommender.py."
        ),
    )
    parser.add_argument(
        "--query", type=str.lower, choices=ALGORITHMS, default=None,
        help="algorithm: mf, partial, hybrid (legacy modes) or als, ease, knn, popular, auto "
        "(default: ML_RECOMMENDATION_ALGORITHM, else auto)",
    )
    parser.add_argument("--result_count_user", "--result-count-user", dest="result_count_user", type=_positive_int,
                        default=10, help="recommended items per user and item type (default 10)")
    parser.add_argument("--result_count_item", "--result-count-item", dest="result_count_item", type=_positive_int,
                        default=10, help="similar items per item (default 10)")
    parser.add_argument("--threads", type=_positive_int, default=None, help="training threads (default ML_NUM_THREADS)")
    parser.add_argument("--data_path", "--data-path", dest="data_path", type=Path, required=True,
                        help="the folder holding tenants.csv and the export files (or its parent)")
    return parser


def batch_main(argv: list[str]) -> int:
    """`ml-service batch ...`: 0 when every tenant got its files, 1 when a tenant or the run failed, 2 on bad usage."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(require_totara=False)
    except ConfigError as exc:
        print(f"ml-service batch: {exc}", file=sys.stderr)
        return 2
    settings = settings.with_(
        algorithm=args.query or settings.algorithm, num_threads=args.threads or settings.num_threads
    )
    from ml_service.source.base import SourceError
    from ml_service.store import RunLock, RunLockBusy

    try:
        with RunLock.for_settings(settings, "batch").held():  # never interleaved with a training run on the same models folder
            from ml_service.training.executor import make_executor

            executor = make_executor(settings)  # ML_TRAIN_EXECUTOR=dask: workers must see --data_path at the same path
            try:
                return run_batch(
                    args.data_path, settings,
                    result_count_user=args.result_count_user, result_count_item=args.result_count_item, executor=executor,
                )
            finally:
                executor.close()
    except RunLockBusy as exc:
        print(f"ml-service batch: not started: {exc}", file=sys.stderr)
        return 1
    except SourceError as exc:  # ML_TRAIN_EXECUTOR=dask: the scheduler or its workers cannot be reached
        print(f"ml-service batch: {exc}", file=sys.stderr)
        return 1


def run_batch(
    data_path: Path, settings: Settings, *, result_count_user: int, result_count_item: int, out: TextIO | None = None,
    executor: Any = None,
) -> int:
    """The whole legacy run: flags, every tenant of tenants.csv, outputs; see batch_main for the exit codes.

    `executor` (training/executor.py) runs process_tenant per tenant: here one after another (None, the default),
    or as tasks on a Dask cluster, largest tenant first, whose workers read and write the same `data_path`."""
    from ml_service.data.limits import InputLimits
    from ml_service.source.base import SourceError
    from ml_service.source.folder import FolderSource

    out = out if out is not None else sys.stderr
    data_path = Path(data_path).absolute()
    if not data_path.is_dir():
        print(f"ml-service batch: --data_path {data_path} does not exist or is not a folder", file=out)
        return 2
    started = data_path / STARTED_FLAG
    try:
        descriptor = os.open(started, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        print(
            f"ml-service batch: {started} exists ({_flag_age(started)}): another recommendation run is active. "
            f"If none is (e.g. a run was killed), delete that file and run again.",
            file=out,
        )
        return 1
    with os.fdopen(descriptor, "w") as handle:
        handle.write(str(int(time.time())))
    try:
        (data_path / COMPLETED_FLAG).unlink(missing_ok=True)
        try:
            # The legacy flow has no export_completed check; the input limits hold as for `ml-service train`.
            snapshot = FolderSource(data_path, force=True, limits=InputLimits.from_settings(settings)).fetch()
        except SourceError as exc:
            print(f"ml-service batch: {exc}", file=out)
            return 1
        outcomes = []
        calls = []
        for tenant in snapshot.tenants:
            if tenant in snapshot.failed:
                outcome = TenantOutcome(tenant, "failed", snapshot.failed[tenant])
                outcomes.append(outcome)
                print(_describe(outcome), file=out, flush=True)
            else:
                files = snapshot.files(tenant)
                calls.append((tenant, _files_bytes(files), (files, snapshot.root, settings, result_count_user, result_count_item)))
        if executor is None:
            from ml_service.training.executor import LocalExecutor

            executor = LocalExecutor()
        for tenant, outcome in executor.map_tenants(process_tenant, calls):
            if isinstance(outcome, BaseException):  # on a cluster: the task's workers died too often
                outcome = TenantOutcome(tenant, "failed", f"{type(outcome).__name__}: {outcome}")
            outcomes.append(outcome)
            print(_describe(outcome), file=out, flush=True)
        _atomic_write(data_path / COMPLETED_FLAG, [str(int(time.time()))])
        failed = [o.tenant for o in outcomes if o.state == "failed"]
        if failed:
            print(f"ml-service batch: tenants {', '.join(failed)} failed; their previous output files were left unchanged", file=out)
        return 1 if failed else 0
    finally:
        started.unlink(missing_ok=True)


def process_tenant(
    files: TenantFiles, folder: Path, settings: Settings, result_count_user: int, result_count_item: int
) -> TenantOutcome:
    """Load, train and write one tenant's outputs into `folder`; never raises for the tenant's own problems."""
    from ml_service.data.load import load_tenant
    from ml_service.data.tenant import DataError
    from ml_service.training.pipeline import train_tenant

    tenant = files.tenant
    try:
        data = load_tenant(files)
    except DataError as exc:
        return TenantOutcome(tenant, "failed", f"Invalid export data: {exc}")
    except OSError as exc:
        return TenantOutcome(tenant, "failed", f"cannot read the export files: {exc}")
    if data.n_users < settings.min_users or data.n_items < settings.min_items:
        write_empty_outputs(folder, tenant)
        return TenantOutcome(tenant, "skipped", BATCH_SMALL_TENANT_MSG.format(tenant=tenant))
    try:
        result = train_tenant(data, settings, algorithm=settings.algorithm)
        if result.model is None or result.state != "trained":
            write_empty_outputs(folder, tenant)
            return TenantOutcome(tenant, "skipped", result.msg)
        user_names, item_names = feature_names(data, result.model.algorithm)
        counts = write_outputs(
            folder, tenant, result.model, result_count_user, result_count_item, user_names, item_names,
            seen_policy=settings.seen_policy,
        )
    except Exception as exc:  # one tenant's crash must not stop the others
        log.exception("batch: tenant %s failed", tenant)
        return TenantOutcome(tenant, "failed", f"{type(exc).__name__}: {exc}")
    return TenantOutcome(tenant, "trained", f"{result.msg} ({result.model.algorithm})", *counts)


def feature_names(data: TenantData, algorithm: str) -> tuple[list[str], list[str]]:
    """User and item feature names of the LightFM modes (build_features); other algorithms use none: [], []."""
    if algorithm not in FEATURE_MODES:
        return [], []
    from ml_service.data.features import build_features

    features = build_features(data, algorithm)
    return list(features.user_names), list(features.item_names)


# ------------------------------------------------------------------------------------------------- outputs
def write_empty_outputs(folder: Path, tenant: str) -> None:
    """A skipped tenant: header-only CSVs without a trailing newline (as the legacy script wrote), empty lists."""
    _atomic_write(folder / f"i2i_{tenant}.csv", [I2I_HEADER])
    _atomic_write(folder / f"i2u_{tenant}.csv", [I2U_HEADER])
    _atomic_write(folder / f"processed_user_data_{tenant}.txt", ["[]"])
    _atomic_write(folder / f"processed_item_data_{tenant}.txt", ["[]"])


def write_outputs(
    folder: Path,
    tenant: str,
    model: TrainedModel,
    result_count_user: int,
    result_count_item: int,
    user_feature_names: Sequence[str] = (),
    item_feature_names: Sequence[str] = (),
    *,
    seen_policy: str = EXCLUDE,
) -> tuple[int, int]:
    """Write i2i_<t>.csv, i2u_<t>.csv and the processed_*_data_<t>.txt files atomically; return the row counts.

    `seen_policy` is ML_SEEN_POLICY: a learner's positive items are left out of i2u, or demoted (spec §11 item 14).
    """
    valid_items = importable_items(model)
    counter = _Counter()
    _atomic_write(folder / f"i2i_{tenant}.csv", counter.count("i2i", i2i_lines(model, result_count_item, valid_items)))
    _atomic_write(folder / f"i2u_{tenant}.csv", counter.count("i2u", i2u_lines(model, result_count_user, valid_items, seen_policy)))
    _atomic_write(folder / f"processed_user_data_{tenant}.txt", [json.dumps(list(user_feature_names))])
    _atomic_write(folder / f"processed_item_data_{tenant}.txt", [json.dumps(list(item_feature_names))])
    return counter.rows["i2i"], counter.rows["i2u"]


def importable_items(model: TrainedModel) -> np.ndarray:
    """bool (n_items,): ids Totara's importer can split (letters_letters + digits) and whose prefix is the item's type."""
    types = np.asarray(model.item_types)
    type_index = type_index_of(model.type_names)
    valid = np.array(
        [bool(ITEM_ID_PATTERN.fullmatch(iid)) and item_type_of(iid, type_index) == int(t) for iid, t in zip(model.item_ids, types)],
        dtype=bool,
    )
    if not valid.all():
        bad = [model.item_ids[i] for i in np.flatnonzero(~valid)[:5]]
        log.warning("batch: %d item ids cannot be imported by Totara and are left out, e.g. %s", int((~valid).sum()), bad)
    return valid


def i2u_lines(
    model: TrainedModel, n: int, valid_items: np.ndarray | None = None, seen_policy: str = EXCLUDE
) -> Iterator[str]:
    """`uid,iid,ranking` lines: per user, per type in the model's type order, the n best items of that type.

    ranking.rank for a block of users at a time: seen items excluded, or demoted by 0.3 x the unseen score
    range with seen_policy "demote" (spec §11 item 14).
    """
    yield I2U_HEADER + "\n"
    exclude = None if valid_items is None or valid_items.all() else ~valid_items
    users = np.array([i for i, uid in enumerate(model.user_ids) if USER_ID_PATTERN.fullmatch(uid)], dtype=np.int64)
    if users.size < model.n_users:
        log.warning("batch: %d user ids are not whole numbers and are left out", model.n_users - users.size)
    user_ids = np.asarray(model.user_ids, dtype=object)
    item_ids = np.asarray(model.item_ids, dtype=object)
    block = max(1, SCORE_CELLS // max(1, model.n_items))
    for start in range(0, users.size, block):
        chunk = users[start:start + block]
        scored = score(model, chunk)
        # columns: type 0's ranks, type 1's ranks, ...; row-major order is then user, type, rank
        per_type = [
            rank(model, scored, t, n, seen_policy, exclude=exclude, demotion=LEGACY_BATCH_DEMOTION)
            for t in range(len(model.type_names))
        ]
        keep = np.concatenate([lists.listed() for lists in per_type], axis=1)
        row_users = np.repeat(chunk, keep.sum(axis=1))
        uids = user_ids[row_users].tolist()
        iids = item_ids[np.concatenate([lists.items for lists in per_type], axis=1)[keep]].tolist()
        scores_kept = np.concatenate([lists.scores for lists in per_type], axis=1)[keep].tolist()
        yield "".join([f"{u},{i},{v:.12f}\n" for u, i, v in zip(uids, iids, scores_kept)])


def i2i_lines(model: TrainedModel, n: int, valid_items: np.ndarray | None = None) -> Iterator[str]:
    """`target_iid,similar_iid,ranking` lines: per item, the n most similar other items of its family.

    ranking.similar (what /similar-items serves) for every importable target at once.
    """
    yield I2I_HEADER + "\n"
    exclude = None if valid_items is None or valid_items.all() else ~valid_items
    targets = np.arange(model.n_items) if exclude is None else np.flatnonzero(~exclude)
    lists = similar(model, targets, n, exclude=exclude)
    item_ids = model.item_ids
    lines = []
    for row, target in enumerate(targets.tolist()):
        head = item_ids[target]
        for item, value in lists.pairs(row):
            lines.append(f"{head},{item_ids[item]},{value:.12f}\n")
        if len(lines) > 50_000:
            yield "".join(lines)
            lines = []
    yield "".join(lines)


# ------------------------------------------------------------------------------------------------- files
class _Counter:
    """Counts the data lines passing through to a file (without keeping them)."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}

    def count(self, name: str, chunks: Iterable[str]) -> Iterator[str]:
        self.rows[name] = -1  # the header
        for chunk in chunks:
            self.rows[name] += chunk.count("\n")
            yield chunk


def _atomic_write(path: Path, chunks: Iterable[str]) -> None:
    """Write next to `path`, fsync, then rename over it: Totara's importer never reads half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _flag_age(path: Path) -> str:
    try:
        written = int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return "start time unknown"
    return f"written at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(written))}"


def _describe(outcome: TenantOutcome) -> str:
    if outcome.state == "trained":
        return f"tenant {outcome.tenant}: {outcome.msg}; i2i {outcome.i2i_rows} rows, i2u {outcome.i2u_rows} rows"
    return f"tenant {outcome.tenant}: {outcome.state}: {outcome.msg}"


def _files_bytes(files: TenantFiles) -> int:
    """A tenant's export size, to hand the largest tenants to a cluster first."""
    total = 0
    for path in (files.user_interactions, files.user_data, files.item_data):
        try:
            total += Path(path).stat().st_size
        except OSError:
            pass
    return total


def _positive_int(value: str) -> int:
    try:
        number = int(value.strip().strip("'\""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return number
