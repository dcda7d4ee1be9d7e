"""Settings from ML_* environment variables: types, defaults, validation, one immutable object."""

from __future__ import annotations

import importlib.util
import os
import re
import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from ml_service.data.limits import MB, InputLimits

REFERENCE_ALGORITHMS = ("hybrid", "partial", "mf")
PROJECT_ALGORITHMS = ("als", "ease", "edlae", "knn", "lda", "popular")
ALGORITHMS = ("auto",) + REFERENCE_ALGORITHMS + PROJECT_ALGORITHMS


def algorithm_names() -> tuple[str, ...]:
    """ALGORITHMS and every other algorithm registered in models/registry.py (imports the algorithm modules)."""
    from ml_service.models import registry

    return ALGORITHMS + tuple(name for name in registry.names() if name not in ALGORITHMS)


def algorithm_name(value: str) -> str:
    """`value` lower-cased when it names an algorithm (for --algorithm); ValueError listing the names otherwise."""
    name = value.lower()
    if name not in ALGORITHMS and name not in algorithm_names():
        raise ValueError(f"{value!r} is not an algorithm; choose from {', '.join(algorithm_names())}")
    return name
APP_MODES = {"production": "Production", "development": "Development", "testing": "Testing"}
SEEN_POLICIES = ("exclude", "demote")
TRAIN_EXECUTORS = ("local", "dask")


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable and what is allowed."""


@dataclass(frozen=True)
class BindAddress:
    """One address the server listens on."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    """Every setting of the service. Build it with `Settings.from_env()`; tests use `replace()`."""

    totara_url: str = ""
    totara_key: str = ""
    models_dir: Path = Path("data/models")
    logs_dir: Path = Path("data/logs")
    retrain_freq_minutes: float = 1440.0
    num_threads: int = 4
    algorithm: str = "auto"
    dev: bool = False
    bind: tuple[BindAddress, ...] = (BindAddress("0.0.0.0", 5000),)
    app_mode: str = "Production"
    workers: int = 1
    # A new worker loads every tenant's models before it answers: uvicorn's 5 s wait made a rolling restart (SIGHUP)
    # give up and keep the old workers on a busy machine or with large stores.
    worker_start_timeout_s: int = 120
    keep_versions: int = 5
    # Downloads (spec §4.1): wait and retry count on 202, timeouts of each request.
    download_retry_wait_s: float = 60.0
    download_retries: int = 3
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    # Serving: how a user's positive items are treated (D3): removed, or demoted as the reference does.
    seen_policy: str = "exclude"
    max_n_items: int = 1000
    # Serving: a model load failing with a transient OS error (EMFILE, ENOMEM, EIO) is retried after this many
    # seconds, doubling up to the maximum (lasting corruption is never retried for the same version).
    load_retry_wait_s: float = 1.0
    load_retry_max_wait_s: float = 60.0
    # Training: wall-clock budget of the `auto` search per tenant, the random seed, identity features.
    auto_time_budget_s: float = 600.0
    seed: int = 42
    validation_protocol: str = "latest"  # tuning/auto hold out each user's newest positives (or "random")
    identity_features: bool = True  # measured better (benchmarks/results/quality.json, "+id" rows)
    # Anytime publishing (training/anytime.py): every tenant gets a quick `popular` model before any full search.
    anytime_publish: bool = True
    # `auto` reuse and limits (training/reuse.py, budget.py, costs.py): full search every N runs (7 = weekly at the
    # daily default) or when the data changed by more than this fraction; the estimated peak memory of a candidate.
    auto_research_every: int = 7
    auto_reuse_change: float = 0.1
    train_memory_mb: int = 1536  # seq_edlae on MovieLens-1M needs ~1.35 GB; dense models of a 10k-item tenant 2-5 GB
    # Store: a run lock without a heartbeat for this long is taken over; tenants gone from tenants.csv this many
    # full runs in a row are deleted (0 = never).
    run_lock_stale_minutes: float = 30.0
    tenant_retention_runs: int = 3
    min_users: int = 10
    min_items: int = 10
    # Input bounds (data/limits.py): record size, list entries, tag columns, export file size, download deadline.
    max_record_mb: int = InputLimits.max_record_bytes // MB
    max_list_entries: int = InputLimits.max_list_entries
    max_tag_columns: int = InputLimits.max_tag_columns
    max_export_mb: int = InputLimits.max_export_bytes // MB
    download_deadline_s: float = InputLimits.download_deadline_s
    # TLS towards Totara (downloads and the health-check probe): off by default, as the reference.
    totara_verify_tls: bool = False
    totara_ca_bundle: Path | None = None
    # Deadline of one scheduled training child in minutes (0 = none); see README for how the default was chosen.
    train_timeout_minutes: float = 180.0
    # Observability (api/admin, metrics.py): /metrics on/off and its bearer token; the dashboard's accounts.
    metrics_enabled: bool = True
    metrics_token: str = ""
    admin_users_file: Path | None = None
    admin_password: str = ""
    admin_session_s: float = 28800.0
    admin_login_attempts: int = 5  # failed logins per client address per minute before refusing
    recent_per_learner: int = 10  # interactions (item, date) kept per learner in a model for the dashboard's try it
    # The model store (store/backend.py, store/s3.py): "" = the `recommender` folder in models_dir, another folder,
    # or s3://bucket/prefix; the S3 endpoint (MinIO...), the timeout of one store request, the replicas' poll period.
    store_url: str = ""
    s3_endpoint_url: str | None = None
    store_timeout_s: float = 10.0
    store_poll_s: float = 1.0
    # Distributed training (training/executor*.py): where tenants train, the Dask scheduler, what a task declares.
    train_executor: str = "local"
    dask_scheduler: str = ""
    dask_timeout_s: float = 60.0  # to connect to the scheduler, and for a first worker to join
    dask_small_tenant_mb: float = 1.0  # a tenant with less export than this trains with 1 thread
    dask_task_memory_factor: float = 20.0  # MB a task declares per MB of its tenant's export (plus 256 MB)
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, require_totara: bool = True) -> "Settings":
        """Read and validate every ML_* variable; raise ConfigError naming the first bad one."""
        env = dict(os.environ if environ is None else environ)
        get = lambda name: (env.get(name) or "").strip()  # noqa: E731
        url = get("ML_TOTARA_URL")
        key = env.get("ML_TOTARA_KEY") or ""
        if require_totara:
            if not url:
                raise ConfigError("ML_TOTARA_URL is not set: give the base URL of your Totara site, e.g. https://learn.example.com")
            if not key:
                raise ConfigError("ML_TOTARA_KEY is not set: give the same secret as Totara's $CFG->ml_service_key")
        if url and not re.match(r"(?i)^https?://", url):
            raise ConfigError(f"ML_TOTARA_URL={url!r} is invalid: it must start with http:// or https://")
        models_dir = Path(get("ML_MODELS_DIR") or "data/models")
        logs_dir = Path(get("ML_LOGS_DIR") or "data/logs")
        if models_dir.resolve() == logs_dir.resolve():
            raise ConfigError(f"ML_MODELS_DIR and ML_LOGS_DIR are both {str(models_dir)!r}: they must be different folders")
        algorithm = (get("ML_RECOMMENDATION_ALGORITHM") or "auto").lower()
        if algorithm not in ALGORITHMS and algorithm not in algorithm_names():
            raise ConfigError(
                f"ML_RECOMMENDATION_ALGORITHM={algorithm!r} is invalid: allowed values are {', '.join(algorithm_names())}"
            )
        flask_env = (get("FLASK_ENV") or "production").lower()
        if flask_env not in APP_MODES:
            raise ConfigError(f"FLASK_ENV={flask_env!r} is invalid: allowed values are production, development, testing")
        dev = _parse_bool(env, "ML_DEV", False)
        app_mode = "Development" if dev else APP_MODES[flask_env]
        validation = (get("ML_VALIDATION_PROTOCOL") or "latest").lower()
        if validation not in ("latest", "random"):
            raise ConfigError(f"ML_VALIDATION_PROTOCOL={validation!r} is invalid: allowed values are latest, random")
        seen_policy = (get("ML_SEEN_POLICY") or "exclude").lower()
        if seen_policy not in SEEN_POLICIES:
            raise ConfigError(f"ML_SEEN_POLICY={seen_policy!r} is invalid: allowed values are exclude, demote")
        store_url = _parse_store_url(get("ML_STORE_URL"))
        verify_tls = _parse_bool(env, "ML_TOTARA_VERIFY_TLS", False)
        ca_bundle = _parse_ca_bundle(get("ML_TOTARA_CA_BUNDLE"), verify_tls)
        executor, scheduler = _parse_executor(env)
        return cls(
            train_executor=executor,
            dask_scheduler=scheduler,
            dask_timeout_s=_parse_number(env, "ML_DASK_TIMEOUT", 60.0, minimum=1.0, maximum=86400.0, kind=float),
            dask_small_tenant_mb=_parse_number(env, "ML_DASK_SMALL_TENANT_MB", 1.0, minimum=0.0, kind=float),
            dask_task_memory_factor=_parse_number(env, "ML_DASK_TASK_MEMORY_FACTOR", 20.0, minimum=0.0, maximum=10000.0, kind=float),
            totara_url=url,
            totara_key=key,
            models_dir=models_dir,
            logs_dir=logs_dir,
            retrain_freq_minutes=_parse_number(env, "ML_RECOMMENDATION_RETRAIN_FREQ", 1440.0, minimum=0.01, kind=float),
            num_threads=_parse_number(env, "ML_NUM_THREADS", 4, minimum=1, maximum=256, kind=int),
            algorithm=algorithm,
            dev=dev,
            bind=parse_bind(get("ML_BIND") or ("127.0.0.1:5000" if os.name == "nt" else "*:5000")),
            app_mode=app_mode,
            workers=_parse_number(env, "ML_WORKERS", 1, minimum=1, maximum=64, kind=int),
            worker_start_timeout_s=_parse_number(env, "ML_WORKER_START_TIMEOUT", 120, minimum=1, maximum=3600, kind=int),
            keep_versions=_parse_number(env, "ML_KEEP_VERSIONS", 5, minimum=1, maximum=1000, kind=int),
            download_retry_wait_s=_parse_number(env, "ML_DOWNLOAD_RETRY_WAIT", 60.0, minimum=0.0, kind=float),
            download_retries=_parse_number(env, "ML_DOWNLOAD_RETRIES", 3, minimum=0, maximum=100, kind=int),
            connect_timeout_s=_parse_number(env, "ML_CONNECT_TIMEOUT", 10.0, minimum=0.1, kind=float),
            read_timeout_s=_parse_number(env, "ML_READ_TIMEOUT", 30.0, minimum=0.1, kind=float),
            seen_policy=seen_policy,
            load_retry_wait_s=_parse_number(env, "ML_LOAD_RETRY_WAIT", 1.0, minimum=0.01, maximum=3600.0, kind=float),
            load_retry_max_wait_s=_parse_number(env, "ML_LOAD_RETRY_MAX_WAIT", 60.0, minimum=0.01, maximum=86400.0, kind=float),
            auto_time_budget_s=_parse_number(env, "ML_AUTO_TIME_BUDGET", 600.0, minimum=1.0, kind=float),
            seed=_parse_number(env, "ML_SEED", 42, minimum=0, kind=int),
            identity_features=_parse_bool(env, "ML_IDENTITY_FEATURES", True),
            anytime_publish=_parse_bool(env, "ML_ANYTIME_PUBLISH", True),
            auto_research_every=_parse_number(env, "ML_AUTO_RESEARCH_EVERY", 7, minimum=1, maximum=10**6, kind=int),
            auto_reuse_change=_parse_number(env, "ML_AUTO_REUSE_CHANGE", 0.1, minimum=0.0, maximum=100.0, kind=float),
            train_memory_mb=_parse_number(env, "ML_TRAIN_MEMORY_MB", 1536, minimum=64, maximum=10**7, kind=int),
            validation_protocol=validation,
            run_lock_stale_minutes=_parse_number(env, "ML_RUN_LOCK_STALE", 30.0, minimum=0.05, maximum=10080.0, kind=float),
            tenant_retention_runs=_parse_number(env, "ML_TENANT_RETENTION_RUNS", 3, minimum=0, maximum=10000, kind=int),
            max_record_mb=_parse_number(env, "ML_MAX_RECORD_MB", cls.max_record_mb, minimum=1, maximum=1024, kind=int),
            max_list_entries=_parse_number(env, "ML_MAX_LIST_ENTRIES", cls.max_list_entries, minimum=1, maximum=10**6, kind=int),
            max_tag_columns=_parse_number(env, "ML_MAX_TAG_COLUMNS", cls.max_tag_columns, minimum=0, maximum=10**6, kind=int),
            max_export_mb=_parse_number(env, "ML_MAX_EXPORT_MB", cls.max_export_mb, minimum=1, maximum=10**7, kind=int),
            download_deadline_s=_parse_number(env, "ML_DOWNLOAD_DEADLINE", cls.download_deadline_s, minimum=1.0, kind=float),
            totara_verify_tls=verify_tls,
            totara_ca_bundle=ca_bundle,
            train_timeout_minutes=_parse_number(env, "ML_TRAIN_TIMEOUT", 180.0, minimum=0.0, kind=float),
            metrics_enabled=_parse_bool(env, "ML_METRICS", True),
            metrics_token=(env.get("ML_METRICS_TOKEN") or "").strip(),
            admin_users_file=Path(get("ML_ADMIN_USERS")) if get("ML_ADMIN_USERS") else None,
            admin_password=env.get("ML_ADMIN_PASSWORD") or "",
            admin_session_s=_parse_number(env, "ML_ADMIN_SESSION_SECONDS", 28800.0, minimum=60.0, kind=float),
            admin_login_attempts=_parse_number(env, "ML_ADMIN_LOGIN_ATTEMPTS", 5, minimum=1, maximum=1000, kind=int),
            recent_per_learner=_parse_number(env, "ML_RECENT_PER_LEARNER", 10, minimum=0, maximum=1000, kind=int),
            store_url=store_url,
            s3_endpoint_url=_s3_endpoint(env),
            store_timeout_s=_parse_number(env, "ML_STORE_TIMEOUT", 10.0, minimum=0.1, maximum=600.0, kind=float),
            store_poll_s=_parse_number(env, "ML_STORE_POLL", 1.0, minimum=0.05, maximum=3600.0, kind=float),
        )

    def with_(self, **changes: object) -> "Settings":
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def recommender_dir(self) -> Path:
        """Where the model store keeps tenants' model versions."""
        return self.models_dir / "recommender"

    @property
    def store_cache_dir(self) -> Path:
        """Where a replica keeps the versions it serves from an S3 store (memory-mapped from there)."""
        return self.models_dir / "store-cache"

    @property
    def staging_dir(self) -> Path:
        """Where downloads are staged during a run (TotaraHttpSource's staging root)."""
        return self.models_dir / "staging"

    @property
    def train_summary_log(self) -> Path:
        return self.logs_dir / "train_summary.log"

    @property
    def training_jsonl(self) -> Path:
        return self.logs_dir / "training.jsonl"

    def ensure_dirs(self) -> None:
        """Create the models and logs folders, with a clear error when that is impossible."""
        for name, path in (("ML_MODELS_DIR", self.models_dir), ("ML_LOGS_DIR", self.logs_dir)):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"{name}={str(path)!r} cannot be created: {exc.strerror or exc}") from exc
            if not os.access(path, os.W_OK):
                raise ConfigError(f"{name}={str(path)!r} is not writable by this user")


def parse_bind(value: str) -> tuple[BindAddress, ...]:
    """Parse ML_BIND: one or more space-separated `host:port`, `*:port` or `[ipv6]:port` addresses."""
    addresses: list[BindAddress] = []
    for token in value.split():
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^\s:\[\]]+):(\d+)", token)
        if not match:
            raise ConfigError(
                f"ML_BIND={value!r} is invalid: {token!r} is not HOST:PORT "
                "(allowed forms: *:5000, 0.0.0.0:5000, 127.0.0.1:5000, [::1]:5000, several separated by spaces)"
            )
        host = match.group(1) or match.group(3)
        port = int(match.group(2) or match.group(4))
        if not 1 <= port <= 65535:
            raise ConfigError(f"ML_BIND={value!r} is invalid: port {port} is outside 1-65535")
        addresses.append(BindAddress("0.0.0.0" if host == "*" else host, port))
    if not addresses:
        raise ConfigError("ML_BIND is empty: give at least one HOST:PORT, e.g. *:5000")
    return tuple(addresses)


def _parse_store_url(raw: str) -> str:
    """ML_STORE_URL: empty (the default folder), a folder path, or s3://bucket[/prefix]."""
    if not raw:
        return ""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", raw)
    if match is None or len(match.group(1)) == 1:  # no scheme, or a Windows drive letter: a folder
        return raw
    if match.group(1).lower() == "file":
        return raw[len("file://"):]
    if match.group(1).lower() != "s3" or not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?", raw, re.I):
        raise ConfigError(
            f"ML_STORE_URL={raw!r} is invalid: expected a folder path or s3://bucket/prefix "
            "(S3 or any S3-compatible store such as MinIO; set ML_S3_ENDPOINT_URL for the latter)"
        )
    return raw.rstrip("/")


def _s3_endpoint(env: Mapping[str, str]) -> str | None:
    """ML_S3_ENDPOINT_URL, else the AWS SDK's own AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL; None = AWS itself."""
    for name in ("ML_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        value = (env.get(name) or "").strip()
        if value:
            if not re.match(r"(?i)^https?://", value):
                raise ConfigError(f"{name}={value!r} is invalid: it must start with http:// or https://")
            return value
    return None


def _parse_ca_bundle(raw: str, verify_tls: bool) -> Path | None:
    """ML_TOTARA_CA_BUNDLE: a readable PEM file of CA certificates, only meaningful with ML_TOTARA_VERIFY_TLS=1."""
    if not raw:
        return None
    if not verify_tls:
        raise ConfigError(
            f"ML_TOTARA_CA_BUNDLE={raw!r} is set but ML_TOTARA_VERIFY_TLS is off, so it would be ignored: "
            "set ML_TOTARA_VERIFY_TLS=1 to verify Totara's certificate against it, or unset ML_TOTARA_CA_BUNDLE"
        )
    path = Path(raw)
    if not path.is_file():
        raise ConfigError(f"ML_TOTARA_CA_BUNDLE={raw!r} is invalid: no such file (expected a PEM file of CA certificates)")
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"ML_TOTARA_CA_BUNDLE={raw!r} is invalid: it cannot be read as PEM CA certificates ({exc})"
        ) from None
    return path


def _parse_executor(env: Mapping[str, str]) -> tuple[str, str]:
    """ML_TRAIN_EXECUTOR and ML_DASK_SCHEDULER (required with `dask`, a tcp:// or tls:// address)."""
    executor = (env.get("ML_TRAIN_EXECUTOR") or "local").strip().lower()
    if executor not in TRAIN_EXECUTORS:
        raise ConfigError(f"ML_TRAIN_EXECUTOR={executor!r} is invalid: allowed values are {', '.join(TRAIN_EXECUTORS)}")
    scheduler = (env.get("ML_DASK_SCHEDULER") or "").strip()
    if executor == "dask" and not scheduler:
        raise ConfigError("ML_TRAIN_EXECUTOR=dask needs ML_DASK_SCHEDULER, the Dask scheduler's address, e.g. tcp://scheduler:8786")
    if scheduler and not re.match(r"(?i)^(tcp|tls|inproc|ucx|ws|wss)://\S+$", scheduler):
        raise ConfigError(f"ML_DASK_SCHEDULER={scheduler!r} is invalid: expected an address like tcp://scheduler:8786")
    if executor == "dask" and importlib.util.find_spec("distributed") is None:
        raise ConfigError("ML_TRAIN_EXECUTOR=dask needs the cluster extra, which is not installed: pip install 'ml-service[cluster]'")
    return executor, scheduler


def _parse_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is invalid: use 1 or 0 (true/false, yes/no, on/off)")


def _parse_number(env: Mapping[str, str], name: str, default, *, minimum=None, maximum=None, kind=int):  # type: ignore[no-untyped-def]
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name}={raw!r} is invalid: expected {what}") from None
    if value != value or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"{name}={raw!r} is invalid: expected a value {bounds}")
    return value
