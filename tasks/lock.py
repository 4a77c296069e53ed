"""The deploy holds the environment's lock (cloud/lock.py) while it changes hosts: a pyinfra state callback.

deploy.py calls `hold()` first. Nothing happens while pyinfra prepares, so `--dry` (which stops there) never
takes the lock. At the first operation pyinfra executes, the callback looks whether any host has an
operation that will change something (converged.will_change, as the default mode's early exit: follow-ups are
ops.on_change, which will change only after a change): pyinfra's own change detection answers that; with `-y`,
which skips it, each host's operations are asked in order up to the first change. No change anywhere: nothing is sent to Hetzner and the no-op deploy goes on. Otherwise the
callback takes the lock (waiting up to `--data lock_wait=SECONDS`), drops every host's snapshot so that the
operations are planned again from the hosts as they are now, under the lock, and releases the lock when
pyinfra disconnects from the hosts at the end (it does so in a `finally`: also after an error or Ctrl-C).
"""

from __future__ import annotations

import sys
import threading

import gevent
from pyinfra import host, logger, state
from pyinfra.api.state import BaseStateCallback

from settings import SettingsError, load_settings, lock_wait_seconds
from tasks import snapshot
from tasks.converged import will_change

COMMAND = "deploy"
WAIT_OPTION = "--data lock_wait=SECONDS"


class _DeployLock(BaseStateCallback):
    def __init__(self, wait_seconds: float):
        self.wait_seconds = wait_seconds
        self.decided = False
        self.held = None  # what releases the lock, while this run holds it
        self._guard = threading.Lock()  # gevent's, once pyinfra patched threading: one greenlet decides

    def operation_start(self, state, op_hash):
        self._take(state)

    def operation_host_start(self, state, host, op_hash):  # --serial and --no-wait runs have no operation_start
        self._take(state)

    def host_disconnect(self, state, host):
        self._release()

    def _take(self, state) -> None:
        with self._guard:
            if self.decided:
                return
            self.decided = True
            checks = [state.pool.spawn(will_change, state, target) for target in state.inventory.get_active_hosts()]
            gevent.joinall(checks, raise_error=True)
            if not any(check.value for check in checks):
                return
            self.held = _acquire(self.wait_seconds)
            snapshot.forget()  # plan again, under the lock

    def _release(self) -> None:
        with self._guard:
            held, self.held = self.held, None
        if held is not None:
            held()


def _acquire(wait_seconds: float):
    """Take the lock; returns what releases it. One line and exit 1 when it cannot be taken. The Hetzner SDK (and
    requests) is imported here, on use: a deploy with nothing to change never talks to Hetzner, and the import
    costs about a tenth of a second, a tenth of an empty pyinfra run."""
    import requests
    from hcloud import APIException

    from cloud import lock as cloud_lock
    from cloud.api import BootstrapError, connect, describe

    endpoint = "the Hetzner API"
    try:
        settings = load_settings()
        endpoint = settings.hcloud_endpoint
        client = connect(settings)
        held = cloud_lock.acquire(client, settings, COMMAND, wait_seconds, out=sys.stderr, wait_option=WAIT_OPTION)
    except (SettingsError, BootstrapError, APIException, requests.RequestException) as error:
        print(f"error: {describe(error, endpoint)}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None

    def release() -> None:
        try:
            cloud_lock.release(client, settings, held)
        except BootstrapError as error:
            logger.warning(f"Lock: {error}")
    return release


def _wait_seconds(raw) -> float:
    try:
        return lock_wait_seconds(raw)
    except ValueError as error:
        sys.exit(f"error: --data lock_wait: {error}")


def hold() -> None:
    """Hold the environment's lock while this deploy changes hosts (deploy.py calls it for every host; the
    callback is registered once)."""
    if not any(isinstance(handler, _DeployLock) for handler in state.callback_handlers):
        state.add_callback_handler(_DeployLock(_wait_seconds(host.data.get("lock_wait", 0))))
