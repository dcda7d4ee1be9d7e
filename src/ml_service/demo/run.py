"""`ml-service demo`: the Totara simulator on a sample export, the service against it, one training, example calls."""

from __future__ import annotations

import os
import secrets
import shlex
import sys
from pathlib import Path

from typing import TYPE_CHECKING

from ml_service.config import BindAddress, Settings

if TYPE_CHECKING:
    from ml_service.store import ModelStore

SAMPLE_DIR = Path(__file__).parent / "sample"


def run_demo(*, port: int, workdir: Path, export_dir: Path | None = None, serve_after: bool = True,
             host: str = "127.0.0.1") -> int:
    """Start the simulator, train once through the real HTTP pull, print calls, then serve until Ctrl-C.

    `host` is the listen address (0.0.0.0 in Docker, so the published port reaches it).
    """
    from ml_service.run_summary import format_summary
    from ml_service.demo.simulator import TotaraSimulator
    from ml_service.logs import configure_logging
    from ml_service.server import serve
    from ml_service.source.totara_http import TotaraHttpSource
    from ml_service.store import ModelStore
    from ml_service.training.pipeline import run_training

    export = export_dir or SAMPLE_DIR
    key = secrets.token_hex(16)
    simulator = TotaraSimulator(export, key, port=0)
    simulator.start()
    try:
        env = {
            "ML_TOTARA_URL": simulator.url,
            "ML_TOTARA_KEY": key,
            "ML_MODELS_DIR": str(workdir / "models"),
            "ML_LOGS_DIR": str(workdir / "logs"),
            "ML_BIND": str(BindAddress(host, port)),
            "ML_RECOMMENDATION_ALGORITHM": os.environ.get("ML_RECOMMENDATION_ALGORITHM", "auto"),
            "ML_AUTO_TIME_BUDGET": os.environ.get("ML_AUTO_TIME_BUDGET", "120"),
            "ML_NUM_THREADS": os.environ.get("ML_NUM_THREADS", str(min(4, os.cpu_count() or 1))),
            # The dashboard is on in the demo, with a generated password (or the one given).
            "ML_ADMIN_PASSWORD": os.environ.get("ML_ADMIN_PASSWORD") or secrets.token_urlsafe(12),
        }
        os.environ.update(env)  # the server's worker builds its app from the environment
        settings = Settings.from_env()
        settings.ensure_dirs()
        configure_logging(settings.logs_dir, console=False)
        print(f"Totara simulator serving {export} at {simulator.url}", flush=True)
        print("Training on the sample export (HTTP pull from the simulator)...", flush=True)
        store = ModelStore.from_settings(settings)
        result = run_training(settings, TotaraHttpSource(settings, settings.models_dir / "staging"), store)
        if result.error:
            print(f"Training failed: {result.error}")
            return 1
        print(format_summary(result.tenants), flush=True)
        print(example_calls(settings.bind[0], key, *_example_ids(store)), flush=True)
        print(f"Dashboard: http://{settings.bind[0]}/admin/   user: admin   password: {settings.admin_password}", flush=True)
        if serve_after:
            serve(settings)
        return 0 if result.ok else 1
    finally:
        simulator.stop()


def _example_ids(store: "ModelStore") -> tuple[str, str, str]:
    """A learner with interactions, an item type and an item of tenant 0, so the printed calls answer something."""
    import numpy as np
    import scipy.sparse as sp

    from ml_service.data.tenant import ITEM_TYPES

    model = store.load("0").model
    counts = np.diff(sp.csr_matrix(model.extras.positives).indptr)
    user = model.user_ids[int(np.argmax(counts))]
    types = np.asarray(model.item_types)
    article = np.flatnonzero(types == ITEM_TYPES.index("engage_article"))
    item = int(article[0]) if article.size else 0
    return user, ITEM_TYPES[int(types[item])], model.item_ids[item]


def cli_command() -> str:
    """How to run `ml-service` from another terminal, where the virtualenv is not on the PATH: the absolute path
    of the script installed beside this interpreter, else this interpreter with `-m ml_service`."""
    folder = Path(sys.executable).parent
    for name in ("ml-service", "ml-service.exe"):
        if (folder / name).is_file():
            return shlex.quote(str((folder / name).absolute()))
    return f"{shlex.quote(str(Path(sys.executable).absolute()))} -m ml_service"


def example_calls(bind: BindAddress, key: str, user: str = "2", item_type: str = "engage_article",
                  item: str = "engage_article1") -> str:
    """Copy-paste examples: the `ml-service call` helper and plain curl with a fresh token."""
    wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1"}
    url = f"http://{BindAddress(wildcard.get(bind.host, bind.host), bind.port)}"
    exports = f"export ML_SERVICE_URL={url} ML_TOTARA_KEY={shlex.quote(key)}"
    ml_service = cli_command()
    token = 'T=$(date +%s); K=$(printf "%s%s" "$T" "$ML_TOTARA_KEY" | sha256sum | cut -d" " -f1)'
    return "\n".join([
        "",
        "The service is ready. In another terminal:",
        f"  {exports}",
        f"  {ml_service} call /user-items totara_user_id={user} item_type={item_type} tenant=0 n_items=5",
        f"  {ml_service} call /similar-items totara_item_id={item} tenant=0 n_items=5",
        f"  {ml_service} call /health-check",
        f"  {ml_service} healthcheck",
        "or with curl:",
        f"  {token}",
        f'  curl -H "X-Totara-Time: $T" -H "X-Totara-Ml-Key: $K" "{url}/user-items?totara_user_id={user}&item_type=container_course&tenant=0&n_items=5"',
        f"Home page: {url}/   API docs (signed requests only): {url}/docs",
        "",
    ])
