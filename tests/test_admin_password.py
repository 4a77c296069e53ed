"""admin_password.py, the admin dashboard's password: generated once, its bcrypt hash checked only when the password file changed."""

import os

import bcrypt
import pytest

import admin_password


@pytest.fixture
def secrets_dir(tmp_path):
    return tmp_path / "secrets"


def test_generated_once_with_a_matching_hash(secrets_dir):
    password, hashed = admin_password.admin_credentials(secrets_dir)
    assert bcrypt.checkpw(password.encode(), hashed.encode())
    assert admin_password.admin_credentials(secrets_dir) == (password, hashed)
    assert oct((secrets_dir / admin_password.HASH_FILE).stat().st_mode & 0o777) == "0o600"


def test_unchanged_password_is_not_checked_again(secrets_dir, monkeypatch):
    first = admin_password.admin_credentials(secrets_dir)
    monkeypatch.setattr(bcrypt, "checkpw", lambda *_: pytest.fail("bcrypt ran for an unchanged password"))
    assert admin_password.admin_credentials(secrets_dir) == first


def test_password_edited_by_hand_gets_a_new_hash(secrets_dir):
    admin_password.admin_credentials(secrets_dir)
    password_file = secrets_dir / admin_password.PASSWORD_FILE
    password_file.write_text("edited-by-hand\n")
    hash_file = secrets_dir / admin_password.HASH_FILE
    os.utime(hash_file, ns=(0, password_file.stat().st_mtime_ns))  # same timestamp: a coarse clock
    password, hashed = admin_password.admin_credentials(secrets_dir)
    assert password == "edited-by-hand" and bcrypt.checkpw(b"edited-by-hand", hashed.encode())


def test_rotate_makes_a_new_password_and_hash(secrets_dir):
    old_password, old_hash = admin_password.admin_credentials(secrets_dir)
    password, hashed = admin_password.admin_credentials(secrets_dir, rotate=True)
    assert password != old_password and hashed != old_hash
    assert bcrypt.checkpw(password.encode(), hashed.encode())


def test_cli_shows_the_kept_password_and_rotates_it(secrets_dir, monkeypatch, capsys):
    env_file = secrets_dir.parent / "test.env"
    env_file.write_text(f"DOMAIN=mindroom.test\nSECRETS_DIR={secrets_dir}\n")
    monkeypatch.setenv("ENV_FILE", str(env_file))
    assert admin_password.main(["show"]) == 0
    shown = capsys.readouterr().out.strip()
    assert shown == admin_password.admin_credentials(secrets_dir)[0]
    assert admin_password.main(["rotate"]) == 0
    rotated = capsys.readouterr().out.strip()
    assert rotated != shown and rotated == (secrets_dir / admin_password.PASSWORD_FILE).read_text().strip()
    assert admin_password.main(["admin-password"]) == 2
    assert capsys.readouterr().err == "usage: python admin_password.py show | rotate\n"
