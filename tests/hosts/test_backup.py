"""tasks/backup.py: the backup and restore-test timers enabled, the last backup succeeded (and wrote the metrics
monitoring reads), every secret file root-only 0600, and the repository password in no process list or journal
line. Backups are off without BACKUP_REPOSITORY: then the timers must be absent."""

import pytest

from settings import BACKUP_METRICS, load_settings
from tasks.backup import SCRIPT, TIMERS
from tests.hosts import live
from tests.hosts.roles import group_data

testinfra_hosts = live.hosts("dokku") + live.hosts("platform")
DOKKU = group_data("dokku")
BACKUP = load_settings().backup()
ALL = group_data(None)
CONFIG = ALL["backup_config_dir"]
PASSWORD = f"{CONFIG}/password"
MAX_AGE_HOURS = load_settings().monitoring().backup_max_age_hours  # BackupStale's threshold


@pytest.fixture(autouse=True)
def _backups_on():
    if BACKUP is None:
        pytest.fail("BACKUP_REPOSITORY is not set: backups are off, so nothing protects the volumes' data "
                    "(README: Backups); run these tests against settings with backups", pytrace=False)


@pytest.mark.parametrize("timer", TIMERS)
def test_timer_is_enabled_and_waiting(host, timer):
    assert host.service(timer).is_enabled
    assert host.service(timer).is_running


def test_the_last_backup_succeeded_and_is_in_the_metrics(host):
    """The job's own record (systemd forgets a unit's last result at a reboot): the newest successful backup is
    younger than the alert's threshold, and a run since the boot succeeded."""
    state = host.file(f"{ALL['backup_state_dir']}/last-success")
    assert state.exists, "this host never made a backup: python backup.py now"
    last = int(state.content_string.strip())
    age = int(host.check_output("date +%s")) - last
    assert age < MAX_AGE_HOURS * 3600, f"the newest successful backup is {age // 3600} h old"
    unit = host.run("systemctl show -p Result -p ExecMainStatus -p ExecMainStartTimestamp mindroom-backup.service")
    values = dict(line.split("=", 1) for line in unit.stdout.splitlines())
    if values["ExecMainStartTimestamp"]:  # it ran since the boot
        assert (values["Result"], values["ExecMainStatus"]) == ("success", "0"), values
    metrics = host.file(ALL["backup_metrics_path"])
    assert metrics.mode == 0o644
    assert f"{BACKUP_METRICS['last_success']} {last}" in metrics.content_string.splitlines()


def test_secret_files_are_root_only(host):
    directory = host.file(CONFIG)
    assert (directory.user, directory.group, directory.mode) == ("root", "root", 0o700)
    names = ["password"] + (["ssh-key", "known_hosts", "ssh_config"] if BACKUP.kind == "sftp" else ["s3.env"])
    names += ["healthcheck.curl"] if BACKUP.healthcheck_url else []
    for name in names:
        secret = host.file(f"{CONFIG}/{name}")
        assert (secret.exists, secret.user, secret.group, secret.mode) == (True, "root", "root", 0o600), name
    assert host.file(SCRIPT).mode == 0o755


def test_the_repository_password_is_in_no_process_list_or_journal_line(host):
    # grep -F -f reads the password from its file: it is on no command line here either
    for source in ("ps -eo args", "journalctl -o cat --no-pager"):
        found = host.run(f"{source} | grep -cF -f {PASSWORD}")
        assert found.stdout.strip() == "0", f"the repository password appears in `{source}`"
    assert host.file(PASSWORD).size > 16


def test_a_dokku_servers_backup_records_the_apps_that_ran(host):
    """The restore rebuilds only the apps that ran at the backup (a suspended one stays stopped): a Dokku server's
    last dumps hold their names, each one of the server's apps; the platform's job records none."""
    dokku = live.data(host)["role"] == "dokku"
    listed = host.file(f"{group_data(live.data(host)['role'])['backup_dumps_dir']}/apps-running")
    assert listed.exists == dokku, "the last backup of a Dokku server records its running apps, the platform's none"
    for app in listed.content_string.split() if dokku else []:
        assert host.file(f"{DOKKU['backup_apps_dir']}/{app}").is_directory, app
