"""The end-to-end gate: the whole platform on the local cloud, as an operator would run it (needs root).

up -> bootstrap apply -> deploy -> marker file on every volume -> second deploy changes nothing -> markers
still there -> host tests -> node_exporter stopped on a Dokku server: the host-down alert and its resolution
reach the webhook receiver -> reboot every host -> markers still there -> host tests -> bootstrap destroy
-> down. Each step is the project's own command in a subprocess; the first one that fails stops the gate
with its log. `down` runs whatever happened (namespaces, links, mounts, loop devices, processes).
"""

import json
import os
import secrets
import shlex
import shutil
import sys
import time
from pathlib import Path

import pytest

from settings import MOUNT_POINTS, load_settings
from tasks.nginx import PASSWORD_FILE
from tests.testbed import layout, pebble, steps, webhook

pytestmark = pytest.mark.testbed
MARKER = ".mindroom-e2e-marker"


# Two Dokku servers and the platform: the platform key, DOKKU_HOSTS and the tests cover every Dokku host.
DOKKU_SERVERS = 2


def _testbed(*command: str) -> list[str]:
    return [sys.executable, "-m", "tests.testbed", *command]


def _settings():
    return load_settings({**os.environ, "ENV_FILE": str(layout.ENV_FILE)}, cwd=layout.REPO_ROOT)


def _hosts() -> list[dict]:
    """The servers bootstrap wrote to its outputs file, with the admin key to reach them."""
    settings = _settings()
    servers = json.loads(settings.outputs_file.read_text())["servers"]
    return [{**server, "ssh_key": str(settings.ssh_private_key_path)} for server in servers]


def _ssh(host: dict, command: str) -> list[str]:
    return ["ssh", "-i", host["ssh_key"], "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
            f"root@{host['ipv4']}", command]


def _write_markers(runner: steps.Runner, token: str) -> None:
    for host in _hosts():
        mount = MOUNT_POINTS[host["role"]]
        runner.run(f"write marker on {host['name']}'s volume", _ssh(
            host, f"mountpoint -q {mount} && echo {token} > {mount}/{MARKER}"))


def _check_markers(runner: steps.Runner, token: str, when: str) -> None:
    for host in _hosts():
        mount = MOUNT_POINTS[host["role"]]
        # the marker must be on the volume itself: the mount's source is the volume's device
        check = (f"mountpoint -q {mount} && test \"$(cat {mount}/{MARKER})\" = {token} && "
                 f"test \"$(stat -L -c %t:%T {shlex.quote(host['volume']['device'])})\" = "
                 f"\"$(stat -L -c %t:%T \"$(findmnt -n -o SOURCE --target {mount})\")\"")
        runner.run(f"marker on {host['name']}'s volume {when}", _ssh(host, check))


EDITED_TEMPLATE = "templates/base/sshd.local.j2"
EDIT = "# e2e: an edited template"


def _check_dry_runs(runner: steps.Runner, workdir: Path) -> None:
    """`pyinfra --dry --diff` plans nothing on the converged hosts; after a template is edited (in a copy
    of the project) it plans exactly that file, shows the diff, and the restart that depends on it."""
    planned = steps.planned_changes(runner.run("dry run on the converged hosts", steps.dry_run(),
                                                        with_stderr=True))
    if planned:
        raise steps.StepFailed(f"a dry run on converged hosts plans changes: {planned}")
    copy = workdir / "project"
    shutil.copytree(layout.REPO_ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", ".env*", ".secrets", "outputs.*"))  # ENV_FILE keeps pointing at the original
    with open(copy / EDITED_TEMPLATE, "a") as template:
        template.write(EDIT + "\n")
    output = runner.run("dry run after editing a template", steps.dry_run(), cwd=copy, with_stderr=True)
    planned = steps.planned_changes(output)
    if not planned or not all(op.endswith("Upload /etc/fail2ban/jail.d/sshd.local") for op in planned):
        raise steps.StepFailed(f"editing {EDITED_TEMPLATE} should plan only its upload, planned: {planned}")
    if f"+ {EDIT}" not in output or "Will modify /etc/fail2ban/jail.d/sshd.local" not in output:
        raise steps.StepFailed(f"the dry run did not show the template's diff:\n{output[-3000:]}")


def _check_certificate_issued(deploy_output: str) -> None:
    """The first deploy gets the certificate: Pebble, DNS and nginx are all there, so TLS must not be pending."""
    pending = [line for line in deploy_output.splitlines() if "TLS PENDING" in line]
    if pending:
        pebble_log = pebble.log_file(layout.LAB)
        tail = pebble_log.read_text(errors="replace").splitlines()[-40:] if pebble_log.is_file() else []
        raise steps.StepFailed("the first deploy left TLS pending:\n" + "\n".join(pending)
                               + "\n\nPebble's log, last lines:\n" + "\n".join(tail))


def _check_no_secret_in_logs(runner: steps.Runner) -> None:
    """No step printed a secret: not the token, the Stripe/Supabase/registry values, nor the admin password."""
    settings = _settings()
    values = settings.secret_values()
    password_file = settings.secrets_dir / PASSWORD_FILE
    if password_file.is_file():
        values.append(password_file.read_text().strip())
    leaks = [(log.name, name) for log in sorted(runner.log_dir.glob("*.log"))
             for name, value in enumerate(values) if value and value in log.read_text(errors="replace")]
    if leaks:
        raise steps.StepFailed(f"secret values (by index) appear in step logs: {leaks}")


def _host_tests(runner: steps.Runner, capsys, when: str) -> None:
    """The host tests, each named with its result in the gate's own output (CI shows it), not only in a log."""
    with capsys.disabled():
        print(f"\n----- host tests {when} -----", flush=True)
        runner.run(f"host tests {when}", steps.host_tests(verbose=True), echo=True)


# Bound for an alert to reach the webhook receiver: with the testbed's timings (tests/testbed/webhook.py TIMINGS)
# a scrape, the rule's `for:`, an evaluation and Alertmanager's group wait or interval take about 30 s.
ALERT_WAIT_SECONDS = 120


def _wait_for_notification(runner: steps.Runner, alertname: str, host_name: str, status: str, after: int) -> None:
    """Poll the webhook receiver until a message newer than the first `after` ones carries the alert."""
    began = time.monotonic()
    while time.monotonic() - began < ALERT_WAIT_SECONDS:
        for message in webhook.received(layout.LAB)[after:]:
            if any(alert["status"] == status and alert["labels"].get("alertname") == alertname
                   and alert["labels"].get("host") == host_name for alert in message["alerts"]):
                took = time.monotonic() - began
                runner.timings[f"{alertname} {status} notification for {host_name}"] = took
                print(f"[{time.monotonic() - runner.started:6.0f}s] {alertname} {status} for {host_name} "
                      f"notified: ok ({took:.1f}s)", flush=True)
                return
        time.sleep(2)
    seen = [(message["status"], [alert["labels"].get("alertname") for alert in message["alerts"]])
            for message in webhook.received(layout.LAB)]
    raise steps.StepFailed(f"no {status} {alertname} notification for {host_name} within {ALERT_WAIT_SECONDS}s; "
                           f"the receiver got: {seen}")


def _check_host_down_alert(runner: steps.Runner) -> None:
    """node_exporter stopped on a Dokku server: the host-down alert reaches the webhook receiver, and its
    resolution does once node_exporter runs again."""
    target = [host for host in _hosts() if host["role"] == "dokku"][-1]
    before = len(webhook.received(layout.LAB))
    runner.run(f"stop node_exporter on {target['name']}", _ssh(target, "systemctl stop prometheus-node-exporter"))
    _wait_for_notification(runner, "HostDown", target["name"], "firing", before)
    after_firing = len(webhook.received(layout.LAB))
    runner.run(f"start node_exporter on {target['name']}", _ssh(target, "systemctl start prometheus-node-exporter"))
    _wait_for_notification(runner, "HostDown", target["name"], "resolved", after_firing)


def test_platform_end_to_end(tmp_path_factory, capsys):
    if Path(f"/sys/class/net/{layout.PUBLIC_BRIDGE}").exists() or layout.LAB.exists():
        pytest.fail(f"a testbed is already up ({layout.LAB}); the gate makes its own: run "
                    "`python -m tests.testbed down` first", pytrace=False)
    runner = steps.Runner(tmp_path_factory.mktemp("e2e-logs"))
    token = secrets.token_hex(8)
    failure = None
    try:
        runner.run("testbed up", _testbed("up", "--dokku-servers", str(DOKKU_SERVERS)))
        runner.run("bootstrap apply", steps.apply())
        _check_certificate_issued(runner.run("deploy", steps.deploy(), with_stderr=True))
        _write_markers(runner, token)
        totals = steps.json_totals(runner.run("second deploy", steps.deploy("--json")))
        steps.assert_no_changes(totals)
        _check_markers(runner, token, "after the second deploy")
        _check_dry_runs(runner, tmp_path_factory.mktemp("dry-run"))
        _host_tests(runner, capsys, "after the deploys")
        _check_host_down_alert(runner)
        runner.run("reboot every host", steps.reboot())
        _check_markers(runner, token, "after the reboot")
        _host_tests(runner, capsys, "after the reboot")
        runner.run("bootstrap destroy", steps.destroy())
        _check_no_secret_in_logs(runner)
    except steps.StepFailed as error:
        failure = str(error)
    finally:
        try:
            runner.run("testbed down", _testbed("down"))
        except steps.StepFailed as error:
            failure = f"{failure}\n\n{error}" if failure else str(error)
        print("\n".join(f"{name:60} {seconds:6.1f}s" for name, seconds in runner.timings.items()))
    if failure:
        pytest.fail(failure, pytrace=False)
