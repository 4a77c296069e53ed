"""The admin dashboard's basic-auth password (user admin), kept on the operator's machine in SECRETS_DIR.

The platform's nginx task (tasks/nginx.py) makes it on its first run: SECRETS_DIR/admin-password (0600; the
directory is created 0700, an existing one must be private) with its bcrypt hash beside it, so re-runs upload
the same hash; only the hash reaches the host.

    python admin_password.py show     # print the password
    python admin_password.py rotate   # make a new one (the next deploy installs it)
"""

from __future__ import annotations

import re
import secrets
import sys
from pathlib import Path

import bcrypt

from local_secrets import private_directory, write_atomically
from settings import SettingsError, load_settings

PASSWORD_FILE = "admin-password"
HASH_FILE = "admin-password.bcrypt"
BCRYPT_MAX_BYTES = 72  # bcrypt reads no further (bcrypt 5 refuses longer passwords)
_BCRYPT_HASH_RE = re.compile(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}")


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode().strip()
    except UnicodeDecodeError:
        raise SettingsError(f"{path} is not UTF-8 text; delete it to generate a new one") from None


def admin_credentials(secrets_dir: Path, rotate: bool = False) -> tuple[str, str]:
    """(password, bcrypt hash) of the admin dashboard, generated once in SECRETS_DIR. A password bcrypt cannot
    take or a hash file that is not a bcrypt hash stops with one line: neither is ever deployed."""
    password_path, hash_path = secrets_dir / PASSWORD_FILE, secrets_dir / HASH_FILE
    private_directory(secrets_dir)
    if rotate or not password_path.is_file():
        write_atomically(password_path, secrets.token_urlsafe(18) + "\n")
    password = _read(password_path)
    if not password:
        raise SettingsError(f"{password_path} is empty; delete it to generate a new admin password")
    if len(password.encode()) > BCRYPT_MAX_BYTES:
        raise SettingsError(f"the admin password in {password_path} is {len(password.encode())} bytes; bcrypt takes "
                            f"at most {BCRYPT_MAX_BYTES}: shorten it, or delete it to generate one")
    hashed = _read(hash_path) if hash_path.is_file() else ""
    if hashed and not _BCRYPT_HASH_RE.fullmatch(hashed):
        raise SettingsError(f"{hash_path} is not a bcrypt hash; delete it (the next deploy hashes the password "
                            "again)")
    # bcrypt is slow by design (about 0.2 s per check, on every deploy): check only a hash not newer than the
    # password file (made before the password was last written) and mark a hash that still matches (touch).
    if hashed and hash_path.stat().st_mtime_ns > password_path.stat().st_mtime_ns:
        return password, hashed
    if hashed and bcrypt.checkpw(password.encode(), hashed.encode()):
        hash_path.touch()
        return password, hashed
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
    write_atomically(hash_path, hashed + "\n")
    return password, hashed


def main(argv: list[str]) -> int:
    commands = {"show": False, "rotate": True}
    if len(argv) != 1 or argv[0] not in commands:
        print("usage: python admin_password.py show | rotate", file=sys.stderr)
        return 2
    try:
        password, _ = admin_credentials(load_settings().secrets_dir, rotate=commands[argv[0]])
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(password)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
