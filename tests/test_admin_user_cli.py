"""`ml-service admin-user add`: writes an argon2 account the dashboard accepts; bad input is refused and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ml_service.api.admin.accounts import Accounts, read_accounts


def run(*args: str, password: str, env_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_")}
    if env_file is not None:
        env["ML_ADMIN_USERS"] = str(env_file)
    return subprocess.run([sys.executable, "-m", "ml_service.cli", "admin-user", *args, "--password-stdin"], input=password + "\n",
                          env=env, capture_output=True, text=True, timeout=60)


def test_add_writes_an_account_the_dashboard_accepts(tmp_path: Path) -> None:
    users = tmp_path / "users"
    done = run("add", "vera", "--role", "viewer", password="a long passphrase", env_file=users)
    assert done.returncode == 0, done.stderr
    assert run("add", "omar", "--role", "operator", "--file", str(users), password="another passphrase").returncode == 0
    accounts = read_accounts(users)
    assert {a.name: a.role for a in accounts.values()} == {"vera": "viewer", "omar": "operator"}
    assert "a long passphrase" not in users.read_text() and oct(users.stat().st_mode & 0o777) == "0o600"
    login = Accounts(users, "")
    assert login.verify("vera", "a long passphrase").role == "viewer"  # type: ignore[union-attr]
    assert login.verify("vera", "wrong") is None and login.verify("nobody", "a long passphrase") is None


def test_bad_input_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    users = tmp_path / "users"
    short = run("add", "vera", "--role", "viewer", password="short", env_file=users)
    assert short.returncode == 2 and "at least 8 characters" in short.stderr and not users.exists()
    assert run("add", "vera", "--role", "root", password="a long passphrase", env_file=users).returncode == 2
    no_file = run("add", "vera", "--role", "viewer", password="a long passphrase")
    assert no_file.returncode == 2 and "ML_ADMIN_USERS" in no_file.stderr
