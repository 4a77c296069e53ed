"""Commands and daemons: run a command loudly, start a daemon detached with a PID file, stop it by that PID.

A PID file holds "<pid> <start time>" so a stop never signals a process that merely reused the number.
Daemons are started through `setsid -f`, so they outlive the command that started them and never
become zombies of a long-running parent.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path


class LabError(Exception):
    """A lab step failed; the message says which and why."""


def run(*argv: str, check: bool = True, input: str | None = None) -> str:
    """Run a command, return its stdout; raise LabError with its stderr when it fails and check is set."""
    result = subprocess.run(argv, input=input, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result.stdout


def _start_time(pid: int) -> str | None:
    """The kernel's start time of pid, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return fields[19]


def read_pid(pidfile: Path) -> int | None:
    """The PID in pidfile if that very process is still running (only files written by write_pidfile count)."""
    try:
        pid_text, _, started = pidfile.read_text().partition(" ")
        pid = int(pid_text)
    except (FileNotFoundError, ValueError):
        return None
    current = _start_time(pid)
    if current is None or current != started.strip():
        return None
    return pid


def write_pidfile(pidfile: Path, pid: int) -> None:
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(f"{pid} {_start_time(pid) or ''}\n")


def spawn(argv: list[str], pidfile: Path, log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start argv detached (own session, parent init), output appended to log; return its PID."""
    existing = read_pid(pidfile)
    if existing:
        return existing
    pidfile.unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    raw = pidfile.with_suffix(".raw")
    raw.unlink(missing_ok=True)
    # The shell records its own PID, then becomes the daemon (exec keeps the PID).
    wrapper = ['setsid', '-f', 'sh', '-c', 'echo $$ > "$0"; exec "$@"', str(raw), *argv]
    with open(log, "ab") as out:
        subprocess.run(wrapper, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, cwd=cwd, check=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = raw.read_text().strip() if raw.exists() else ""
        if text:
            raw.unlink()
            write_pidfile(pidfile, int(text))
            return int(text)
        time.sleep(0.02)
    raise LabError(f"{argv[0]} did not start; see {log}")


def stop(pidfile: Path, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Signal the process in pidfile, wait up to timeout, then SIGKILL it; remove the PID file."""
    pid = read_pid(pidfile)
    if pid:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        if not wait_gone(pid, timeout):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_gone(pid, 5)
    pidfile.unlink(missing_ok=True)


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _start_time(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_for(check, timeout: float, what: str, interval: float = 0.1):
    """Poll check() until it returns something truthy; raise LabError naming what after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@contextmanager
def locked(path: Path):
    """An exclusive lock on path (between threads and processes alike)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
