"""Backups, by hand: run one now, list the snapshots, run the restore test, put a host's data back.

    python backup.py now [HOST ...]                    back up now (every host by default, in parallel)
    python backup.py list [HOST]                       the snapshots, with time and size
    python backup.py check                             the restore test on every host; exit 0 only if all pass
    python backup.py restore HOST [--snapshot ID] [--yes] [--overwrite] [--lock-wait SECONDS]

HOST is the inventory name (python bootstrap.py output). Each command runs the host's own job over SSH as root
(/usr/local/sbin/mindroom-backup, tasks/backup.py): `now` and `check` start its systemd services and wait for
them, so a run by the timer at the same moment is joined, not doubled. `restore` puts the files of the snapshot
(default: the newest) in place, creates every Dokku postgres/redis service again as it was and re-imports its
dump, and rebuilds the apps that ran (on the platform: nginx and the compose services); it asks first (unless
--yes), holds the environment's lock, and refuses a host that holds data of its own (services, apps, its own
backups) unless --overwrite.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import bootstrap
from cloud import lock
from cloud.api import BootstrapError, connect
from settings import SettingsError

SCRIPT = "/usr/local/sbin/mindroom-backup"
STATE_DIR = "/var/lib/mindroom-backup"
EXIT_IN_USE = 3  # the host script's "refusing to restore over data of this host"
SSH_FAILED = 255  # ssh's own exit status: the host was not reached or did not let us in
SNAPSHOT_ID = re.compile(r"[0-9a-f]{8,64}")  # restic's: 64 hex digits, or the first 8 or more of them


def _hosts(settings) -> dict[str, dict]:
    if settings.backup() is None:
        raise SettingsError("BACKUP_REPOSITORY is not set: backups are off (README: Backups)")
    from inventory import build_inventory  # on use: importing it reads the inventory of the process's settings

    return {name: data for members in build_inventory(settings).values() for name, data in members}


def _pick(hosts: dict[str, dict], names: list[str]) -> list[str]:
    unknown = [name for name in names if name not in hosts]
    if unknown:
        raise SettingsError(f"unknown host {', '.join(unknown)}; the inventory's hosts: {', '.join(hosts)}")
    return names or list(hosts)


def _ssh(data: dict, command: str) -> list[str]:
    return ["ssh", "-i", data["ssh_key"], "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", f"StrictHostKeyChecking={data['ssh_strict_host_key_checking']}",
            "-o", f"UserKnownHostsFile={data['ssh_known_hosts_file']}", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=15", f"{data['ssh_user']}@{data['ssh_hostname']}", command]


def _run(data: dict, command: str, stream: bool = False) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(_ssh(data, command), text=True, stdin=subprocess.DEVNULL,
                              stdout=None if stream else subprocess.PIPE, stderr=None if stream else subprocess.STDOUT)
    except OSError as error:
        raise BootstrapError(f"cannot run ssh ({error.strerror}); install the OpenSSH client") from None


def _unit_run(unit: str) -> str:
    """Start the unit and wait for it (joining a run in progress); print this run's journal, systemd's own lines
    about it included (why it could not start); its exit status."""
    return (f"systemctl start {unit}; rc=$?; run=$(systemctl show -p InvocationID --value {unit}); "
            "journalctl -o cat --no-pager _SYSTEMD_INVOCATION_ID=$run + INVOCATION_ID=$run | tail -n 40; exit $rc")


def _parallel(hosts: dict[str, dict], names: list[str], command: str) -> dict[str, subprocess.CompletedProcess]:
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        return dict(zip(names, pool.map(lambda name: _run(hosts[name], command), names)))


def _report(results: dict[str, subprocess.CompletedProcess], what: str, out) -> int:
    failed = []
    for name, done in results.items():
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        if done.returncode == 0:  # the job's own summary lines; after a failure the last lines, restic's too
            lines = [line for line in lines if line.startswith("mindroom-backup:")][-3:]
        print(f"{name}: {what} {'ok' if done.returncode == 0 else 'FAILED'}", file=out)
        for line in lines[-12:]:
            print(f"  {line}", file=out)
        if done.returncode:
            failed.append(name)
    out.flush()
    if failed:
        unreached = [name for name in failed if results[name].returncode == SSH_FAILED]
        ran = [name for name in failed if name not in unreached]
        why = ([f"not reached over SSH: {', '.join(unreached)}"] if unreached else []) + \
            ([f"the job failed on {', '.join(ran)} (journalctl -u the unit there)"] if ran else [])
        raise BootstrapError(f"{what} failed on {', '.join(failed)}; {'; '.join(why)}; the output is above")
    return 0


def cmd_now(settings, args, out) -> int:
    hosts = _hosts(settings)
    names = _pick(hosts, args.hosts)
    began = time.monotonic()
    results = _parallel(hosts, names, _unit_run("mindroom-backup.service"))
    code = _report(results, "backup", out)
    print(f"Backed up {len(names)} host(s) in {time.monotonic() - began:.0f} s.", file=out)
    return code


def snapshots(data: dict, name: str) -> list[dict]:
    """restic's `snapshots --json` list (one line), whatever restic also says on stderr (a cache warning)."""
    done = _run(data, f"{SCRIPT} snapshots")
    listed = next((line for line in reversed(done.stdout.splitlines()) if line.startswith("[")), "")
    try:
        found = json.loads(listed) if done.returncode == 0 else None
    except ValueError:
        found = None
    if not isinstance(found, list):
        raise BootstrapError(f"could not list the snapshots of {name}: {done.stdout.strip()[-300:] or done.returncode}")
    return found


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return ""


def cmd_list(settings, args, out) -> int:
    hosts = _hosts(settings)
    names = _pick(hosts, [] if args.host is None else [args.host])
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        listed = dict(zip(names, pool.map(lambda name: snapshots(hosts[name], name), names)))
    print(f"{'HOST':34} {'SNAPSHOT':9} {'TIME (UTC)':20} {'SIZE':>10} {'ADDED':>10}", file=out)
    for name, found in listed.items():
        for snap in found:
            summary = snap.get("summary") or {}
            print(f"{name:34} {snap['short_id']:9} {snap['time'][:19].replace('T', ' '):20} "
                  f"{_size(summary.get('total_bytes_processed', 0)):>10} "
                  f"{_size(summary.get('data_added_packed', summary.get('data_added', 0))):>10}", file=out)
        if not found:
            print(f"{name:34} (no snapshot yet)", file=out)
    return 0


def cmd_check(settings, args, out) -> int:
    hosts = _hosts(settings)
    return _report(_parallel(hosts, list(hosts), _unit_run("mindroom-backup-test.service")), "restore test", out)


def _confirm(name: str, snapshot: dict, args, out) -> None:
    if args.yes:
        return
    print(f"This puts snapshot {snapshot['short_id']} of {name} ({snapshot['time'][:19]}) back on {name}: its files "
          "over the live ones, its databases re-imported, the apps that ran rebuilt.", file=out)
    out.flush()
    try:
        answer = input(f"Type the host's name ({name}) to go on: ")
    except EOFError:  # no terminal to ask on
        answer = ""
    if answer.strip() != name:
        raise BootstrapError("restore cancelled; nothing was changed (pass --yes to restore without asking)")


def cmd_restore(settings, args, out) -> int:
    hosts = _hosts(settings)
    [name] = _pick(hosts, [args.host])
    found = snapshots(hosts[name], name)
    if not found:
        raise BootstrapError(f"the repository holds no snapshot of {name}; nothing to restore")
    chosen = found[-1] if not args.snapshot else next(
        (snap for snap in found if args.snapshot in (snap["id"], snap["short_id"])), None)
    if chosen is None:
        raise BootstrapError(f"{name} has no snapshot {args.snapshot}; `python backup.py list {name}` shows them")
    if not SNAPSHOT_ID.fullmatch(str(chosen.get("id", ""))):  # the host's own answer: checked before it is sent back
        raise BootstrapError(f"{name} listed a snapshot whose ID is not restic's ({str(chosen.get('id'))[:80]!r}); "
                             "nothing was changed")
    _confirm(name, chosen, args, out)
    began = time.monotonic()
    with lock.hold(connect(settings), settings, "restore", args.lock_wait, out):
        command = shlex.join([SCRIPT, "restore", chosen["id"], *(["--overwrite"] if args.overwrite else [])])
        out.flush()
        done = _run(hosts[name], command, stream=True)
    if done.returncode == EXIT_IN_USE:
        raise BootstrapError(f"{name} holds data of its own (listed above) that the restore would overwrite; nothing "
                             "was changed. Pass --overwrite to restore anyway")
    if done.returncode:
        raise BootstrapError(f"the restore of {name} failed (exit {done.returncode}, its output above); run it again "
                             "once the cause is fixed")
    print(f"Restored {name} from snapshot {chosen['short_id']} in {time.monotonic() - began:.0f} s.", file=out)
    return 0


def _snapshot_id(text: str) -> str:
    """restic's snapshot IDs: 64 hex digits, or the first 8 or more of them (`list` shows 8)."""
    if not SNAPSHOT_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text[:80]!r} is not a snapshot ID (8 to 64 hex digits, as `list` shows)")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser, commands = bootstrap.command_parser("backup.py", __doc__)
    now = commands.add_parser("now", help="back up now (every host by default)")
    now.add_argument("hosts", nargs="*", metavar="HOST")
    listing = commands.add_parser("list", help="the snapshots, with time and size")
    listing.add_argument("host", nargs="?", metavar="HOST")
    commands.add_parser("check", help="the restore test on every host")
    restore = commands.add_parser("restore", help="put a host's data back from a snapshot")
    restore.add_argument("host", metavar="HOST")
    restore.add_argument("--snapshot", metavar="ID", type=_snapshot_id,
                         help="a snapshot ID from `list` (default: the newest)")
    restore.add_argument("--yes", action="store_true", help="do not ask")
    restore.add_argument("--overwrite", action="store_true",
                         help="restore even over data the host holds of its own (services, apps, its own backups)")
    lock.add_wait_option(restore)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None, out=None) -> int:
    return bootstrap.run({"now": cmd_now, "list": cmd_list, "check": cmd_check, "restore": cmd_restore},
                         parse_args(argv), environ, out, "interrupted; a job already started on a host runs to its end")


if __name__ == "__main__":
    sys.exit(main())
