"""Whether a server answers SSH. An SSH server sends its identification string (`SSH-2.0-...`, at most 255
characters) as soon as a client connects, possibly after other lines of text (RFC 4253, section 4.2), so a
connect and a few reads tell, without logging in."""

from __future__ import annotations

import socket

from settings import SSH_PORT

PROBE_TIMEOUT_SECONDS = 5.0
MAX_LINES_BEFORE_IDENTIFICATION = 20
MAX_IDENTIFICATION_BYTES = 255


def answers_ssh(address: str, port: int = SSH_PORT, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout) as connection:
            lines = connection.makefile("rb")
            for _ in range(MAX_LINES_BEFORE_IDENTIFICATION):
                line = lines.readline(MAX_IDENTIFICATION_BYTES)
                if line.startswith(b"SSH-"):
                    return True
                if not line:
                    return False
    except OSError:  # refused, unreachable, timed out, reset
        return False
    return False
