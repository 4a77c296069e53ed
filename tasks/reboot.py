"""Reboots: the deploy's report of hosts that need one, and one host's reboot for maintain.py's roll.

A host needs a reboot when unattended-upgrades installed a kernel or libc update: /run/reboot-required exists
(Debian's update-notifier-common convention, which unattended-upgrades follows).
"""

from __future__ import annotations

import time

from pyinfra import host
from pyinfra.api import FactBase, OperationError, deploy
from pyinfra.context import ctx_state
from pyinfra.operations import python, server

from tasks import report, snapshot
from tasks.snapshot import snapshot_operation

REBOOT_REQUIRED = "/run/reboot-required"
UNITS = ("docker", "nginx")  # both roles: Docker runs the apps / the platform's services, nginx fronts them
REBOOT_DELAY_SECONDS = 10  # pyinfra reconnects after it: the old sshd must be gone (stopping containers takes seconds)
REBOOT_TIMEOUT_SECONDS = 600
SERVICES_TIMEOUT_SECONDS = 600


def _required(run_state) -> dict[str, bool]:
    """Host name -> whether it needs a reboot, kept with pyinfra's state of this run."""
    if not hasattr(run_state, "mindroom_reboot_required"):
        run_state.mindroom_reboot_required = {}
    return run_state.mindroom_reboot_required


@snapshot_operation(lambda **_: {"paths": [REBOOT_REQUIRED]})
def _note_reboot_required():
    required = _required(ctx_state.get())[host.name] = snapshot.read()["paths"][REBOOT_REQUIRED] != "missing"
    host.noop(f"{REBOOT_REQUIRED} {'exists' if required else 'is absent'}")
    yield from ()


def _reboot_lines() -> list[str]:
    hosts = sorted(name for name, required in _required(ctx_state.get()).items() if required)
    return [f"REBOOT REQUIRED ({REBOOT_REQUIRED}): {', '.join(hosts)}; reboot them one at a time with "
            "`python maintain.py reboot --only-if-required`"] if hosts else []


def report_required() -> None:
    """Note whether this host needs a reboot (read with the host's snapshot: no extra round trip); the hosts
    that do are named once at the end of the run."""
    report.at_end("reboot", _reboot_lines)
    _note_reboot_required(name="Note whether the host needs a reboot")


class RunningServices(FactBase):
    """{"units": {unit: state}, "containers": [names of running containers]}."""

    def command(self, units):
        return ("for unit in " + " ".join(units) + "; do echo \"unit=$unit $(systemctl is-active $unit)\"; done; "
                "docker ps --format 'container={{.Names}}' 2>/dev/null || true")

    def process(self, output):
        found = {"units": {}, "containers": []}
        for line in output:
            key, _, value = line.partition("=")
            if key == "unit":
                unit, _, unit_state = value.partition(" ")
                found["units"][unit] = unit_state
            elif key == "container":
                found["containers"].append(value)
        return found


def _missing(containers: list[str]) -> list[str]:
    now = host.get_fact(RunningServices, units=UNITS)
    return ([unit for unit in UNITS if now["units"].get(unit) != "active"]
            + [name for name in containers if name not in now["containers"]])


def _wait_for_services(containers: list[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while missing := _missing(containers):
        if time.monotonic() > deadline:
            raise OperationError(f"not running {seconds:.0f} s after the reboot: {', '.join(missing)}")
        time.sleep(2)


@deploy("Reboot, then wait for SSH and the services that ran before")
def reboot_and_wait():
    """Reboot the host; done when it answers SSH, systemd finished booting, Docker and nginx are active and
    every container that ran before the reboot runs again (Dokku's apps, the platform's compose services)."""
    before = host.get_fact(RunningServices, units=UNITS)
    server.reboot(name="Reboot", delay=REBOOT_DELAY_SECONDS, interval=1, reboot_timeout=REBOOT_TIMEOUT_SECONDS)
    server.shell(name="Wait for systemd to finish booting", commands=["systemctl is-system-running --wait || true"])
    python.call(name=f"Wait for {', '.join(UNITS)} and {len(before['containers'])} containers",
                function=_wait_for_services, containers=before["containers"], seconds=SERVICES_TIMEOUT_SECONDS)
