"""Backup figures on the local testbed (printed, not a test). Needs root (run it under the lab lock).

    sudo .venv/bin/python bench/bench_backup.py [--megabytes 1024] [--s3] [--keep]

On dokku-1: MEGABYTES of mixed data in an app's persistent storage (half random, a quarter compressible text, a
quarter copies of half the random files), then: the first backup, an incremental backup with nothing changed (target:
under 10% of the first's time and bytes), and a full restore of the latest snapshot into a scratch directory. For
each: wall time and the bytes sent to (or read from) the repository, measured on the Storage Box stand-in's
disk and by restic's own summary (data_added_packed). With --s3 the same three again after a deploy that points
the backups at the Object Storage stand-in (restic over HTTPS, its bucket's disk measured). It brings up its own
lab (one Dokku server) unless one is up, and removes it at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from settings import load_settings  # noqa: E402
from tests.testbed import lab, layout, objectstorage, steps, storagebox  # noqa: E402

DATA_DIR = "/var/lib/dokku/data/storage/bench-app"


def _ssh(server: dict, key: str, command: str) -> str:
    return subprocess.run(["ssh", "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
                           "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", f"root@{server['ipv4']}", command],
                          check=True, capture_output=True, text=True).stdout


def _repository_bytes(directory: Path) -> int:
    out = subprocess.run(["du", "-sb", str(directory)], capture_output=True, text=True)
    return int(out.stdout.split()[0]) if out.returncode == 0 else 0


def _mib(count: float) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count / 2**10:.1f} KiB"


def _measure(runner: steps.Runner, dokku: dict, key: str, repository: Path, overrides: dict[str, str]) -> list:
    state = "cat /var/lib/mindroom-backup/last-backup.json"
    figures = []
    for name in ("first backup", "incremental backup, nothing changed"):
        before = _repository_bytes(repository)
        began = time.monotonic()
        runner.run(name, steps.backup("now", dokku["name"]), settings=overrides)
        took = time.monotonic() - began
        summary = json.loads(_ssh(dokku, key, state))
        figures.append((name, took, _repository_bytes(repository) - before, summary.get("data_added_packed", 0)))
    scratch = "/mnt/dokku-data/mindroom-backup/bench-restore"
    began = time.monotonic()
    _ssh(dokku, key, f"rm -rf {scratch}; mindroom-backup restic restore latest --target {shlex.quote(scratch)} "
         f"> /dev/null && rm -rf {scratch}")
    figures.append(("full restore of the latest snapshot", time.monotonic() - began, _repository_bytes(repository),
                    None))
    return figures


def _report(megabytes: int, what: str, figures: list) -> None:
    print(f"\nBackup figures on the testbed ({date.today()}, {megabytes} MB of mixed data, {what}):")
    for name, took, repository, added in figures:
        sent = f"{_mib(repository)} {'read from' if added is None else 'sent to'} the repository"
        restic = "" if added is None else f", restic data_added_packed {_mib(added)}"
        print(f"  {name:40} {took:6.1f} s  {sent}{restic}")
    first, incremental = figures[0], figures[1]
    share = incremental[2] / max(first[2], 1)
    print(f"  incremental / first: {share:.1%} of the bytes (target < 10%: {'ok' if share < 0.1 else 'MISSED'}), "
          f"{incremental[1] / first[1]:.0%} of the time (the dumps, the scan and forget --prune remain)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench_backup.py", description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=1024)
    parser.add_argument("--s3", action="store_true", help="also against the Object Storage stand-in")
    parser.add_argument("--keep", action="store_true", help="leave the lab up")
    args = parser.parse_args()
    runner = steps.Runner(layout.LAB / "logs" / "bench-backup")
    brought_up = not layout.ENV_FILE.exists()
    try:
        if brought_up:
            lab.up()
            runner.run("bootstrap apply", steps.apply())
            runner.run("deploy", steps.deploy())
        settings = load_settings({"ENV_FILE": str(layout.ENV_FILE)}, cwd=layout.REPO_ROOT)
        servers = json.loads(settings.outputs_file.read_text())["servers"]
        dokku = min((server for server in servers if server["role"] == "dokku"), key=lambda server: server["name"])
        key = str(settings.ssh_private_key_path)
        quarter = max(1, args.megabytes // 4)
        _ssh(dokku, key, f"set -e; rm -rf {DATA_DIR}; mkdir -p {DATA_DIR}/random {DATA_DIR}/text {DATA_DIR}/copies; "
             f"for i in $(seq 1 {quarter}); do head -c 2M /dev/urandom > {DATA_DIR}/random/$i.bin; done; "
             f"for i in $(seq 1 {quarter}); do seq 1 200000 | head -c 1M > {DATA_DIR}/text/$i.txt; done; "
             f"for i in $(seq 1 {quarter // 2}); do cp {DATA_DIR}/random/$i.bin {DATA_DIR}/copies/; done; "
             f"du -sb {DATA_DIR}")
        runs = [("restic over SFTP to the Storage Box stand-in", storagebox.repository_dir(layout.LAB), {})]
        if args.s3:
            runs.append(("restic over HTTPS to the Object Storage stand-in",
                         objectstorage.data_dir(layout.LAB) / objectstorage.BUCKET,
                         objectstorage.s3_settings(layout.LAB, layout.BRIDGE_IP)))
        for what, repository, overrides in runs:
            if overrides:
                runner.run("deploy: backups to S3", steps.deploy(), settings=overrides)
            _report(args.megabytes, what, _measure(runner, dokku, key, repository, overrides))
    finally:
        if brought_up and not args.keep:
            lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
