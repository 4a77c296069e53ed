"""The end-to-end gate: the whole platform on the local cloud, as an operator would run it (needs root).

up -> bootstrap apply -> deploy (meanwhile a second deploy refuses, a third waits for the lock and then changes
nothing; the platform's .env has the Stripe webhook's signing secret) -> a postgres and a redis service exported,
destroyed, re-created and imported with their data -> marker file on every volume -> disaster recovery (data, an
app linked to a postgres service and a suspended app on dokku-1, a file on the platform, backup.py now, dokku-1 and
its volume deleted, apply + deploy a new one, backup.py restore brings the data and the running app with its
DATABASE_URL back, the suspended app stays stopped, backup.py check; then the platform restored over its own data)
-> /run/reboot-required on every host -> second deploy changes nothing and
names them -> markers still there -> -y, the default mode and --dry each read every host once (the default mode
says there is nothing to do, without a prompt) -> --dry plans nothing, and after a template edit its upload and
restart -> host tests -> node_exporter stopped on a Dokku server: the host-down alert and its resolution reach the
webhook receiver -> `maintain.py reboot --only-if-required` rolls every host, Dokku servers first -> markers and the
services' data still there -> host tests -> nothing needs a reboot -> a Dokku upgrade (an app on every Dokku server;
DOKKU_VERSION bumped: the plain deploy leaves it and names the servers; `maintain.py upgrade` rolls dokku-1 then
dokku-2; a deploy at the new version changes nothing; the Dokku host tests; an upgrade to a version the repository
lacks stops at dokku-1, dokku-2 untouched) -> the admin key rotation -> bootstrap destroy (the Stripe webhook
endpoint too) -> down.
Each step is the project's own command in a subprocess; the first one that fails stops the gate with its log.
`down` runs whatever happened (namespaces, links, mounts, loop devices, processes).
"""

import hashlib
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloud import lock
from cloud.api import connect
from settings import MOUNT_POINTS, PLATFORM_SERVICES, Settings, load_settings
from admin_password import PASSWORD_FILE
from tasks.reboot import REBOOT_REQUIRED
from tests.testbed import layout, pebble, service_images, steps, stripeapi, webhook

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


def _ssh(host: dict, command: str, user: str = "root", key: str = "") -> list[str]:
    return ["ssh", "-i", key or host["ssh_key"], "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=10", f"{user}@{host['ipv4']}", command]


def _refused(ssh: list[str]) -> list[str]:
    """Succeeds only when sshd refuses the key (not when the host is merely unreachable)."""
    return ["sh", "-c", f"{shlex.join(ssh)} 2>&1 | grep -q 'Permission denied (publickey'"]


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


# A Dokku postgres and redis service on the first Dokku server, round-tripped as backups use them: the dump is
# real pg_dump custom format (pg_restore --list reads it) / a Redis RDB, and an import into a new service brings the
# row / key back. Kept through the reboot roll: they must come back as the plugins' containers do (restart=always).
SERVICES = {"postgres": "e2e_db", "redis": "e2e_cache"}


def _service_reads(token: str) -> dict[str, tuple[str, str]]:
    """Per plugin: what connect writes, and what reads it back."""
    return {"postgres": (f"CREATE TABLE notes (body text); INSERT INTO notes VALUES ('{token}');",
                         "SELECT body FROM notes;"),
            "redis": (f"SET e2e {token}", "GET e2e")}


def _check_service_data(runner: steps.Runner, token: str, when: str) -> None:
    host = [host for host in _hosts() if host["role"] == "dokku"][0]
    for plugin, name in SERVICES.items():
        read = _service_reads(token)[plugin][1]
        if token not in runner.run(f"{plugin} service {name} has its data {when}",
                                   _ssh(host, f"echo {shlex.quote(read)} | dokku {plugin}:connect {name}")):
            raise steps.StepFailed(f"the {plugin} service {name} lost its data {when}")


def _check_service_dumps(runner: steps.Runner, token: str) -> None:
    host = [host for host in _hosts() if host["role"] == "dokku"][0]
    magic = {"postgres": "PGDMP", "redis": "REDIS"}
    for plugin, name in SERVICES.items():
        write = _service_reads(token)[plugin][0]
        dump = f"/root/{name}.dump"
        runner.run(f"{plugin}:create {name}", _ssh(host, f"dokku {plugin}:create {name} > /dev/null"))
        # sleep: redis:export waits for LASTSAVE to change after its BGSAVE, which never happens when the last save
        # (here the server's start) was in the same second
        runner.run(f"{plugin}:connect {name}: write", _ssh(host, f"echo {shlex.quote(write)} | "
                                                                 f"dokku {plugin}:connect {name} && sleep 1"))
        runner.run(f"{plugin}:export {name}", _ssh(host, f"dokku {plugin}:export {name} > {dump} && "
                                                         f"test \"$(head -c 5 {dump})\" = {magic[plugin]}"))
        if plugin == "postgres" and "TABLE public notes" not in runner.run(
                "the dump is pg_dump's custom format", _ssh(host, f"pg_restore --list {dump}")):
            raise steps.StepFailed("pg_restore --list does not show the table in the postgres:export dump")
        runner.run(f"{plugin}:destroy {name} --force", _ssh(host, f"dokku {plugin}:destroy {name} --force && "
                                                                  f"! dokku {plugin}:exists {name}"))
        runner.run(f"{plugin}:create {name} again, import", _ssh(
            host, f"dokku {plugin}:create {name} > /dev/null && dokku {plugin}:import {name} < {dump} && rm {dump}"))
    _check_service_data(runner, token, "after export, destroy and import")


def _check_one_read_per_host(runner: steps.Runner) -> None:
    """On the converged platform `-y`, the default mode and `--dry` each read every host's snapshot once and
    ask pyinfra nothing else (`-v` logs every fact); `-y` and the default mode say so before running anything
    (and do not prompt), and still name the hosts that need a reboot (flagged before)."""
    hosts = sorted(host["name"] for host in _hosts())
    for mode in steps.DEPLOY_MODES:
        output = runner.run(f"no-op deploy ({mode}): one read per host", steps.deploy_in_mode(mode, "-v"),
                            with_stderr=True)
        loaded = steps.facts_loaded(output)
        if loaded != {name: ["tasks.facts.HostSnapshot"] for name in hosts}:
            raise steps.StepFailed(f"the no-op deploy ({mode}) should read each host's snapshot once, loaded: {loaded}")
        if mode == "--dry":
            continue
        if "--> No changes:" not in output or "Beginning operation run" in output:
            raise steps.StepFailed(f"the no-op deploy ({mode}) did not say there is nothing to do before running "
                                   f"anything:\n{output[-2000:]}")
        _check_reboot_reported(output)


EDITED_TEMPLATE = "templates/base/sshd.local.j2"
EDIT = "# e2e: an edited template"


def _check_dry_runs(runner: steps.Runner, workdir: Path) -> None:
    """`pyinfra --dry --diff` plans nothing on the converged hosts; after a template is edited (in a copy
    of the project) it plans exactly that file and the restart that depends on it (ops.on_change), and shows the
    diff."""
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
    expected = ("Upload /etc/fail2ban/jail.d/sshd.local", "Restart fail2ban")
    if {op.rsplit(" | ", 1)[-1] for op in planned} != set(expected):
        raise steps.StepFailed(f"editing {EDITED_TEMPLATE} should plan its upload and fail2ban's restart on each "
                               f"host, planned: {planned}")
    if f"+ {EDIT}" not in output or "Will modify /etc/fail2ban/jail.d/sshd.local" not in output:
        raise steps.StepFailed(f"the dry run did not show the template's diff:\n{output[-3000:]}")


LOCK_WAIT_SECONDS = 600


def _wait_for_lock(deploy: steps.Step, seconds: float = 120) -> None:
    settings = _settings()
    client, deadline = connect(settings), time.monotonic() + seconds
    while lock.current(client, settings) is None:
        if deploy.process.poll() is not None or time.monotonic() > deadline:
            raise steps.StepFailed(f"the deploy did not take the lock (log {deploy.log}):\n{steps.tail(deploy.log)}")
        time.sleep(0.2)


def _concurrent_deploys(runner: steps.Runner) -> str:
    """The first deploy holds the environment's lock: a second one started meanwhile refuses at once and runs
    no operation; a third with `--data lock_wait=` waits, plans again under the lock and changes nothing. No
    lock is left. Returns the first deploy's output."""
    first = runner.start("deploy", steps.deploy(), with_stderr=True)
    _wait_for_lock(first)
    refused = runner.run("a second deploy meanwhile refuses", steps.deploy(), with_stderr=True, expect_failure=True)
    if not re.search(rf"is locked by \S+ \(deploy, pid {first.pid}\) since ", refused) or "--> Results" in refused:
        raise steps.StepFailed(f"the second deploy should refuse before any operation, naming the first:\n{refused}")
    waiting = runner.start("a third deploy waits for the lock", steps.deploy(
        "--json", "--data", f"lock_wait={LOCK_WAIT_SECONDS}"))
    output = first.finish()
    steps.assert_no_changes(steps.json_totals(waiting.finish()))
    if f"waiting up to {LOCK_WAIT_SECONDS} s" not in waiting.log.read_text():
        raise steps.StepFailed(f"the third deploy did not wait for the lock:\n{steps.tail(waiting.log)}")
    if "is not locked" not in runner.run("no lock is left", [sys.executable, "bootstrap.py", "lock"]):
        raise steps.StepFailed("a lock is left after the deploys")
    return output


def _flag_reboot_required(runner: steps.Runner) -> None:
    """As unattended-upgrades does after a kernel update (on tmpfs: a reboot clears it)."""
    for host in _hosts():
        runner.run(f"flag {host['name']} as needing a reboot", _ssh(host, f"touch {REBOOT_REQUIRED}"))


def _check_reboot_reported(output: str) -> None:
    names = ", ".join(sorted(host["name"] for host in _hosts()))
    if f"REBOOT REQUIRED ({REBOOT_REQUIRED}): {names};" not in output:
        raise steps.StepFailed(f"the deploy did not name the hosts that need a reboot:\n{output[-3000:]}")


def _check_reboot_roll(output: str) -> None:
    """Every host, one at a time, Dokku servers first (by private IP), each back before the next one starts."""
    hosts = _hosts()
    dokku = sorted((host for host in hosts if host["role"] == "dokku"),
                   key=lambda host: ipaddress.ip_address(host["private_ip"]))
    order = [host["name"] for host in dokku] + [host["name"] for host in hosts if host["role"] == "platform"]
    wanted = [line for number, name in enumerate(order, 1)
              for line in (f"[{number}/{len(order)}] rebooting {name}", f"[{number}/{len(order)}] {name} is back")]
    got = [line.split(":")[0] for line in output.splitlines() if re.match(r"\[\d+/\d+\] ", line)]
    if got != wanted:
        raise steps.StepFailed(f"the roll should reboot {', '.join(order)} one after another:\n{output}")


def _rotate_admin_key(runner: steps.Runner, capsys, workdir: Path) -> None:
    """README "Rotating the admin key", on hosts as an older version left them (the provisioner key in root's
    authorized_keys, given at creation; dokku-deploy in groups docker and sudo): the new key is added as an extra
    admin key and deployed while the old one logs in, then promoted; the old key is refused from then on. The
    provisioner key runs dokku as dokku-deploy (sudo) and as Dokku's user, and is never root's."""
    settings = _settings()
    provisioner = str(settings.dokku_provisioner_key_path)[:-len(".pub")]
    old = str(settings.ssh_private_key_path)
    new = workdir / "new_admin_ed25519"
    runner.run("make the new admin key", ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "new-admin",
                                          "-f", str(new)])
    hosts = _hosts()
    dokku_hosts = [host for host in hosts if host["role"] == "dokku"]
    provisioner_key = shlex.quote(settings.dokku_provisioner_key_path.read_text().strip())
    for host in dokku_hosts:
        runner.run(f"make {host['name']} look older", _ssh(
            host, f"echo {provisioner_key} >> /root/.ssh/authorized_keys && usermod -aG docker,sudo dokku-deploy"))
    extra = {"SSH_EXTRA_PUBLIC_KEY_PATHS": f"{new}.pub"}
    added = runner.run("bootstrap apply: add the new admin key", steps.apply(), settings=extra)
    if "create  ssh key" not in added or "-admin-" not in added:
        raise steps.StepFailed(f"apply did not create the extra admin key:\n{added}")
    runner.run("deploy the new admin key (logged in with the old one)", steps.deploy(), settings=extra)
    for host in hosts:
        runner.run(f"{host['name']}: the new key logs in", _ssh(host, "true", key=str(new)))
    for host in dokku_hosts:
        runner.run(f"{host['name']}: the provisioner key is not root's", _refused(_ssh(host, "true", key=provisioner)))
        runner.run(f"{host['name']}: the provisioner key runs sudo dokku, nothing else, in no group", _ssh(
            host, 'sudo -n /usr/bin/dokku version && ! sudo -n /bin/true && test "$(id -Gn)" = dokku-deploy',
            user="dokku-deploy", key=provisioner))
        runner.run(f"{host['name']}: the provisioner key drives Dokku", _ssh(host, "version", user="dokku",
                                                                           key=provisioner))
    promoted = {"SSH_PUBLIC_KEY_PATH": f"{new}.pub", "SSH_PRIVATE_KEY_PATH": str(new)}
    swapped = runner.run("bootstrap apply: promote the new admin key", steps.apply(), settings=promoted)
    if "rename to" not in swapped or "delete  ssh key" not in swapped:
        raise steps.StepFailed(f"apply did not swap the admin keys:\n{swapped}")
    runner.run("deploy with the new admin key only", steps.deploy(), settings=promoted)
    for host in hosts:
        runner.run(f"{host['name']}: the old key is refused", _refused(_ssh(host, "true", key=old)))
    _host_tests(runner, capsys, "of the keys and dokku-deploy after the rotation", "tests/hosts/test_keys.py",
                "tests/hosts/test_dokku.py::test_deploy_user",
                "tests/hosts/test_dokku.py::test_deploy_user_sudo_lists_dokku_only", settings=promoted)


DEMO_APP = "demo"
SUSPENDED_APP = "suspended"  # stopped on purpose: the upgrade must leave it stopped


def _dokku_servers() -> list[dict]:
    return sorted((host for host in _hosts() if host["role"] == "dokku"),
                  key=lambda host: ipaddress.ip_address(host["private_ip"]))


def _deploy_demo_apps(runner: steps.Runner, workdir: Path) -> None:
    """An app on every Dokku server, as Dokku's docker-local scheduler runs one: its image dokku/demo:latest
    (imported from the testbed's busybox layer: the servers reach no registry of apps), created and started
    with Dokku's own commands."""
    for host in _dokku_servers():
        _import_app_image(runner, host, DEMO_APP, workdir)
        runner.run(f"{host['name']}: deploy the demo app", _ssh(
            host, f"dokku apps:create {DEMO_APP} && dokku ps:rebuild {DEMO_APP}"))
        runner.run(f"{host['name']}: a suspended app (deployed, then stopped on purpose)", _ssh(
            host, f"docker tag dokku/{DEMO_APP}:latest dokku/{SUSPENDED_APP}:latest && dokku apps:create "
                  f"{SUSPENDED_APP} && dokku ps:rebuild {SUSPENDED_APP} && dokku ps:stop {SUSPENDED_APP}"))


def _check_dokku_servers(runner: steps.Runner, version: str, when: str) -> None:
    for host in _dokku_servers():
        runner.run(f"{host['name']}: dokku {version}, the demo app runs, the suspended one does not {when}", _ssh(
            host, f"test \"$(dokku version)\" = 'dokku version {version}' && "
                  f"docker ps --filter label=com.dokku.app-name={DEMO_APP} --format '{{{{.Names}}}}' | grep -qx "
                  f"{DEMO_APP}.web.1 && test -z \"$(docker ps -q --filter label=com.dokku.app-name={SUSPENDED_APP})\""))


def _check_upgrade_roll(output: str, old: str, new: str) -> None:
    """dokku-1, then dokku-2, each backed up (the lab's backups are on) and done before the next starts; the
    platform is no Dokku server."""
    order = [host["name"] for host in _dokku_servers()]
    wanted = [line for number, name in enumerate(order, 1) for line in (
        f"[{number}/{len(order)}] backing up {name} first",
        f"[{number}/{len(order)}] upgrading {name}: Dokku {old} -> {new}",
        f"[{number}/{len(order)}] {name} is upgraded: dokku version checked, its apps run again")]
    got = [line.split(" (")[0] for line in output.splitlines() if re.match(r"\[\d+/\d+\] ", line)]
    if got != wanted:
        raise steps.StepFailed(f"the upgrade should go {', '.join(order)} one after another:\n{output}")


def _upgrade_dokku(runner: steps.Runner, capsys, workdir: Path) -> None:
    """README "Upgrading Dokku": DOKKU_VERSION bumped to the next stand-in version in the lab's repository. The
    plain deploy changes nothing and names each server with both versions; `maintain.py upgrade` rolls dokku-1
    then dokku-2; a deploy at the new version changes nothing; the host tests pass. Then an upgrade to a version
    the repository lacks: it stops at dokku-1 before any app stops, dokku-2 is not touched."""
    old = _settings().dokku_version
    new = layout.next_dokku_version(old)
    bumped = {"DOKKU_VERSION": new}
    _deploy_demo_apps(runner, workdir)
    _check_dokku_servers(runner, old, "before the upgrade")
    left = runner.start("deploy with DOKKU_VERSION bumped", steps.deploy("--json"), settings=bumped)
    steps.assert_no_changes(steps.json_totals(left.finish()))
    log = left.log.read_text()
    for host in _dokku_servers():
        if (f"DOKKU UPGRADE PENDING on {host['name']}: Dokku {old} runs, {new} is configured; the deploy left it "
                "alone: run `python maintain.py upgrade`") not in log:
            raise steps.StepFailed(f"the deploy did not name {host['name']} as waiting for the upgrade:\n"
                                   f"{steps.tail(left.log)}")
    _check_dokku_servers(runner, old, "after the plain deploy")
    rolled = runner.run("upgrade roll", steps.upgrade_roll(), with_stderr=True, settings=bumped)
    _check_upgrade_roll(rolled, old, new)
    stopped = re.findall(r"\[(\S+)\]  1 apps run again; they were stopped for ([\d.]+) s", rolled)
    if [name for name, _ in stopped] != [host["name"] for host in _dokku_servers()]:
        raise steps.StepFailed(f"each server's check should say how long its app was stopped:\n{rolled}")
    runner.timings.update({f"{name}: its app stopped during the upgrade": float(seconds) for name, seconds in stopped})
    _check_dokku_servers(runner, new, "after the upgrade")
    after = runner.start("deploy after the upgrade", steps.deploy("--json"), settings=bumped)
    steps.assert_no_changes(steps.json_totals(after.finish()))
    if "DOKKU UPGRADE PENDING" in after.log.read_text():
        raise steps.StepFailed(f"a server still waits for the upgrade after it:\n{steps.tail(after.log)}")
    if "Every Dokku server runs Dokku" not in runner.run("nothing to upgrade any more", steps.upgrade_roll(),
                                                         settings=bumped):
        raise steps.StepFailed("after the roll a Dokku server still needs an upgrade")
    _host_tests(runner, capsys, "of the Dokku servers after the upgrade", "tests/hosts/test_dokku.py", settings=bumped)
    missing = layout.next_dokku_version(new)  # not in the lab's repository
    failed = runner.run("an upgrade to a version the repository lacks stops", steps.upgrade_roll(), with_stderr=True,
                        settings={"DOKKU_VERSION": missing}, expect_failure=True)
    first, second = (host["name"] for host in _dokku_servers())
    if (f"the upgrade roll stopped at {first}: " not in failed
            or f"not upgraded (still serving on the old version): {second}" not in failed
            or f"dokku {missing} is not in the apt repository" not in failed or f"upgrading {second}" in failed):
        raise steps.StepFailed(f"the failed upgrade should stop at {first}, naming it, before {second}:\n{failed}")
    _check_dokku_servers(runner, new, "after the failed upgrade")


def _check_certificate_issued(deploy_output: str) -> None:
    """The first deploy gets the certificate: Pebble, DNS and nginx are all there, so TLS must not be pending."""
    pending = [line for line in deploy_output.splitlines() if "TLS PENDING" in line]
    if pending:
        pebble_log = pebble.log_file(layout.LAB)
        tail = pebble_log.read_text(errors="replace").splitlines()[-40:] if pebble_log.is_file() else []
        raise steps.StepFailed("the first deploy left TLS pending:\n" + "\n".join(pending)
                               + "\n\nPebble's log, last lines:\n" + "\n".join(tail))


def _secret_values() -> list[str]:
    """Every secret of the run: the settings' (with the webhook's signing secret) and the admin password."""
    settings = _settings()
    values = settings.secret_values()
    password_file = settings.secrets_dir / PASSWORD_FILE
    if password_file.is_file():
        values.append(password_file.read_text().strip())
    backup = settings.backup()
    if backup and backup.password:  # generated by the first deploy into SECRETS_DIR
        values.append(backup.password)
    return values


def _check_no_secret_in_logs(runner: steps.Runner, values: list[str]) -> None:
    """No step printed a secret: not the token, the Stripe/Supabase/registry values, nor the admin password."""
    leaks = [(log.name, name) for log in sorted(runner.log_dir.glob("*.log"))
             for name, value in enumerate(values) if value and value in log.read_text(errors="replace")]
    if leaks:
        raise steps.StepFailed(f"secret values (by index) appear in step logs: {leaks}")


def _host_tests(runner: steps.Runner, capsys, when: str, *paths: str, settings: dict | None = None) -> None:
    """The host tests, each named with its result in the gate's own output (CI shows it), not only in a log."""
    with capsys.disabled():
        print(f"\n----- host tests {when} -----", flush=True)
        runner.run(f"host tests {when}", steps.host_tests(*paths, verbose=True), echo=True, settings=settings)


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


def _check_webhook_secret(runner: steps.Runner) -> None:
    """The platform's .env holds the signing secret of the endpoint apply made in the (fake) Stripe account:
    compared by hash, so the secret is on no command line and in no log."""
    [secret] = stripeapi.webhook_secrets(layout.LAB) or [""]
    if not secret:
        raise steps.StepFailed("bootstrap apply made no webhook endpoint in the fake Stripe account")
    [platform] = [host for host in _hosts() if host["role"] == "platform"]
    wanted = hashlib.sha256(f"STRIPE_WEBHOOK_SECRET='{secret}'".encode()).hexdigest()
    got = runner.run("the platform's webhook secret", _ssh(
        platform, "grep '^STRIPE_WEBHOOK_SECRET=' /opt/platform/.env | tr -d '\\n' | sha256sum"))
    if got.split()[0] != wanted:
        raise steps.StepFailed("the platform's STRIPE_WEBHOOK_SECRET is not the signing secret of the endpoint "
                               "bootstrap made in Stripe")


DR_DATABASE = "e2edb"
DR_APP = "e2e-app"  # linked to DR_DATABASE: its DATABASE_URL must match the re-created service
DR_SUSPENDED_APP = "e2e-suspended"  # stopped on purpose: the restore must leave it stopped
DR_STORAGE = f"/var/lib/dokku/data/storage/{DR_APP}/kept.txt"  # an app's persistent storage (on the root disk)
DR_PLATFORM_FILE = f"{MOUNT_POINTS['platform']}/e2e-backup.txt"


def _lose_server(name: str) -> None:
    """The server and its volume are gone, deleted through the (fake) Hetzner API as a lost machine would be."""
    client = connect(_settings())
    server = client.servers.get_by_name(name)
    volume = client.volumes.get_by_name(Settings.volume_name(name))
    client.volumes.change_protection(volume, delete=False).wait_until_finished()
    client.volumes.detach(volume).wait_until_finished()
    client.volumes.delete(volume)
    client.servers.change_protection(server, delete=False, rebuild=False).wait_until_finished()
    client.servers.delete(server).wait_until_finished()


def _import_app_image(runner: steps.Runner, host: dict, app: str, workdir: Path) -> None:
    """dokku/APP:latest on the host, as Dokku's docker-local scheduler runs an app: imported from the testbed's
    busybox layer (the servers reach no registry of apps), a web server on the service's port."""
    service = PLATFORM_SERVICES[0]
    layer = workdir / "app-layer.tar"
    if not layer.exists():
        layer.write_bytes(service_images._layer(service))
    command = json.dumps(["/bin/busybox", "httpd", "-f", "-p", str(service.container_port), "-h", "/www"])
    imported = _ssh(host, f"docker import --change {shlex.quote(f'CMD {command}')} - dokku/{app}:latest")
    runner.run(f"{host['name']}: the {app} app's image", ["sh", "-c", f"{shlex.join(imported)} < {layer}"])


def _check_dr_apps(runner: steps.Runner, host: dict, when: str) -> None:
    """The linked app runs with the service's DSN as its DATABASE_URL (compared on the host: the DSN holds the
    password), the suspended app does not run."""
    runner.run(f"{DR_APP} runs with the DSN of {DR_DATABASE}, {DR_SUSPENDED_APP} is stopped {when}", _ssh(
        host, f"test \"$(dokku ps:report {DR_APP} --running)\" = true && "
              f"test \"$(dokku config:get {DR_APP} DATABASE_URL)\" = \"$(dokku postgres:info {DR_DATABASE} --dsn)\" && "
              f"test \"$(dokku ps:report {DR_SUSPENDED_APP} --running)\" = false"))


def _restore_platform(runner: steps.Runner, capsys, platform: dict, token: str) -> None:
    """README "Disaster recovery": the platform's files lost (the file on its volume deleted) and put back over its
    own data (--overwrite): the file is back, nginx's configuration passes `nginx -t`, the compose services are
    up (the restore's `docker compose up --wait`) and the platform's host tests pass (the site answers)."""
    runner.run("the platform loses its file", _ssh(platform, f"rm {DR_PLATFORM_FILE}"))
    began = time.monotonic()
    runner.run("backup.py restore the platform", steps.backup("restore", platform["name"], "--yes", "--overwrite"))
    runner.timings["restore of the platform (backup.py restore)"] = time.monotonic() - began
    runner.run("the platform's file is back, nginx -t passes", _ssh(
        platform, f"test \"$(cat {DR_PLATFORM_FILE})\" = {token} && nginx -t"))
    _host_tests(runner, capsys, "of the platform after its restore", "tests/hosts/test_platform.py",
                "tests/hosts/test_nginx.py")


def _disaster_recovery(runner: steps.Runner, capsys, token: str, workdir: Path) -> str:
    """README "Disaster recovery": on dokku-1 a postgres service with a row, an app linked to it (running) and a
    suspended one, a file in the app's persistent storage; a file on the platform volume; `backup.py now`; dokku-1
    lost with its volume; apply makes a new server with a blank volume, the deploy configures it, the app's image
    is put there (the operator's redeploy), `backup.py restore` brings the row, the file and the running app with
    its DATABASE_URL back and leaves the suspended app stopped; `backup.py check` passes; a new backup is taken;
    then the platform is restored over its own data. (The gate's next deploy must change nothing.) Returns the
    service's password, which no step log may hold."""
    hosts = _hosts()
    dokku_1 = min((host for host in hosts if host["role"] == "dokku"),
                  key=lambda host: ipaddress.ip_address(host["private_ip"]))
    [platform] = [host for host in hosts if host["role"] == "platform"]
    sql = shlex.quote(f"CREATE TABLE kept (value text); INSERT INTO kept VALUES ('{token}');")
    runner.run("a postgres service with a row on dokku-1", _ssh(
        dokku_1, f"dokku postgres:create {DR_DATABASE} > /dev/null && echo {sql} | dokku postgres:connect {DR_DATABASE}"))
    _import_app_image(runner, dokku_1, DR_APP, workdir)
    runner.run(f"an app linked to {DR_DATABASE} and a suspended app on dokku-1", _ssh(
        dokku_1, f"dokku apps:create {DR_APP} && dokku ps:rebuild {DR_APP} && "
                 f"dokku postgres:link {DR_DATABASE} {DR_APP} > /dev/null && docker tag dokku/{DR_APP}:latest "
                 f"dokku/{DR_SUSPENDED_APP}:latest && dokku apps:create {DR_SUSPENDED_APP} && "
                 f"dokku ps:rebuild {DR_SUSPENDED_APP} && dokku ps:stop {DR_SUSPENDED_APP}"))
    _check_dr_apps(runner, dokku_1, "before the backup")
    runner.run("a file in an app's persistent storage on dokku-1", _ssh(
        dokku_1, f"mkdir -p {shlex.quote(str(Path(DR_STORAGE).parent))} && echo {token} > {DR_STORAGE}"))
    runner.run("a file on the platform volume", _ssh(platform, f"echo {token} > {DR_PLATFORM_FILE}"))
    pings = webhook.pings(layout.LAB)
    runner.run("backup.py now", steps.backup("now"))
    if webhook.pings(layout.LAB) < pings + len(hosts):
        raise steps.StepFailed(f"backup.py now on {len(hosts)} hosts sent {webhook.pings(layout.LAB) - pings} health "
                               "check pings")
    listed = runner.run("backup.py list", steps.backup("list", dokku_1["name"]))
    if dokku_1["name"] not in listed or "no snapshot" in listed:
        raise steps.StepFailed(f"backup.py list shows no snapshot of {dokku_1['name']}:\n{listed}")
    began = time.monotonic()
    _lose_server(dokku_1["name"])
    print(f"[{time.monotonic() - runner.started:6.0f}s] {dokku_1['name']} and its volume deleted", flush=True)
    runner.run("bootstrap apply: a new dokku-1 with a blank volume", steps.apply())
    runner.run("deploy the new dokku-1", steps.deploy())
    [dokku_1] = [host for host in _hosts() if host["name"] == dokku_1["name"]]
    runner.run("dokku-1 is blank", _ssh(dokku_1, f"! test -e {DR_STORAGE} && ! dokku postgres:list | grep -qx {DR_DATABASE}"))
    _import_app_image(runner, dokku_1, DR_APP, workdir)  # images are not in the backup: the operator redeploys
    runner.run("backup.py restore", steps.backup("restore", dokku_1["name"], "--yes"))
    runner.timings["disaster recovery of dokku-1 (loss to restored)"] = time.monotonic() - began
    row = runner.run("the row is back", _ssh(dokku_1, f"echo 'SELECT value FROM kept;' | dokku postgres:connect {DR_DATABASE}"))
    if token not in row:
        raise steps.StepFailed(f"the restored database lacks the row {token}:\n{row}")
    runner.run("the persistent storage file is back", _ssh(dokku_1, f"test \"$(cat {DR_STORAGE})\" = {token}"))
    _check_dr_apps(runner, dokku_1, "after the restore")
    runner.run("backup.py check", steps.backup("check"))
    runner.run("backup.py now after the recovery", steps.backup("now"))
    refused = runner.run("a second restore refuses the host's own data", steps.backup("restore", dokku_1["name"], "--yes"),
                         with_stderr=True, expect_failure=True)
    if "holds data of its own" not in refused:
        raise steps.StepFailed(f"restoring over a host with data should refuse:\n{refused}")
    # the upgrade later counts the apps that run on each server: the rehearsal's app stops (as the suspended one)
    runner.run(f"stop {DR_APP}", _ssh(dokku_1, f"dokku ps:stop {DR_APP}"))
    _restore_platform(runner, capsys, platform, token)
    return _service_password(dokku_1, "postgres", DR_DATABASE)


def _service_password(host: dict, plugin: str, name: str) -> str:
    """The service's password, read past the runner (whose logs are checked for it): the plugins print it in the
    DSN of `:create`, `:info` and `:link` (its config:set), so the gate sends their output to /dev/null."""
    done = subprocess.run(_ssh(host, f"cat /var/lib/dokku/services/{plugin}/{name}/PASSWORD"), capture_output=True,
                          text=True, timeout=60)
    if done.returncode or not done.stdout.strip():
        raise steps.StepFailed(f"cannot read the password of the {plugin} service {name} (exit {done.returncode})")
    return done.stdout.strip()


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
        _check_certificate_issued(_concurrent_deploys(runner))
        _check_webhook_secret(runner)
        _check_service_dumps(runner, token)
        _write_markers(runner, token)
        service_password = _disaster_recovery(runner, capsys, token, tmp_path_factory.mktemp("recovery"))
        _flag_reboot_required(runner)
        second = runner.start("second deploy", steps.deploy("--json"))
        steps.assert_no_changes(steps.json_totals(second.finish()))
        _check_reboot_reported(second.log.read_text())
        _check_markers(runner, token, "after the second deploy")
        _check_one_read_per_host(runner)
        _check_dry_runs(runner, tmp_path_factory.mktemp("dry-run"))
        _host_tests(runner, capsys, "after the deploys")
        _check_host_down_alert(runner)
        _check_reboot_roll(runner.run("reboot roll", steps.reboot_roll()))
        _check_markers(runner, token, "after the reboot")
        _check_service_data(runner, token, "after the reboot")
        _host_tests(runner, capsys, "after the reboot")
        if "No host needs a reboot." not in runner.run("no host needs a reboot any more", steps.reboot_roll()):
            raise steps.StepFailed("after the roll a host still has /run/reboot-required")
        _upgrade_dokku(runner, capsys, tmp_path_factory.mktemp("upgrade"))
        _rotate_admin_key(runner, capsys, tmp_path_factory.mktemp("rotation"))
        secret_values = _secret_values()  # before destroy removes the webhook's secret
        runner.run("bootstrap destroy", steps.destroy())
        if stripeapi.webhook_secrets(layout.LAB):
            raise steps.StepFailed("bootstrap destroy left the webhook endpoint in the fake Stripe account")
        _check_no_secret_in_logs(runner, [*secret_values, service_password])
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
