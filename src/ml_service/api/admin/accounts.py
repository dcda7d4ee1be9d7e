"""Dashboard accounts: `name:role:argon2-hash` lines in ML_ADMIN_USERS, or one operator `admin` from ML_ADMIN_PASSWORD."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ROLES = ("viewer", "operator")
NAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_hasher = PasswordHasher()
# Verifying against this when the name is unknown costs the same time as a real check (no user enumeration).
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class AccountsError(ValueError):
    """The accounts file is unreadable or has a bad line; the message names the file, line and problem."""


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    password_hash: str


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def read_accounts(path: Path) -> dict[str, Account]:
    """Every account of the file; AccountsError naming the file and line of the first bad one."""
    accounts: dict[str, Account] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AccountsError(f"ML_ADMIN_USERS={str(path)!r} cannot be read: {exc.strerror or exc}") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.strip().split(":", 2)
        if len(parts) != 3 or not NAME_RE.fullmatch(parts[0]) or parts[1] not in ROLES or not parts[2].startswith("$argon2"):
            raise AccountsError(
                f"{path}, line {number}: got {line[:40]!r}..., expected NAME:ROLE:HASH with ROLE viewer or operator "
                "and an argon2 hash (write it with `ml-service admin-user add NAME --role ROLE`)"
            )
        accounts[parts[0]] = Account(parts[0], parts[1], parts[2])
    return accounts


def add_account(path: Path, name: str, role: str, password: str) -> None:
    """Add or replace an account in the file (created with mode 0600)."""
    if not NAME_RE.fullmatch(name):
        raise AccountsError(f"user name {name!r} is invalid: expected 1-64 letters, digits, '_', '.', '@' or '-'")
    if role not in ROLES:
        raise AccountsError(f"role {role!r} is invalid: expected viewer or operator")
    if len(password) < 8:
        raise AccountsError("the password is too short: expected at least 8 characters")
    accounts = read_accounts(path) if Path(path).exists() else {}
    accounts[name] = Account(name, role, hash_password(password))
    text = "".join(f"{a.name}:{a.role}:{a.password_hash}\n" for a in accounts.values())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


class Accounts:
    """The accounts the dashboard accepts (the file is re-read when it changes)."""

    def __init__(self, users_file: Path | None, quick_password: str) -> None:
        self.users_file = users_file
        self.quick = Account("admin", "operator", hash_password(quick_password)) if quick_password else None
        self._cache: tuple[float, dict[str, Account]] | None = None
        if users_file is not None:
            read_accounts(users_file)  # a bad file stops the service at start, with the line named

    @property
    def enabled(self) -> bool:
        return self.users_file is not None or self.quick is not None

    def _all(self) -> dict[str, Account]:
        accounts: dict[str, Account] = {}
        if self.users_file is not None:
            try:
                mtime = self.users_file.stat().st_mtime
                if self._cache is None or self._cache[0] != mtime:
                    self._cache = (mtime, read_accounts(self.users_file))
                accounts.update(self._cache[1])
            except (OSError, AccountsError):
                if self._cache is not None:
                    accounts.update(self._cache[1])
        if self.quick is not None:
            accounts.setdefault("admin", self.quick)
        return accounts

    def verify(self, name: str, password: str) -> Account | None:
        """The account when the password matches, else None (same cost either way)."""
        account = self._all().get(name)
        try:
            _hasher.verify(account.password_hash if account else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return account

    def role_of(self, name: str) -> str | None:
        account = self._all().get(name)
        return account.role if account else None
