"""Operator accounts for the operator page: a users file of scrypt password hashes, and the
checks a login goes through.

The users file (``[ui] users``, JSON, written by ``inspector ui --config FILE --add-user NAME``)::

    {"format": "inspector-users/1",
     "users": {"alice": {"role": "operator", "hash": "scrypt$16384$8$1$<salt hex>$<key hex>"}}}

Passwords are never stored: ``hashlib.scrypt`` (n=2**14, r=8, p=1, 16-byte random salt, 32-byte key;
about 50 ms and 16 MiB per check) and compared in constant time. The file is written atomically
with mode 0600. Roles: ``operator`` (may acknowledge a line stop and mark false rejects); anyone
without a login sees the page read-only. Failed logins are counted per user name: after
``MAX_FAILURES`` in a row the name is refused for ``LOCKOUT_S`` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from pathlib import Path

FORMAT = "inspector-users/1"
ROLES = ("operator",)
SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES = 2**14, 8, 1, 32
MIN_PASSWORD = 8
MAX_FAILURES = 5
LOCKOUT_S = 60.0
NAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


class UsersError(ValueError):
    """A users file or an account that cannot be used."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=KEY_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${key.hex()}"


def check_password(password: str, stored: str) -> bool:
    """True when ``password`` matches the ``hash_password`` string ``stored`` (constant-time compare);
    False for a malformed ``stored``."""
    try:
        kind, n, r, p, salt, key = stored.split("$")
        if kind != "scrypt":
            return False
        expected = bytes.fromhex(key)
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def load_users(path: str | Path) -> dict[str, dict[str, str]]:
    """The accounts in ``path`` ({} when the file does not exist). Raises UsersError for a file
    that is not a users file."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsersError(f"{path}: unreadable users file: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("users"), dict):
        raise UsersError(f"{path}: not an inspector users file ({FORMAT})")
    for name, account in data["users"].items():
        if not NAME_RE.fullmatch(name) or not isinstance(account, dict) or account.get("role") not in ROLES \
                or not isinstance(account.get("hash"), str):
            raise UsersError(f"{path}: bad account {name!r}")
    return data["users"]


def add_user(path: str | Path, name: str, password: str, role: str = "operator") -> None:
    """Create or replace account ``name`` in the users file ``path`` (atomic write, mode 0600)."""
    if not NAME_RE.fullmatch(name):
        raise UsersError(f"user name {name!r}: 1..64 of A-Z a-z 0-9 _ . @ -")
    if role not in ROLES:
        raise UsersError(f"role {role!r}: one of {ROLES}")
    if len(password) < MIN_PASSWORD:
        raise UsersError(f"password: at least {MIN_PASSWORD} characters")
    path = Path(path)
    users = load_users(path)
    users[name] = {"role": role, "hash": hash_password(password)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"format": FORMAT, "users": users}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Authenticator:
    """Checks logins against the users file (re-read when it changes), with the lockout."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._mtime: float | None = None
        self._users: dict[str, dict[str, str]] = {}
        self.failures: dict[str, tuple[int, float]] = {}
        self._dummy = hash_password(secrets.token_hex(16))

    def users(self) -> dict[str, dict[str, str]]:
        if self.path is None:
            return {}
        mtime = self.path.stat().st_mtime if self.path.exists() else None
        if mtime != self._mtime:
            self._users, self._mtime = load_users(self.path), mtime
        return self._users

    def login(self, name: str, password: str) -> str | None:
        """The role of ``name`` when ``password`` is right; None otherwise (also while locked out)."""
        count, since = self.failures.get(name, (0, 0.0))
        if count >= MAX_FAILURES and time.monotonic() - since < LOCKOUT_S:
            return None
        account = self.users().get(name)
        matches = check_password(password, account["hash"] if account else self._dummy)  # same cost either way
        if account is not None and matches:
            self.failures.pop(name, None)
            return account["role"]
        self.failures[name] = (count + 1 if count < MAX_FAILURES else 1, time.monotonic())
        return None
