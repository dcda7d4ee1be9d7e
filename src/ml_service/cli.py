"""The `ml-service` command: serve | train | worker | batch | demo | healthcheck | models | call | simulate-totara | generate-sample."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence, TextIO

from ml_service.config import ALGORITHMS, ConfigError, Settings, algorithm_name
from ml_service.run_summary import format_summary

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # Commands that parse their own arguments (legacy-compatible or pass-through).
    if args and args[0] == "batch":
        from ml_service.batch import batch_main

        return batch_main(args[1:])
    if args and args[0] == "generate-sample":
        from ml_service.demo.generate import main as generate_main

        return int(generate_main(args[1:]) or 0)
    parser = _parser()
    ns = parser.parse_args(args)
    if not getattr(ns, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(ns.handler(ns))
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-service", description="Recommendation service for Totara.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("serve", help="run the HTTP service in the foreground from the ML_* environment")
    p.add_argument("--no-scheduler", action="store_true", help="serve only; another process trains")
    p.set_defaults(handler=_cmd_serve)

    p = sub.add_parser("train", help="fetch the export and train every tenant once")
    p.add_argument("--source", help="Totara URL (http/https) or an export folder; default ML_TOTARA_URL")
    p.add_argument("--tenant", action="append", help="train only this tenant (repeatable)")
    p.add_argument("--algorithm", type=algorithm_name, metavar="{" + ",".join(ALGORITHMS) + ",...}",
                   help="override ML_RECOMMENDATION_ALGORITHM (any algorithm in models/registry.py)")
    p.add_argument("--force", action="store_true", help="use a folder even without its export_completed flag")
    p.add_argument("--wait", action="store_true", help="when another run holds the run lock, wait for it instead of exiting")
    p.add_argument("--scheduled", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("worker", help="start a Dask worker for ML_TRAIN_EXECUTOR=dask (needs the cluster extra)")
    p.add_argument("scheduler", nargs="?", help="scheduler address (default ML_DASK_SCHEDULER)")
    p.add_argument("--nthreads", type=int, help="threads, offered as the `threads` resource (default ML_NUM_THREADS)")
    p.add_argument("--memory-mb", type=int, help="memory limit in MB, offered as `MEMORY` (default 80%% of RAM)")
    p.add_argument("--name", help="worker name (default: Dask's)")
    p.set_defaults(handler=_cmd_worker)

    sub.add_parser("batch", help="legacy Totara 13/14 batch: i2i_<t>.csv / i2u_<t>.csv (see `batch --help`)")
    sub.add_parser("generate-sample", help="write a synthetic Totara export (see `generate-sample --help`)")

    p = sub.add_parser("demo", help="run the service on the bundled sample export, no Totara needed")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1", help="listen address; 0.0.0.0 to be reachable from other hosts")
    p.add_argument("--workdir", type=Path, default=Path("data/demo"))
    p.add_argument("--export-dir", type=Path, help="serve this export folder instead of the bundled sample")
    p.add_argument("--no-serve", action="store_true", help="train, print the example calls and exit")
    p.set_defaults(handler=_cmd_demo)

    p = sub.add_parser("healthcheck", help="the report Totara's healthcheck.php prints, from this side")
    p.add_argument("--url", help="service URL (default ML_SERVICE_URL or the first ML_BIND address)")
    p.set_defaults(handler=_cmd_healthcheck)

    p = sub.add_parser("models", help="list, show, roll back, pin, unpin or prune published models")
    p.add_argument("action", choices=("list", "show", "rollback", "pin", "unpin", "prune"))
    p.add_argument("tenant", nargs="?")
    p.add_argument("version", nargs="?")
    p.set_defaults(handler=_cmd_models)

    p = sub.add_parser("admin-user", help="add or replace a dashboard account in the ML_ADMIN_USERS file")
    p.add_argument("action", choices=("add",))
    p.add_argument("name")
    p.add_argument("--role", choices=("viewer", "operator"), required=True)
    p.add_argument("--file", type=Path, help="accounts file (default ML_ADMIN_USERS)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(handler=_cmd_admin_user)

    p = sub.add_parser("call", help="sign and send a request to the service, e.g. call /user-items totara_user_id=2 ...")
    p.add_argument("path")
    p.add_argument("params", nargs="*", metavar="NAME=VALUE")
    p.add_argument("--url", help="service URL (default ML_SERVICE_URL or the first ML_BIND address)")
    p.set_defaults(handler=_cmd_call)

    p = sub.add_parser("simulate-totara", help="serve an export folder exactly as Totara does")
    p.add_argument("--export-dir", type=Path, required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--no-tenants", action="store_true", help="multitenancy off: tenants.csv answers 204")
    p.set_defaults(handler=_cmd_simulate)
    return parser


def _cmd_serve(ns: argparse.Namespace) -> int:
    from ml_service.server import serve

    settings = Settings.from_env()
    serve(settings, with_scheduler=not ns.no_scheduler)
    return EXIT_OK


def _cmd_train(ns: argparse.Namespace) -> int:
    from ml_service.logs import configure_logging
    from ml_service.store import ModelStore, RunLock, RunLockBusy
    from ml_service.training.executor import make_executor

    source_arg = ns.source or ""
    from_folder = bool(source_arg) and not source_arg.lower().startswith(("http://", "https://"))
    settings = Settings.from_env(require_totara=not from_folder)
    if source_arg and not from_folder:
        settings = settings.with_(totara_url=source_arg)
    if ns.scheduled:
        from ml_service.scheduler import die_with_parent

        die_with_parent()
    settings.ensure_dirs()
    configure_logging(settings.logs_dir, console=not ns.scheduled)
    store = ModelStore.from_settings(settings)
    source = _make_source(settings, Path(source_arg) if from_folder else None, force=ns.force)
    from ml_service.training.progress import ProgressWriter

    live = ProgressWriter(settings.logs_dir)  # what the server's /health-check and dashboard show
    progress = _Progress(sys.stderr, live.state)

    def report(event: str, details: dict[str, Any]) -> None:
        live.reporter(event, details)
        progress(event, details)

    lock = RunLock.for_settings(settings, "train --scheduled" if ns.scheduled else "train")
    try:
        lock.acquire(wait=ns.wait, on_wait=lambda holder: print(f"Waiting for the training run of {holder.describe()}", file=sys.stderr, flush=True))
    except (RunLockBusy, OSError) as exc:  # OSError: the lock file cannot be written (a full disk says so plainly)
        import logging

        why = str(exc) if isinstance(exc, RunLockBusy) else f"cannot take the run lock {lock.path}: {exc}"
        logging.getLogger("ml_service.training").warning("training not started: %s", why)
        live.finish(False, f"not started: {why}")
        print(f"Training not started: {why}" + ("; use --wait to wait for it" if isinstance(exc, RunLockBusy) else ""), file=sys.stderr)
        return EXIT_FAILED
    try:
        try:
            executor = make_executor(settings)  # local, or the Dask cluster of ML_DASK_SCHEDULER
            try:
                result = executor.train(settings, source, store, tenants=ns.tenant, algorithm=ns.algorithm, reporter=report)
            finally:
                executor.close()
        except BaseException as exc:
            live.finish(False, f"{type(exc).__name__}: {exc}")
            raise
        live.finish(result.ok, result.error or ("" if result.ok else "some tenants failed"))
        progress.close()
    finally:
        lock.release()
    if result.error:
        print(f"Training failed: {result.error}", file=sys.stderr)
        return EXIT_FAILED
    print(format_summary(result.tenants))
    trained = {r.tenant for r in result.tenants}
    absent = [t for t in dict.fromkeys(ns.tenant or []) if t not in trained]
    for tenant in absent:
        where = source_arg or settings.totara_url
        print(f"Tenant {tenant!r} is not in the export ({where}): nothing was trained for it", file=sys.stderr)
    return EXIT_OK if result.ok and not absent else EXIT_FAILED


def _cmd_worker(ns: argparse.Namespace) -> int:
    from ml_service.worker import worker_command

    settings = Settings.from_env(require_totara=False)
    argv = worker_command(settings, ns.scheduler, nthreads=ns.nthreads, memory_mb=ns.memory_mb, name=ns.name)
    os.execv(argv[0], argv)  # becomes the Dask worker: signals and exit codes are Dask's own
    return EXIT_FAILED


def _make_source(settings: Settings, folder: Path | None, *, force: bool = False) -> Any:
    if folder is not None:
        from ml_service.data.limits import InputLimits
        from ml_service.source.folder import FolderSource

        return FolderSource(folder, force=force, limits=InputLimits.from_settings(settings))
    from ml_service.source.totara_http import TotaraHttpSource

    return TotaraHttpSource(settings, settings.models_dir / "staging")


class _Progress:
    """Progress of a training run: a bar on a terminal, plain lines otherwise."""

    def __init__(self, out: TextIO, live: dict[str, Any] | None = None) -> None:
        self.out = out
        self.live = live  # ProgressWriter.state: fraction done and ETA
        self.tty = out.isatty()
        self.bar: Any = None

    def __call__(self, event: str, details: dict[str, Any]) -> None:
        if event == "tenant-start":
            message = f"tenant {details['tenant']}: starting"
        elif event == "stage" and details.get("tenant") is None:
            message = "fetch: downloading the export" if details["stage"] == "fetch" else f"{details['stage']}: every tenant"
        elif event == "stage":
            message = f"tenant {details['tenant']}: {details['stage']}"
        elif event == "candidate":
            message = f"tenant {details['tenant']}: auto tries {details['candidate']} ({details['position'] + 1}/{details['total']})"
        elif event == "quick":
            message = f"tenant {details['tenant']}: quick popular model"
        elif event == "quick-done":
            q = details["outcome"]
            message = f"tenant {q.tenant}: quick popular {'published' if q.published else 'not published'} ({q.reason})"
        elif event == "tenant-done":
            r = details["result"]
            message = f"tenant {r.tenant}: {r.state} ({r.algorithm}) {r.msg}"
        else:
            return
        if self.live is not None and event != "tenant-done":
            eta = self.live.get("eta_s")
            message += f"  [{100 * float(self.live.get('fraction') or 0):.0f}%" + (f", about {eta:.0f} s left]" if eta is not None else "]")
        if self.tty:
            from tqdm import tqdm

            if self.bar is None:
                self.bar = tqdm(total=None, file=self.out, unit="step", bar_format="{desc} [{elapsed}]")
            self.bar.set_description_str(message)
            self.bar.update(1)
        else:
            print(message, file=self.out, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _service_url(explicit: str | None) -> str:
    if explicit:
        return explicit.rstrip("/")
    if os.environ.get("ML_SERVICE_URL"):
        return os.environ["ML_SERVICE_URL"].rstrip("/")
    from ml_service.config import parse_bind

    first = parse_bind(os.environ.get("ML_BIND") or "127.0.0.1:5000")[0]
    host = "127.0.0.1" if first.host in ("0.0.0.0", "::") else first.host
    return f"http://{'[' + host + ']' if ':' in host else host}:{first.port}"


def _cmd_call(ns: argparse.Namespace) -> int:
    import httpx

    from ml_service.auth import signed_headers

    key = os.environ.get("ML_TOTARA_KEY", "")
    if not key:
        raise ConfigError("ML_TOTARA_KEY is not set: `call` signs requests with it")
    params: dict[str, str] = {}
    for pair in ns.params:
        name, sep, value = pair.partition("=")
        if not sep:
            print(f"Parameter {pair!r} is not NAME=VALUE", file=sys.stderr)
            return EXIT_USAGE
        params[name] = value
    url = _service_url(ns.url) + "/" + ns.path.lstrip("/")
    headers = {**signed_headers(key), "User-Agent": "TotaraBot/1.0"}
    try:
        response = httpx.get(url, params=params, headers=headers, timeout=10.0)
    except httpx.HTTPError as exc:
        print(f"Cannot reach {url}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"HTTP {response.status_code}", file=sys.stderr)
    try:
        print(json.dumps(response.json(), indent=2, ensure_ascii=False))
    except ValueError:
        print(response.text)
    return EXIT_OK if response.status_code == 200 else EXIT_FAILED


def _cmd_healthcheck(ns: argparse.Namespace) -> int:
    from ml_service.healthcheck import healthcheck_report

    return healthcheck_report(_service_url(ns.url), os.environ.get("ML_TOTARA_KEY", ""), sys.stdout)


def _cmd_models(ns: argparse.Namespace) -> int:
    from ml_service.cli_models import models_command
    from ml_service.store import ModelStore

    settings = Settings.from_env(require_totara=False)
    store = ModelStore.from_settings(settings)
    return models_command(store, ns.action, ns.tenant, ns.version, sys.stdout)


def _cmd_admin_user(ns: argparse.Namespace) -> int:
    import getpass

    from ml_service.api.admin.accounts import AccountsError, add_account

    target = ns.file or (Path(os.environ["ML_ADMIN_USERS"]) if os.environ.get("ML_ADMIN_USERS") else None)
    if target is None:
        raise ConfigError("ML_ADMIN_USERS is not set and no --file was given: name the accounts file")
    if ns.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"Password for {ns.name}: ")
        if getpass.getpass("Again: ") != password:
            print("The passwords differ; nothing was written", file=sys.stderr)
            return EXIT_USAGE
    try:
        add_account(target, ns.name, ns.role, password)
    except AccountsError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{ns.name} ({ns.role}) written to {target}")
    return EXIT_OK


def _cmd_simulate(ns: argparse.Namespace) -> int:
    from ml_service.demo.simulator import serve_forever

    serve_forever(ns.export_dir, ns.key, ns.host, ns.port, not ns.no_tenants)
    return EXIT_OK


def _cmd_demo(ns: argparse.Namespace) -> int:
    from ml_service.demo.run import run_demo

    return run_demo(port=ns.port, workdir=ns.workdir, export_dir=ns.export_dir, serve_after=not ns.no_serve,
                    host=ns.host)


if __name__ == "__main__":
    sys.exit(main())
