"""Maintenance that rolls: one server at a time, Dokku servers first, under the environment's lock.

    python maintain.py reboot [--only-if-required] [--lock-wait SECONDS]

reboot: reboots every host (or, --only-if-required, those with /run/reboot-required: unattended-upgrades'
kernel and libc updates) one after another, dokku-1, dokku-2, ... then the platform. Each host is done when it
answers SSH again, systemd has booted, Docker and nginx are active and every container that ran before runs
again; only then the next one. A host that does not come back stops the roll, naming it; the hosts after it
are not touched. With nothing to reboot nothing is sent (no lock either); otherwise the lock is taken and the
hosts are asked again under it.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import bootstrap
from cloud import lock
from cloud.api import BootstrapError, connect
from settings import SettingsError

ROOT = Path(__file__).resolve().parent
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
REBOOT_DEPLOY = "maintenance/reboot.py"
REBOOT_REQUIRED_FACT = "server.RebootRequired"


def roll_order(outputs_file: Path) -> list[str]:
    """The hosts bootstrap created, Dokku servers first (dokku-1, dokku-2, ... by private IP), the platform last."""
    try:
        servers = json.loads(outputs_file.read_text())["servers"]
        dokku = sorted((server for server in servers if server["role"] == "dokku"),
                       key=lambda server: ipaddress.ip_address(server["private_ip"]))
        return [server["name"] for server in dokku] + [server["name"] for server in servers
                                                       if server["role"] != "dokku"]
    except FileNotFoundError:
        raise SettingsError(f"OUTPUTS_FILE={str(outputs_file)!r} does not exist; run `python bootstrap.py apply` "
                            "first") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SettingsError(f"OUTPUTS_FILE={str(outputs_file)!r} is not bootstrap's outputs file "
                            f"({type(error).__name__}); run `python bootstrap.py output` to write it again") from None


def _pyinfra(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([PYINFRA, "-y", *args], cwd=ROOT, text=True, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE if capture else None)


def needing_reboot(hosts: list[str]) -> list[str]:
    """The hosts with /run/reboot-required (pyinfra's server.RebootRequired fact, one read per host)."""
    done = _pyinfra("--json", "inventory.py", "fact", REBOOT_REQUIRED_FACT, capture=True)
    try:
        required = json.loads(done.stdout)[REBOOT_REQUIRED_FACT]
    except (ValueError, KeyError):
        raise BootstrapError(f"could not ask the hosts whether they need a reboot (pyinfra exit {done.returncode}); "
                             "see its output above") from None
    unreachable = [name for name in hosts if required.get(name) is None]
    if unreachable:
        raise BootstrapError(f"could not ask {', '.join(unreachable)} whether it needs a reboot (unreachable?)")
    return [name for name in hosts if required[name]]


def roll(hosts: list[str], out) -> None:
    for number, name in enumerate(hosts, 1):
        print(f"[{number}/{len(hosts)}] rebooting {name}", file=out, flush=True)
        began = time.monotonic()
        done = _pyinfra("--limit", name, "inventory.py", REBOOT_DEPLOY)
        if done.returncode != 0:
            rest = f"; not rebooted: {', '.join(hosts[number:])}" if hosts[number:] else ""
            raise BootstrapError(f"the reboot roll stopped at {name}: it did not come back with its services "
                                 f"(pyinfra exit {done.returncode}, output above){rest}")
        print(f"[{number}/{len(hosts)}] {name} is back: SSH, Docker, nginx and its containers "
              f"({time.monotonic() - began:.0f} s)", file=out, flush=True)


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
        roll(pending, out)
    print("Rebooted." if pending else "No host needs a reboot any more.", file=out)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="maintain.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    reboot = commands.add_parser("reboot", help="reboot the hosts one at a time, Dokku servers first")
    reboot.add_argument("--only-if-required", action="store_true", help="only hosts with /run/reboot-required")
    lock.add_wait_option(reboot)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None, out=None) -> int:
    return bootstrap.run({"reboot": cmd_reboot}, parse_args(argv), environ, out,
                         "interrupted; the host being rebooted may still be booting: check it, then run the roll again")


if __name__ == "__main__":
    sys.exit(main())
