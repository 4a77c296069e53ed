"""Secrets kept on the operator's machine, in SECRETS_DIR: the admin password (admin_password.py) and the Stripe
webhook's signing secret (cloud/stripe_webhook.py)."""

from __future__ import annotations

import os
from pathlib import Path

from settings import SettingsError, check_private_directory


def private_directory(directory: Path) -> None:
    """SECRETS_DIR made 0700 when missing; an existing one is only checked (never chmod-ed)."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise SettingsError(f"SECRETS_DIR={str(directory)!r} cannot be created ({error.strerror})") from None
    check_private_directory("SECRETS_DIR", directory)


def write_private(path: Path, text: str) -> None:
    """Replace path atomically with text (mode 0600 from its first byte on) in a private SECRETS_DIR."""
    private_directory(path.parent)
    write_atomically(path, text)


def write_atomically(path: Path, text: str) -> None:
    """Replace path with text in one rename; the file is created 0600 and never exists with a wider mode."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
