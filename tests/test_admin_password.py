"""tasks/nginx.py's admin password: generated once, its bcrypt hash checked only when the password file changed."""

import os
from types import SimpleNamespace

import bcrypt
import pytest

from tasks import nginx


@pytest.fixture
def settings(tmp_path):
    return SimpleNamespace(secrets_dir=tmp_path / "secrets")


def test_generated_once_with_a_matching_hash(settings):
    password, hashed = nginx.admin_credentials(settings)
    assert bcrypt.checkpw(password.encode(), hashed.encode())
    assert nginx.admin_credentials(settings) == (password, hashed)
    assert oct((settings.secrets_dir / nginx.HASH_FILE).stat().st_mode & 0o777) == "0o600"


def test_unchanged_password_is_not_checked_again(settings, monkeypatch):
    first = nginx.admin_credentials(settings)
    monkeypatch.setattr(bcrypt, "checkpw", lambda *_: pytest.fail("bcrypt ran for an unchanged password"))
    assert nginx.admin_credentials(settings) == first


def test_password_edited_by_hand_gets_a_new_hash(settings):
    nginx.admin_credentials(settings)
    password_file = settings.secrets_dir / nginx.PASSWORD_FILE
    password_file.write_text("edited-by-hand\n")
    hash_file = settings.secrets_dir / nginx.HASH_FILE
    os.utime(hash_file, ns=(0, password_file.stat().st_mtime_ns))  # same timestamp: a coarse clock
    password, hashed = nginx.admin_credentials(settings)
    assert password == "edited-by-hand" and bcrypt.checkpw(b"edited-by-hand", hashed.encode())


def test_rotate_makes_a_new_password_and_hash(settings):
    old_password, old_hash = nginx.admin_credentials(settings)
    password, hashed = nginx.admin_credentials(settings, rotate=True)
    assert password != old_password and hashed != old_hash
    assert bcrypt.checkpw(password.encode(), hashed.encode())
