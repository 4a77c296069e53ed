"""Maintenance that rolls: one server at a time, Dokku servers first, under the environment's lock.

    python maintain.py reboot [--only-if-required] [--lock-wait SECONDS]
    python maintain.py upgrade [--lock-wait SECONDS]

reboot: reboots every host (or, --only-if-required, those with /run/reboot-required: unattended-upgrades'
kernel and libc updates) one after another, dokku-1, dokku-2, ... then the platform. Each host is done when it
answers SSH again, systemd has booted, Docker and nginx are active and every container that ran before runs
again; only then the next one. A host that does not come back stops the roll, naming it; the hosts after it
are not touched. With nothing to reboot nothing is sent (no lock either); otherwise the lock is taken and the
hosts are asked again under it.

upgrade: brings each Dokku server that runs another Dokku version than DOKKU_VERSION, or a plugin at another tag
than settings.DOKKU_PLUGINS, to them, one server after another (dokku-1, dokku-2, ...): its apps stopped
(`dokku ps:stop --all`), the held package upgraded, the plugins updated, the apps that ran rebuilt and started
(`dokku ps:rebuild APP`; an app stopped on purpose stays stopped); the server is done when `dokku version` is
DOKKU_VERSION and every app that ran before runs again. A failure stops the roll, naming the server; the servers
after it are not touched and keep serving on the old version. With backups on (BACKUP_REPOSITORY), each server is
backed up (`backup.py now SERVER`) just before its apps stop; a failed backup stops the roll before that server is
touched. Nothing to upgrade: nothing is sent (no lock either); otherwise the lock is taken and the servers are
asked again under it. A DOKKU_VERSION older than a server runs is refused before anything is sent: the upgrade
never downgrades.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import bootstrap
from cloud import lock
from cloud.api import BootstrapError, connect
from settings import DOKKU_PLUGINS, SettingsError

ROOT = Path(__file__).resolve().parent
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
REBOOT_REQUIRED_FACT = "server.RebootRequired"
DOKKU_RELEASE_FACT = "tasks.upgrade.DokkuRelease"


@dataclass(frozen=True)
class Roll:
    """One kind of roll: its one-host deploy file and how its output names the steps."""
    name: str
    deploy: str
    doing: str
    done: str
    failed: str
    untouched: str


REBOOT = Roll("reboot", "maintenance/reboot.py", "rebooting", "is back: SSH, Docker, nginx and its containers",
              "it did not come back with its services", "not rebooted")
UPGRADE = Roll("upgrade", "maintenance/upgrade.py", "upgrading", "is upgraded: dokku version checked, its apps run again",
               "its upgrade or its check failed", "not upgraded (still serving on the old version)")


def roll_order(outputs_file: Path, dokku_only: bool = False) -> list[str]:
    """The hosts bootstrap created, Dokku servers first (dokku-1, dokku-2, ... by private IP), the platform last
    (or not at all, `dokku_only`)."""
    try:
        servers = json.loads(outputs_file.read_text())["servers"]
        dokku = sorted((server for server in servers if server["role"] == "dokku"),
                       key=lambda server: ipaddress.ip_address(server["private_ip"]))
        return [server["name"] for server in dokku] + [server["name"] for server in servers
                                                       if server["role"] != "dokku" and not dokku_only]
    except FileNotFoundError:
        raise SettingsError(f"OUTPUTS_FILE={str(outputs_file)!r} does not exist; run `python bootstrap.py apply` "
                            "first") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SettingsError(f"OUTPUTS_FILE={str(outputs_file)!r} is not bootstrap's outputs file "
                            f"({type(error).__name__}); run `python bootstrap.py output` to write it again") from None


def _pyinfra(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([PYINFRA, "-y", *args], cwd=ROOT, text=True, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE if capture else None)
    except OSError as error:  # pyinfra is found beside the Python that runs this (the venv)
        raise BootstrapError(f"cannot run {PYINFRA} ({error.strerror}); run maintain.py with the venv's python "
                             "(source .venv/bin/activate)") from None


def _fact(fact: str, hosts: list[str], what: str, *limit: str) -> dict:
    """One pyinfra fact of every host (one read each); BootstrapError naming the hosts it could not ask."""
    done = _pyinfra("--json", *limit, "inventory.py", "fact", fact, capture=True)
    try:
        found = json.loads(done.stdout)[fact]
    except (ValueError, KeyError):
        raise BootstrapError(f"could not ask the hosts {what} (pyinfra exit {done.returncode}); "
                             "see its output above") from None
    unreachable = [name for name in hosts if found.get(name) is None]
    if unreachable:
        raise BootstrapError(f"could not ask {', '.join(unreachable)} {what} (unreachable?)")
    return found


def needing_reboot(hosts: list[str]) -> list[str]:
    """The hosts with /run/reboot-required (pyinfra's server.RebootRequired fact, one read per host)."""
    required = _fact(REBOOT_REQUIRED_FACT, hosts, "whether it needs a reboot")
    return [name for name in hosts if required[name]]


def upgrade_changes(release: dict, version: str, plugins: dict) -> list[str]:
    """What an upgrade changes on a Dokku server as DokkuRelease read it: ["Dokku 0.38.27 -> 0.38.28", "plugin
    redis 1.42.0 -> 1.43.0"]; empty when it runs DOKKU_VERSION and every installed plugin at its tag (a plugin
    that is not installed yet is the deploy's)."""
    changes = [f"Dokku {release['version']} -> {version}"] if release["version"] != version else []
    for name, (_url, tag) in plugins.items():
        now = release["plugins"].get(name)
        if now and now != tag:
            changes.append(f"plugin {name} {now} -> {tag}")
    return changes


def _older(version: str, running: str) -> bool:
    """Whether DOKKU_VERSION `version` (X.Y.Z) is older than the `running` one (False when that is no X.Y.Z)."""
    try:
        return tuple(map(int, version.split("."))) < tuple(map(int, running.split(".")))
    except ValueError:
        return False


def needing_upgrade(hosts: list[str], version: str) -> dict[str, list[str]]:
    """{server: its changes} of the Dokku servers to upgrade, in the roll's order (one read per server)."""
    releases = _fact(DOKKU_RELEASE_FACT, hosts, "which Dokku they run", "--limit", "dokku")
    missing = [name for name in hosts if not releases[name]["version"]]
    if missing:
        raise BootstrapError(f"no Dokku on {', '.join(missing)} yet: set it up with `pyinfra inventory.py deploy.py` "
                             "first (the upgrade only upgrades)")
    newer = [f"{name} ({releases[name]['version']})" for name in hosts if _older(version, releases[name]["version"])]
    if newer:  # apt refuses the downgrade only after the apps were stopped
        raise BootstrapError(f"DOKKU_VERSION={version} is older than what runs on {', '.join(newer)}: the upgrade "
                             "never downgrades (Dokku has no downgrade path); set DOKKU_VERSION to the version they "
                             "run or a newer one")
    return {name: changes for name in hosts if (changes := upgrade_changes(releases[name], version, DOKKU_PLUGINS))}


def backup_now(name: str) -> int:
    """`python backup.py now NAME`: the server's backup just before it is touched; its exit status."""
    return subprocess.run([sys.executable, "backup.py", "now", name], cwd=ROOT, stdin=subprocess.DEVNULL).returncode


def roll(kind: Roll, hosts: list[str], out, details: Mapping[str, list[str]] | None = None,
         back_up_first: bool = False) -> None:
    """One host after another; with `back_up_first` each is backed up before its step, and a failed backup
    stops the roll before that host is touched."""
    for number, name in enumerate(hosts, 1):
        detail = f": {', '.join(details[name])}" if details else ""
        rest = f"; {kind.untouched}: {', '.join(hosts[number:])}" if hosts[number:] else ""
        if back_up_first:
            print(f"[{number}/{len(hosts)}] backing up {name} first", file=out, flush=True)
            if backup_now(name) != 0:
                raise BootstrapError(f"the {kind.name} roll stopped at {name}: its backup before the {kind.name} "
                                     f"failed (output above), {name} is untouched{rest}")
        print(f"[{number}/{len(hosts)}] {kind.doing} {name}{detail}", file=out, flush=True)
        began = time.monotonic()
        done = _pyinfra("--limit", name, "inventory.py", kind.deploy)
        if done.returncode != 0:
            raise BootstrapError(f"the {kind.name} roll stopped at {name}: {kind.failed} "
                                 f"(pyinfra exit {done.returncode}, output above){rest}")
        print(f"[{number}/{len(hosts)}] {name} {kind.done} ({time.monotonic() - began:.0f} s)", file=out, flush=True)


def cmd_reboot(settings, args, out) -> int:
    hosts = roll_order(settings.outputs_file)
    pending = needing_reboot(hosts) if args.only_if_required else hosts
    if not pending:
        print("No host needs a reboot.", file=out)
        return 0
    with lock.hold(connect(settings), settings, "reboot", args.lock_wait, out):
        if args.only_if_required:
            pending = needing_reboot(hosts)  # again, under the lock
        print(f"Rebooting one at a time: {', '.join(pending) or 'none any more'}", file=out, flush=True)
        roll(REBOOT, pending, out)
    print("Rebooted." if pending else "No host needs a reboot any more.", file=out)
    return 0


def cmd_upgrade(settings, args, out) -> int:
    servers = roll_order(settings.outputs_file, dokku_only=True)
    if not needing_upgrade(servers, settings.dokku_version):
        print(f"Every Dokku server runs Dokku {settings.dokku_version} and its plugins at their tags.", file=out)
        return 0
    with lock.hold(connect(settings), settings, "upgrade", args.lock_wait, out):
        pending = needing_upgrade(servers, settings.dokku_version)  # again, under the lock
        print(f"Upgrading one Dokku server at a time to Dokku {settings.dokku_version}: "
              f"{', '.join(pending) or 'none any more'}", file=out, flush=True)
        roll(UPGRADE, list(pending), out, pending, back_up_first=settings.backup() is not None)
    print("Upgraded." if pending else "No Dokku server needs an upgrade any more.", file=out)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser, commands = bootstrap.command_parser("maintain.py", __doc__)
    reboot = commands.add_parser("reboot", help="reboot the hosts one at a time, Dokku servers first")
    reboot.add_argument("--only-if-required", action="store_true", help="only hosts with /run/reboot-required")
    lock.add_wait_option(reboot)
    upgrade = commands.add_parser("upgrade", help="bring the Dokku servers to DOKKU_VERSION and the plugin tags, one "
                                  "at a time")
    lock.add_wait_option(upgrade)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None, out=None) -> int:
    return bootstrap.run({"reboot": cmd_reboot, "upgrade": cmd_upgrade}, parse_args(argv), environ, out,
                         "interrupted; the host being rebooted or upgraded may still be at it: check it, then run the "
                         "roll again")


if __name__ == "__main__":
    sys.exit(main())
