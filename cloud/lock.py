"""One operator at a time: the environment's lock, kept in Hetzner itself (no state file).

The lock is a placement group named `mindroom-<ENVIRONMENT>-lock`. Placement groups are free, and Hetzner
refuses a second one with the same name (409 uniqueness_error: names are unique per project), so creating it
is atomic: whoever created it holds the lock, deleting it releases it. Every operator's run sees it, from any
machine. Its labels say who holds it: user, host, a hash of the machine id, PID, command and since when (UTC,
ISO 8601 basic format: label values allow no `:`). It carries no `environment` label, so bootstrap's label
selector never lists it among the environment's resources (plan and destroy leave it alone); it is found by
its name.

A lock whose holder is a process of this machine that no longer runs (a crash, a kill -9, an API outage
while releasing) is taken over with a notice; any other held lock makes the run fail at once with one line,
or wait up to `wait_seconds` (polling with reads only, every 5 x HCLOUD_POLL_INTERVAL: no create attempt while
it is held).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import hashlib
import os
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import hcloud
import requests
from hcloud import APIException

from settings import MANAGED_BY, PROJECT, Settings, lock_wait_seconds

from .api import MAX_RETRIES, BootstrapError, ResponseLost, describe

SINCE_FORMAT = "%Y%m%dT%H%M%SZ"
LABEL_VALUE_MAX = 63
POLL_FACTOR = 5  # a waiting run asks every 5 x HCLOUD_POLL_INTERVAL (5 s): Hetzner allows 3600 requests an hour
MACHINE_ID_FILE = Path("/etc/machine-id")
_INVALID_LABEL_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_held: set[int] = set()  # ids of the locks this process holds right now


class LockHeld(BootstrapError):
    """Another run holds the environment's lock."""


def _wait_argument(text: str) -> float:
    try:
        return lock_wait_seconds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_wait_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lock-wait", type=_wait_argument, default=0, metavar="SECONDS",
                        help="wait this long for another run's lock (default: fail at once)")


def lock_name(settings: Settings) -> str:
    return f"{settings.prefix}-lock"


def label_value(text: str) -> str:
    """Text as a Hetzner label value: at most 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends."""
    value = _INVALID_LABEL_CHARS.sub("-", text)[:LABEL_VALUE_MAX].strip("-_.")
    return value or "unknown"


def this_machine() -> str:
    """A stable id of this machine that does not reveal /etc/machine-id (systemd asks to keep it private)."""
    try:
        identity = MACHINE_ID_FILE.read_text().strip()
    except OSError:
        identity = ""
    return hashlib.sha256(f"{MANAGED_BY}-lock:{identity or socket.gethostname()}".encode()).hexdigest()[:16]


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


@dataclass(frozen=True)
class Holder:
    user: str
    host: str
    machine: str
    pid: int
    command: str
    since: datetime

    @classmethod
    def me(cls, command: str) -> Holder:
        return cls(label_value(_user()), label_value(socket.gethostname()), this_machine(), os.getpid(),
                   label_value(command), datetime.now(timezone.utc).replace(microsecond=0))

    def labels(self, settings: Settings) -> dict[str, str]:
        return {"managed-by": MANAGED_BY, "project": PROJECT, "lock": settings.environment, "user": self.user,
                "host": self.host, "machine": self.machine, "pid": str(self.pid), "command": self.command,
                "since": self.since.strftime(SINCE_FORMAT)}

    @classmethod
    def from_labels(cls, labels: dict, settings: Settings) -> Holder | None:
        """The holder a lock's labels name; None when they are not a lock of ours for this environment."""
        if labels.get("managed-by") != MANAGED_BY or labels.get("lock") != settings.environment:
            return None
        try:
            since = datetime.strptime(labels["since"], SINCE_FORMAT).replace(tzinfo=timezone.utc)
            return cls(labels["user"], labels["host"], labels["machine"], int(labels["pid"]), labels["command"],
                       since)
        except (KeyError, ValueError):
            return None

    def describe(self) -> str:
        return f"{self.user}@{self.host} ({self.command}, pid {self.pid}) since {self.since:%Y-%m-%d %H:%M:%S} UTC"

    def died_here(self, lock_id: int) -> bool:
        """A process of this machine that no longer runs (or an earlier run of this very process)."""
        if self.machine != this_machine():
            return False
        if self.pid == os.getpid():
            return lock_id not in _held
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # another user's process: it runs
            return False
        return False


@dataclass(frozen=True)
class Lock:
    id: int
    name: str
    holder: Holder | None  # None: a placement group with the lock's name but not our labels


def current(client: hcloud.Client, settings: Settings) -> Lock | None:
    """The environment's lock as it is now (one read), or None when nobody holds it."""
    group = client.placement_groups.get_by_name(lock_name(settings))
    if group is None:
        return None
    return Lock(group.id, group.name, Holder.from_labels(group.labels or {}, settings))


def stale_here(client: hcloud.Client, settings: Settings) -> bool:
    """A lock left by a process of this machine that no longer runs: a run with nothing else to do still
    takes it over (and so removes it), or it would block every other machine until unlock --force."""
    lock = current(client, settings)
    return lock is not None and lock.holder is not None and lock.holder.died_here(lock.id)


def locked_by(settings: Settings, lock: Lock) -> str:
    """"environment X is locked by user@host (apply, pid 42) since ... UTC"."""
    if lock.holder is None:
        return (f"environment {settings.environment} is locked: placement group {lock.name} exists without the "
                "lock's labels (made by hand?)")
    return f"environment {settings.environment} is locked by {lock.holder.describe()}"


def held_message(settings: Settings, lock: Lock, wait_option: str = "--lock-wait SECONDS") -> str:
    if lock.holder is None:
        return f"{locked_by(settings, lock)}; delete it in the Hetzner console if nobody uses it"
    return (f"{locked_by(settings, lock)}; wait with {wait_option}, or if that run died: "
            "python bootstrap.py unlock --force")


def acquire(client: hcloud.Client, settings: Settings, command: str, wait_seconds: float = 0,
            out=sys.stdout, wait_option: str = "--lock-wait SECONDS") -> Lock:
    """Take the lock, or raise LockHeld (at once, or after waiting wait_seconds for it; its message names
    wait_option, the way this command waits)."""
    deadline = time.monotonic() + wait_seconds
    waiting = False
    while True:
        holder = Holder.me(command)
        try:
            group = client.placement_groups.create(name=lock_name(settings), type="spread",
                                                   labels=holder.labels(settings)).placement_group
            _held.add(group.id)
            return Lock(group.id, group.name, holder)
        except APIException as error:
            if error.code != "uniqueness_error":
                raise
        except ResponseLost:  # created or not: the lock's labels tell whether it is this very attempt's
            pass
        lock = current(client, settings)
        if lock is not None and lock.holder == holder:
            _held.add(lock.id)
            return lock
        if lock is None:
            continue  # released between our attempt and our look: try again
        if lock.holder is not None and lock.holder.died_here(lock.id):
            print(f"Lock: taking over {lock.name} from {lock.holder.describe()}: that process no longer runs "
                  "on this machine", file=out, flush=True)
            _delete(client, lock.id)
            continue
        if not waiting and wait_seconds > 0:
            print(f"Lock: {locked_by(settings, lock)}; waiting up to {wait_seconds:g} s", file=out, flush=True)
            waiting = True
        if not _released(client, lock.id, deadline, POLL_FACTOR * settings.hcloud_poll_interval):
            raise LockHeld(held_message(settings, lock, wait_option))


def _released(client: hcloud.Client, lock_id: int, deadline: float, interval: float) -> bool:
    """Wait (with reads only) until the lock is gone; False when the deadline came first."""
    while time.monotonic() < deadline:
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        try:
            client.placement_groups.get_by_id(lock_id)
        except APIException as error:
            if error.code == "not_found":
                return True
            raise
    return False


def _delete(client: hcloud.Client, lock_id: int) -> None:
    """Delete a lock by id (never by name: a lock taken since by someone else has another id). When the
    answer was lost, a look tells whether it is gone before it is deleted again."""
    for attempt in range(MAX_RETRIES + 1):
        try:
            client.placement_groups.delete(hcloud.placement_groups.PlacementGroup(id=lock_id))
            return
        except APIException as error:
            if error.code != "not_found":  # already gone: broken with unlock --force, or taken over
                raise
            return
        except ResponseLost:
            if attempt == MAX_RETRIES:
                raise
            try:
                client.placement_groups.get_by_id(lock_id)
            except APIException as error:
                if error.code == "not_found":
                    return
                raise


def release(client: hcloud.Client, settings: Settings, lock: Lock) -> None:
    """Release our lock; BootstrapError saying how the next run gets it when that fails."""
    _held.discard(lock.id)
    try:
        _delete(client, lock.id)
    except (APIException, requests.RequestException) as error:
        raise BootstrapError(f"could not release the lock {lock.name} ({describe(error, settings.hcloud_endpoint)}); "
                             "the next run from this machine takes it over, elsewhere run: python bootstrap.py "
                             "unlock --force") from None


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def hold(client: hcloud.Client, settings: Settings, command: str, wait_seconds: float = 0, out=sys.stdout):
    """Hold the lock for the block; released at its end, also after an error, Ctrl-C or SIGTERM. A failed
    release fails a run that went well; after a failure it is a notice on `out` (the run's error comes first)."""
    lock = acquire(client, settings, command, wait_seconds, out)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)  # a killed cron job releases the lock too
    try:
        yield lock
    except BaseException:
        try:
            release(client, settings, lock)
        except BootstrapError as error:
            print(f"Lock: {error}", file=out, flush=True)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    release(client, settings, lock)


def break_lock(client: hcloud.Client, settings: Settings) -> Lock | None:
    """unlock --force: delete the environment's lock whoever holds it; the lock that was broken, or None."""
    lock = current(client, settings)
    if lock is None:
        return None
    if lock.holder is None:
        raise BootstrapError(held_message(settings, lock))
    _delete(client, lock.id)
    return lock
