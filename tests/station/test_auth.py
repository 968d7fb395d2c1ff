"""Operator accounts (station/auth.py): scrypt hashes, the users file, the lockout."""

from __future__ import annotations

import json
import stat

import pytest

from inspector.station import auth
from inspector.station.auth import Authenticator, UsersError, add_user, check_password, hash_password, load_users


def test_hashes_are_salted_and_checked():
    first, second = hash_password("s3cret pass"), hash_password("s3cret pass")
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert check_password("s3cret pass", first) and not check_password("s3cret pasS", first)
    assert not check_password("anything", "not a hash") and not check_password("x", "md5$1$2$3$aa$bb")


def test_the_users_file_holds_no_password_and_is_private(tmp_path):
    path = tmp_path / "users.json"
    add_user(path, "alice", "correct horse")
    add_user(path, "bob", "battery staple")
    text = path.read_text()
    assert "correct horse" not in text and "battery staple" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert set(load_users(path)) == {"alice", "bob"}
    with pytest.raises(UsersError):
        add_user(path, "carol", "short")
    with pytest.raises(UsersError):
        add_user(path, "../etc", "long enough password")
    path.write_text(json.dumps({"format": "other", "users": {}}))
    with pytest.raises(UsersError):
        load_users(path)


def test_login_roles_and_lockout(tmp_path, monkeypatch):
    path = tmp_path / "users.json"
    add_user(path, "alice", "correct horse")
    authenticator = Authenticator(path)
    assert authenticator.login("alice", "correct horse") == "operator"
    assert authenticator.login("mallory", "correct horse") is None
    for _ in range(auth.MAX_FAILURES):
        assert authenticator.login("alice", "wrong") is None
    assert authenticator.login("alice", "correct horse") is None          # locked out
    monkeypatch.setattr(auth, "LOCKOUT_S", 0.0)
    assert authenticator.login("alice", "correct horse") == "operator"    # after the lockout
    assert Authenticator(None).login("alice", "correct horse") is None    # no users file: nobody
