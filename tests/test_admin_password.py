"""tasks/nginx.py's admin password: generated once, its bcrypt hash checked only when the password file changed."""

import os

import bcrypt
import pytest

from tasks import nginx


@pytest.fixture
def secrets_dir(tmp_path):
    return tmp_path / "secrets"


def test_generated_once_with_a_matching_hash(secrets_dir):
    password, hashed = nginx.admin_credentials(secrets_dir)
    assert bcrypt.checkpw(password.encode(), hashed.encode())
    assert nginx.admin_credentials(secrets_dir) == (password, hashed)
    assert oct((secrets_dir / nginx.HASH_FILE).stat().st_mode & 0o777) == "0o600"


def test_unchanged_password_is_not_checked_again(secrets_dir, monkeypatch):
    first = nginx.admin_credentials(secrets_dir)
    monkeypatch.setattr(bcrypt, "checkpw", lambda *_: pytest.fail("bcrypt ran for an unchanged password"))
    assert nginx.admin_credentials(secrets_dir) == first


def test_password_edited_by_hand_gets_a_new_hash(secrets_dir):
    nginx.admin_credentials(secrets_dir)
    password_file = secrets_dir / nginx.PASSWORD_FILE
    password_file.write_text("edited-by-hand\n")
    hash_file = secrets_dir / nginx.HASH_FILE
    os.utime(hash_file, ns=(0, password_file.stat().st_mtime_ns))  # same timestamp: a coarse clock
    password, hashed = nginx.admin_credentials(secrets_dir)
    assert password == "edited-by-hand" and bcrypt.checkpw(b"edited-by-hand", hashed.encode())


def test_rotate_makes_a_new_password_and_hash(secrets_dir):
    old_password, old_hash = nginx.admin_credentials(secrets_dir)
    password, hashed = nginx.admin_credentials(secrets_dir, rotate=True)
    assert password != old_password and hashed != old_hash
    assert bcrypt.checkpw(password.encode(), hashed.encode())
