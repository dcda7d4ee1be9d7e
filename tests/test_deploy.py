"""deploy/: the Docker entrypoint run for real (as root on a root-owned folder, then as an unprivileged user),
and the supervisor example stopping the whole process group."""

from __future__ import annotations

import configparser
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "deploy" / "docker-entrypoint.sh"
# Stands in for the installed `ml-service` (the image cannot be built here: no base-image registry): it records
# who runs it, with which arguments and environment.
FAKE_SERVICE = """#!/bin/sh
{ id -u; id -g; echo "$*"; echo "$ML_MODELS_DIR"; echo "$ML_LOGS_DIR"; } > "$ML_LOGS_DIR/ran-as"
"""
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root: run the suite as root")


@pytest.fixture
def box() -> Iterator[Path]:
    """A world-traversable folder (pytest's tmp_path is 0700, which an unprivileged user cannot enter)."""
    folder = Path(tempfile.mkdtemp(prefix="ml-entrypoint-"))
    folder.chmod(0o755)
    (folder / "bin").mkdir(mode=0o755)
    fake = folder / "bin" / "ml-service"
    fake.write_text(FAKE_SERVICE)
    fake.chmod(0o755)
    shutil.copy(ENTRYPOINT, folder / "docker-entrypoint.sh")
    (folder / "docker-entrypoint.sh").chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _env(box: Path, **extra: str) -> dict[str, str]:
    data = box / "data"
    return {"PATH": f"{box / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "ML_USER": "nobody", "ML_DATA_DIR": str(data),
            "ML_MODELS_DIR": str(data / "models"), "ML_LOGS_DIR": str(data / "train_logs"), **extra}


def _ran_as(box: Path) -> list[str]:
    return (box / "data" / "train_logs" / "ran-as").read_text().splitlines()


@needs_root
def test_as_root_it_gives_a_root_owned_mount_to_the_service_user_and_drops_to_it(box: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    data = box / "data"
    data.mkdir(mode=0o755)  # what `docker run -v /srv/ml:/etc/ml/data` leaves when /srv/ml did not exist
    (data / "models").mkdir()
    (data / "models" / "old-file").write_text("from an earlier root run")
    assert data.stat().st_uid == 0
    done = subprocess.run(["/bin/sh", str(box / "docker-entrypoint.sh")], env=_env(box), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    uid, gid, args, models, logs = _ran_as(box)
    assert (int(uid), int(gid)) == (nobody.pw_uid, nobody.pw_gid)  # the service runs unprivileged
    assert args == "serve" and models == str(data / "models") and logs == str(data / "train_logs")
    for path in (data, data / "models", data / "models" / "old-file", data / "train_logs"):
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid), path


@needs_root
def test_demo_listens_on_all_addresses_so_the_published_port_reaches_it(box: Path) -> None:
    done = subprocess.run(["/bin/sh", str(box / "docker-entrypoint.sh"), "demo", "--port", "5001"],
                          env=_env(box), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert _ran_as(box)[2] == f"demo --host 0.0.0.0 --workdir {box / 'data' / 'demo'} --port 5001"


@needs_root
def test_as_the_service_user_it_just_runs_and_says_what_to_do_with_a_folder_it_cannot_write(box: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    drop = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--"]
    data = box / "data"
    data.mkdir(mode=0o755)
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    done = subprocess.run([*drop, "/bin/sh", str(box / "docker-entrypoint.sh"), "--no-scheduler"], env=_env(box),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert _ran_as(box)[:3] == [str(nobody.pw_uid), str(nobody.pw_gid), "serve --no-scheduler"]

    os.chown(data, 0, 0)
    shutil.rmtree(data / "train_logs")
    refused = subprocess.run([*drop, "/bin/sh", str(box / "docker-entrypoint.sh")], env=_env(box),
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert f"{data / 'train_logs'} is not writable by uid {nobody.pw_uid}" in refused.stderr


def test_entrypoint_is_executable_in_the_repository() -> None:
    assert ENTRYPOINT.stat().st_mode & stat.S_IXUSR  # COPY keeps the mode; the Dockerfile chmods it as well


def test_supervisor_stops_and_kills_the_whole_process_group() -> None:
    config = configparser.ConfigParser(inline_comment_prefixes=(";",))
    config.read(ROOT / "deploy" / "supervisor.conf")
    program = config["program:ml_service"]
    assert program.getboolean("stopasgroup") and program.getboolean("killasgroup")
