"""Backups to S3-compatible Object Storage on the local testbed (needs root): the guests' own restic (Debian's
package) against the Object Storage stand-in (tests/testbed/objectstorage.py) over HTTPS, trusting the lab's CA
through BACKUP_CA_CERT, as production trusts Hetzner's endpoint through the system's CAs.

up (one Dokku server and the platform) -> apply -> deploy (backups to the Storage Box stand-in) -> a deploy with
BACKUP_REPOSITORY=s3:https://<bridge>:<port>/<bucket>/<prefix> changes backup operations only -> `backup.py now`
(while it runs, no process on any host shows the secret key), `backup.py list`, `backup.py check` against S3 -> the
bucket holds each host's repository -> the credentials are in 0600 root files, in no journal line and in no step
log -> a deploy with a wrong secret key, and `backup.py now` fails with restic's own one-line reason -> down.
"""

import subprocess
import time

import pytest

from tests.test_e2e import _check_no_secret_in_logs, _hosts, _ssh, _testbed
from tests.testbed import layout, objectstorage, steps

pytestmark = pytest.mark.testbed
CONFIG = "/etc/mindroom-backup"


def _secret_absent(host: dict, secret: str, command: str) -> bool:
    """The secret (sent on stdin, never on a command line) is not in what `command` prints on the host."""
    done = subprocess.run(_ssh(host, f'read -r secret; ! {command} | grep -qF -- "$secret"'), input=secret + "\n",
                          capture_output=True, text=True, timeout=120)
    return done.returncode == 0


def _watch_processes(runner: steps.Runner, hosts: list[dict], secret: str, settings: dict[str, str]) -> str:
    """`backup.py now`, and meanwhile every process's command line on every host, polled while it runs."""
    step = runner.start("backup.py now to S3", steps.backup("now"), settings=settings)
    seen = []
    while step.process.poll() is None:
        for host in hosts:
            listed = subprocess.run(_ssh(host, "ps -eo args"), capture_output=True, text=True, timeout=60).stdout
            seen.append(listed)
            if secret in listed:
                step.process.kill()
                raise steps.StepFailed(f"the S3 secret key is in a process's arguments on {host['name']}")
        time.sleep(0.5)
    output = step.finish()
    if not any("mindroom-backup" in listed for listed in seen):
        raise steps.StepFailed("no backup job was seen while backup.py now ran: the watch proved nothing")
    return output


def _switch_to_s3(runner: steps.Runner, settings: dict[str, str]) -> None:
    totals = steps.json_totals(runner.run("deploy: backups to the Object Storage stand-in", steps.deploy("--json"),
                                          settings=settings))
    changed = [operation["name"] for operation in totals["changed"]]
    if totals.get("error") or totals["failed_hosts"] or not changed:
        raise steps.StepFailed(f"the switch to S3 failed or changed nothing: {totals}")
    others = [name for name in changed if not name.startswith("Backups")]
    if others or not any(f"{CONFIG}/s3.env" in name for name in changed):
        raise steps.StepFailed(f"the switch to S3 should change backup operations only (s3.env among them): {changed}")


def _check_credentials(runner: steps.Runner, hosts: list[dict], secret: str) -> None:
    for host in hosts:
        runner.run(f"{host['name']}: the S3 credentials and the CA in 0600 root files, no storage box key", _ssh(
            host, f'test "$(stat -c "%a %U %G" {CONFIG}/s3.env {CONFIG}/ca.pem | sort -u)" = "600 root root" '
                  f"&& test ! -e {CONFIG}/ssh-key && test ! -e {CONFIG}/ssh_config"))
        if not _secret_absent(host, secret, "journalctl -o cat --no-pager"):
            raise steps.StepFailed(f"the S3 secret key is in the journal of {host['name']}")


@pytest.fixture
def runner(tmp_path_factory):
    """A lab of its own (one Dokku server and the platform), brought up and down around the test."""
    if layout.LAB.exists():
        pytest.fail(f"a testbed is already up ({layout.LAB}); run `python -m tests.testbed down` first", pytrace=False)
    runner = steps.Runner(tmp_path_factory.mktemp("s3-logs"))
    try:
        runner.run("testbed up", _testbed("up"))
        yield runner
    finally:
        runner.run("testbed down", _testbed("down"))
        print("\n".join(f"{name:60} {seconds:6.1f}s" for name, seconds in runner.timings.items()))


def test_backups_to_s3_object_storage(runner):
    runner.run("bootstrap apply", steps.apply())
    runner.run("deploy (backups to the storage box)", steps.deploy())
    s3 = objectstorage.s3_settings(layout.LAB, layout.BRIDGE_IP)
    secret = s3["BACKUP_S3_SECRET_ACCESS_KEY"]
    hosts = _hosts()
    _switch_to_s3(runner, s3)
    _watch_processes(runner, hosts, secret, s3)
    dokku_1 = next(host for host in hosts if host["role"] == "dokku")
    listed = runner.run("backup.py list from S3", steps.backup("list", dokku_1["name"]), settings=s3)
    if "no snapshot" in listed or dokku_1["name"] not in listed:
        raise steps.StepFailed(f"backup.py list shows no snapshot of {dokku_1['name']} in S3:\n{listed}")
    runner.run("backup.py check against S3", steps.backup("check"), settings=s3)
    stored = {path.name for path in (objectstorage.data_dir(layout.LAB) / objectstorage.BUCKET).iterdir()}
    missing = [host["name"] for host in hosts if f"{objectstorage.PREFIX}%2F{host['name']}%2Fconfig" not in stored]
    if missing:
        raise steps.StepFailed(f"the bucket holds no repository of {', '.join(missing)}")
    _check_credentials(runner, hosts, secret)
    wrong = {**s3, "BACKUP_S3_SECRET_ACCESS_KEY": "W" * 40}
    runner.run("deploy a wrong S3 secret key", steps.deploy(), settings=wrong)
    refused = runner.run("backup.py now with a wrong secret key fails", steps.backup("now"), settings=wrong,
                         with_stderr=True, expect_failure=True)
    reason = [line for line in refused.splitlines() if "mindroom-backup: error:" in line]
    if not reason or not all("Access Denied" in line for line in reason):
        raise steps.StepFailed(f"backup.py now should fail with restic's reason (Access Denied):\n{refused}")
    _check_no_secret_in_logs(runner, [secret, wrong["BACKUP_S3_SECRET_ACCESS_KEY"]])
