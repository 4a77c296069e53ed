"""The backup job (templates/backup/mindroom-backup.j2) run for real in bash, with restic, dokku and pg_restore as
stand-ins that record their arguments: the order (dumps before the snapshot), the size floor, the metrics
monitoring reads, the restore test's verdicts, the refusal to restore over a host's own data, and that the
repository password is never an argument. The settings' checks and backup.py's refusals without backups.
(The real restic against the Storage Box stand-in runs in the end-to-end gate.)

Facts relied on (dokku-postgres 1.48.0 / dokku-redis 1.43.0, github.com/dokku/dokku-postgres): `postgres:list`
prints a `=====> postgres services` header line then one name per line, and warns ` !     There are no postgres
services` when there is none (common-functions service_list); `postgres:export NAME` writes `pg_dump -Fc` to
stdout, `postgres:import NAME` runs pg_restore on stdin (functions service_export/service_import); redis:export
writes the RDB file (`cat /data/dump.rdb`), whose first bytes are `REDIS`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyinfra.api import DeployError

import backup as backup_cli
from settings import BACKUP_METRICS, SettingsError, load_settings
from tasks import backup, ops

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery-staple-0123456789"
FAKE_RESTIC = r"""#!/bin/bash
echo "restic $*" >> "$FAKE_LOG"
echo "env RESTIC_PASSWORD_FILE=$RESTIC_PASSWORD_FILE" >> "$FAKE_LOG"
printf '%s' "$RESTIC_REPOSITORY" > "$FAKE_LOG.repository"
args=" $* "
# restic 0.17's messages and exit codes (075_scripting.rst): every command opens the repository first
[ "$FAKE_REPOSITORY" != wrong-password ] || { echo "Fatal: wrong password or no key found" >&2; exit 12; }
case "$args" in
  *" cat config "*) case "$FAKE_REPOSITORY" in
                     missing) echo "Fatal: repository does not exist: unable to open config file: stat config: no such file or directory" >&2; exit 10 ;;
                     missing-bucket) echo "Fatal: unable to open config file: Stat: The specified bucket does not exist" >&2; exit 1 ;;
                   esac ;;
  *" backup "*) echo '{"message_type":"status","percent_done":1}'
                echo '{"message_type":"summary","data_added":2048,"data_added_packed":1024,"snapshot_id":"ab12"}' ;;
  *" snapshots "*) echo "[{\"time\": \"$(date -u -d "@$FAKE_SNAPSHOT_TIME" +%FT%T.123456789Z)\", \"id\": \"ab12\"}]" ;;
  *" restore "*) target=${args#* --target }; target=${target%% *}; cp -a "$FAKE_SNAPSHOT/." "$target/" ;;
esac
"""
FAKE_DOKKU = r"""#!/bin/bash
printf '%q ' dokku "$@" >> "$FAKE_LOG"; echo >> "$FAKE_LOG"
case "$1" in
  postgres:list) echo "=====> postgres services"; [ -z "$FAKE_POSTGRES" ] || echo "$FAKE_POSTGRES" ;;
  postgres:create) mkdir -p "$FAKE_SERVICES/postgres/$2"; echo "Dsn: postgres://postgres:$4@dokku-postgres-$2" ;;
  postgres:import) cat > /dev/null ;;
  ps:report) if grep -qxF -- "$2" <<< "$FAKE_REPORT_FAILS"; then exit 1
             elif grep -qxF -- "$2" <<< "$FAKE_RUNNING"; then echo true; else echo false; fi ;;
  ps:rebuild) ! grep -qxF -- "$2" <<< "$FAKE_REBUILD_FAILS" ;;
  redis:list) if [ -n "$FAKE_REDIS_HANGS" ]; then echo cache1; else echo " !     There are no redis services" >&2; fi ;;
  redis:export) sleep 30 ;;  # the plugin's wait for a LASTSAVE that never changes
  postgres:export) head -c "$FAKE_DUMP_BYTES" /dev/zero | sed 's/^/PGDMP/' ;;
  *) exit 1 ;;
esac
"""
FAKE_PG_RESTORE = '#!/bin/bash\n[ "$(head -c 5 "$2")" = PGDMP ]\n'


@pytest.fixture
def job(tmp_path, request):
    """Run the rendered job with the stand-ins; returns run(command, **env) -> CompletedProcess. Indirect
    parametrization overrides the repository (a string) or the template's values (a dict)."""
    param = getattr(request, "param", {})
    values = {"repository": "sftp://u1@box:23/mindroom/dokku-1", "kind": "sftp", "has_ca_cert": False,
              **({"repository": param} if isinstance(param, str) else param)}
    bin_dir, config = tmp_path / "bin", tmp_path / "etc"
    for directory in (bin_dir, config):
        directory.mkdir()
    for name, text in (("restic", FAKE_RESTIC), ("dokku", FAKE_DOKKU), ("pg_restore", FAKE_PG_RESTORE)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (config / "password").write_text(PASSWORD + "\n")
    mount = tmp_path / "mnt"
    (mount / "dokku-home").mkdir(parents=True)
    (mount / "dokku-home/app.txt").write_text("data")
    script = tmp_path / "mindroom-backup"
    script.write_text(ops.render(
        str(ROOT / "templates/backup/mindroom-backup.j2"), shell_quote=ops._q, config_dir=str(config),
        state_dir=str(tmp_path / "state"), host_name="dokku-1",
        paths=[str(mount), str(tmp_path / "missing")], excludes=[str(mount / "docker")],
        dumps_dir=str(mount / "dumps"), scratch_dir=str(mount / "scratch"), services_dir=str(mount / "services"),
        apps_dir=str(mount / "dokku-home"), dokku=True, dump_min_bytes=512, export_timeout_seconds=1,
        max_snapshot_age_hours=26, metrics_path=str(tmp_path / "backup.prom"),
        metrics=BACKUP_METRICS, retention=backup.retention({"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6}),
        has_healthcheck=False, restart_commands=[], **values))
    snapshot = tmp_path / "snapshot"

    def run(command: str | list[str], dump_bytes: int = 4096, snapshot_age: float = 3600,
            redis_hangs: bool = False, repository: str = "", postgres: str = "db1", running: str = "",
            rebuild_fails: str = "", report_fails: str = "") -> subprocess.CompletedProcess:
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(tmp_path / "log"),
               "FAKE_REDIS_HANGS": "yes" if redis_hangs else "", "FAKE_REPOSITORY": repository,
               "FAKE_DUMP_BYTES": str(dump_bytes), "FAKE_SNAPSHOT": str(snapshot),
               "FAKE_SNAPSHOT_TIME": str(int(time.time() - snapshot_age)), "FAKE_POSTGRES": postgres,
               "FAKE_SERVICES": str(mount / "services"), "FAKE_RUNNING": running, "FAKE_REBUILD_FAILS": rebuild_fails,
               "FAKE_REPORT_FAILS": report_fails}
        argv = command.split() if isinstance(command, str) else command
        return subprocess.run(["bash", str(script), *argv], env=env, capture_output=True, text=True, cwd=tmp_path)

    run.log = tmp_path / "log"
    run.metrics = tmp_path / "backup.prom"
    run.state = tmp_path / "state"
    run.snapshot = snapshot
    run.mount = mount
    return run


def test_an_export_that_hangs_fails_the_run_instead_of_waiting_for_good(job):
    began = time.monotonic()
    done = job("run", redis_hangs=True)
    assert time.monotonic() - began < 20, "the export's timeout (1 s here) ended the wait"
    assert done.returncode == 1
    assert "mindroom-backup: error: dokku redis:export cache1 failed (or ran over 1 s)" in done.stderr
    assert " backup " not in job.log.read_text(), "no snapshot without every dump"


def _metrics(path: Path) -> dict[str, str]:
    return dict(line.split() for line in path.read_text().splitlines() if not line.startswith("#"))


def test_a_backup_dumps_first_then_snapshots_prunes_and_records_its_success(job):
    done = job("run")
    assert done.returncode == 0, done.stderr
    log = job.log.read_text()
    assert log.index("dokku postgres:export db1") < log.index("restic ") < log.index(" backup ")
    backup_line = next(line for line in log.splitlines() if " backup " in line)
    assert "--host dokku-1" in backup_line and "--one-file-system" in backup_line and "missing" not in backup_line
    assert "forget --host dokku-1 --prune --keep-daily 7 --keep-weekly 4 --keep-monthly 6" in log
    assert "sftp.args=-F" in log and PASSWORD not in log and PASSWORD not in done.stdout + done.stderr
    assert (job.mount / "dumps/postgres/db1.dump").stat().st_size > 4096
    assert _metrics(job.metrics)[BACKUP_METRICS["last_success"]] == job.state.joinpath("last-success").read_text().strip()
    assert json.loads((job.state / "last-backup.json").read_text())["data_added_packed"] == 1024


def test_a_missing_repository_is_made_and_any_other_error_stops_the_run_with_its_cause(job):
    """restic's doc/075_scripting.rst (v0.17.2): `cat config` exits 10 when the repository does not exist (since
    0.17.0; before, 1 with "Fatal: unable to open config file: ...", as restic 0.14 prints it), 1 or 12 for a wrong
    password ("Fatal: wrong password or no key found"); cmd/restic/global.go open(): another error reading the
    config file is "unable to open config file: ..." too (exit 1), an unreachable backend "unable to open repository
    at ...". internal/backend/s3/s3.go: a missing bucket is no IsNotExist (only NoSuchKey is), so it is that exit 1,
    and init (Create) makes the bucket. The job used to hide that error and run `init`, whose own failure named no
    cause."""
    def restic_commands() -> list[str]:  # "restic --retry-lock 2h -o sftp.args=-F PATH COMMAND ..."
        return [line.split()[6] for line in job.log.read_text().splitlines() if line.startswith("restic ")]

    for missing in ("missing", "missing-bucket"):
        assert job("run", repository=missing).returncode == 0
        assert restic_commands()[:3] == ["cat", "init", "backup"]
        job.log.unlink()
    done = job("run", repository="wrong-password")
    assert done.returncode == 1 and restic_commands() == ["cat"], "neither init nor backup"
    assert done.stderr.strip().splitlines()[-1] == ("mindroom-backup: error: restic cannot open the repository (exit "
                                                    "12): Fatal: wrong password or no key found")


def test_a_failed_restore_test_says_restics_cause_in_one_line(job):
    done = job("test", repository="wrong-password")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == ("mindroom-backup: error: restore test failed: restic check failed: "
                                                    "Fatal: wrong password or no key found")
    [verdict] = (job.state / "restore-test").read_text().splitlines()
    assert verdict.endswith(" failed restic check failed: Fatal: wrong password or no key found")
    assert _metrics(job.metrics)[BACKUP_METRICS["restore_test_success"]] == "0"


def test_a_dump_below_the_floor_fails_the_backup(job):
    done = job("run", dump_bytes=20)
    assert done.returncode == 1 and "no dump" in done.stderr
    assert " backup " not in job.log.read_text() and not (job.state / "last-success").exists()


def _snapshot_with_dump(job, dump: bytes) -> None:
    dumps = job.snapshot / str(job.mount).lstrip("/") / "dumps/postgres"
    dumps.mkdir(parents=True)
    (dumps / "db1.dump").write_bytes(dump)


def test_the_restore_test_passes_on_a_good_snapshot_and_fails_saying_why(job):
    _snapshot_with_dump(job, b"PGDMP" + b"x" * 1000)
    assert job("test").returncode == 0
    assert _metrics(job.metrics)[BACKUP_METRICS["restore_test_success"]] == "1"
    assert not (job.mount / "scratch").exists(), "the scratch directory is removed"
    failed = job("test", snapshot_age=27 * 3600)
    assert failed.returncode == 1 and "the newest snapshot is 27 h old" in failed.stderr
    assert _metrics(job.metrics)[BACKUP_METRICS["restore_test_success"]] == "0"
    (job.snapshot / str(job.mount).lstrip("/") / "dumps/postgres/db1.dump").write_bytes(b"PGDMP" + b"x" * 100)
    small = job("test")
    assert small.returncode == 1 and "db1.dump is 105 bytes (< 512)" in small.stderr
    assert job.state.joinpath("restore-test").read_text().split()[1:3] == ["failed", "db1.dump"]


def test_a_restore_refuses_a_host_with_data_of_its_own(job):
    assert job("run").returncode == 0
    refused = job("restore ab12cd34")
    assert refused.returncode == 3
    assert "made backups of its own" in refused.stderr and "Dokku services: db1" in refused.stderr
    assert " restore " not in job.log.read_text(), "nothing was restored"


HOSTILE_REPOSITORY = "sftp://u1@box/x'$(touch PWNED)`touch PWNED`;touch PWNED \\ \"$HOME\""


@pytest.mark.parametrize("job", [HOSTILE_REPOSITORY], indirect=True)
def test_a_value_reaches_restic_literally_whatever_it_holds(job, tmp_path):
    """The second check where a value lands: the script shell-quotes it (the settings refuse such a value first)."""
    assert job("snapshots").returncode == 0
    assert Path(f"{job.log}.repository").read_text() == HOSTILE_REPOSITORY
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()


S3_JOB = {"repository": "s3:https://10.213.0.1:9443/bucket/backups/dokku-1", "kind": "s3", "has_ca_cert": True}


@pytest.mark.parametrize("job", [S3_JOB], indirect=True)
def test_an_s3_job_loads_the_credentials_from_their_file_and_trusts_the_configured_ca(job, tmp_path):
    """restic reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from its environment (internal/backend/s3/config.go,
    v0.18.0) and takes --cacert FILE for the endpoint's CA (cmd/restic/global.go; v0.14.0 has the flag too, not yet
    $RESTIC_CACERT): the env file is sourced, the CA is an argument, neither secret is."""
    (tmp_path / "etc/s3.env").write_text("AWS_ACCESS_KEY_ID='AKIATESTBED0001'\nAWS_SECRET_ACCESS_KEY='s3cr3t/value'\n")
    (tmp_path / "bin/restic").write_text(FAKE_RESTIC.replace('echo "env RESTIC_PASSWORD_FILE',
                                                             'echo "env $AWS_ACCESS_KEY_ID:${#AWS_SECRET_ACCESS_KEY}'
                                                             ' RESTIC_PASSWORD_FILE'))
    assert job("snapshots").returncode == 0
    log = job.log.read_text()
    assert f"--cacert {tmp_path}/etc/ca.pem snapshots" in log and "env AKIATESTBED0001:12 " in log
    assert "s3cr3t" not in log and "sftp.args" not in log
    assert Path(f"{job.log}.repository").read_text() == S3_JOB["repository"]


def test_restore_test_time_wraps_past_midnight():
    assert backup.restore_test_time({"time": "22:30", "restore_test_hours": 3}) == "01:30"


@pytest.mark.parametrize("value, message", [
    ("sftp://u1@box/../etc", "BACKUP_REPOSITORY="),
    ("ftp://u1@box/x", "BACKUP_REPOSITORY="),
    ("s3:https://fsn1.your-objectstorage.com/bucket", "BACKUP_S3_ACCESS_KEY_ID and BACKUP_S3_SECRET_ACCESS_KEY"),
    ("sftp://u1@u1.your-storagebox.de:23/mindroom", "BACKUP_SSH_KNOWN_HOSTS_FILE is required"),
])
def test_bad_backup_settings_stop_with_one_line(tmp_path, value, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_settings({"DOMAIN": "mindroom.test", "SECRETS_DIR": str(tmp_path / "s"), "BACKUP_REPOSITORY": value},
                      cwd=tmp_path)


def test_backups_are_off_without_a_repository_and_backup_py_says_so(tmp_path, capsys):
    environ = {"DOMAIN": "mindroom.test", "SECRETS_DIR": str(tmp_path / "s"), "ENV_FILE": str(tmp_path / "none.env")}
    (tmp_path / "none.env").write_text("")
    assert load_settings(environ, cwd=tmp_path).backup() is None
    assert backup_cli.main(["now"], environ) == 1
    assert capsys.readouterr().err == "error: BACKUP_REPOSITORY is not set: backups are off (README: Backups)\n"


def test_the_repository_password_is_generated_once_and_kept_private(tmp_path):
    settings = {"password_file": str(tmp_path / "secrets" / "backup-password")}
    first = backup.repository_password(settings, "")
    assert len(first) >= 40 and backup.repository_password(settings, "") == first
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    assert Path(settings["password_file"]).stat().st_mode & 0o777 == 0o600
    assert backup.repository_password(settings, "given") == "given"


def test_a_storage_box_key_that_cannot_be_made_is_one_deploy_error_with_ssh_keygens_cause(tmp_path):
    (tmp_path / "secrets").mkdir(mode=0o700)
    (tmp_path / "secrets/backup-ssh-key").mkdir()  # in the way
    with pytest.raises(DeployError, match=r"ssh-keygen could not make the storage box key .*backup-ssh-key: .*"
                                          r"backup-ssh-key already exists"):
        backup.storage_box_key({"ssh_key_path": str(tmp_path / "secrets/backup-ssh-key"), "generate_ssh_key": True})


def test_restore_asks_and_an_unanswered_question_changes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(backup_cli, "_hosts", lambda settings: {"dokku-1": {}})
    monkeypatch.setattr(backup_cli, "snapshots", lambda data, name: [{"id": "ab12cd34", "short_id": "ab12cd34",
                                                                        "time": "2026-12-02T03:00:00Z"}])
    monkeypatch.setattr(backup_cli.lock, "hold", lambda *args: pytest.fail("the lock is taken only after the answer"))
    monkeypatch.setattr("builtins.input", lambda prompt: (_ for _ in ()).throw(EOFError))
    (tmp_path / "none.env").write_text("")
    environ = {"DOMAIN": "mindroom.test", "ENV_FILE": str(tmp_path / "none.env"), "SECRETS_DIR": str(tmp_path / "s")}
    assert backup_cli.main(["restore", "dokku-1"], environ) == 1
    assert capsys.readouterr().err.endswith("restore cancelled; nothing was changed (pass --yes to restore without "
                                             "asking)\n")


# -- backup.py's failures, each one line on stderr (the real CLI, ssh on PATH replaced where said) ------------
def cli_env(tmp_path: Path, ssh: str | None = None, outputs: bool = True) -> dict[str, str]:
    """Settings with backups on and an outputs file of one Dokku server on loopback; `ssh`: a bash script run as
    ssh (PATH)."""
    known = tmp_path / "box.known_hosts"
    known.write_text("[box]:23 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\n")
    (tmp_path / "none.env").write_text("")
    if outputs:
        (tmp_path / "outputs.json").write_text(json.dumps({"environment": "production", "servers": [
            {"name": "dokku-1", "role": "dokku", "ipv4": "127.0.0.1", "private_ip": "10.0.1.10"}]}))
    path = os.environ["PATH"]
    if ssh:
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin/ssh").write_text(f"#!/bin/bash\n{ssh}\n")
        (tmp_path / "bin/ssh").chmod(0o755)
        path = f"{tmp_path / 'bin'}:{path}"
    return {"PATH": path, "DOMAIN": "mindroom.test", "ENV_FILE": str(tmp_path / "none.env"),
            "SECRETS_DIR": str(tmp_path / "secrets"), "BACKUP_REPOSITORY": "sftp://u1@box:23/mindroom",
            "BACKUP_SSH_KNOWN_HOSTS_FILE": str(known), "OUTPUTS_FILE": str(tmp_path / "outputs.json"),
            "SSH_PRIVATE_KEY_PATH": str(tmp_path / "id_ed25519"), "SSH_KNOWN_HOSTS_FILE": str(tmp_path / "known_hosts"),
            "SSH_STRICT_HOST_KEY_CHECKING": "yes"}


def backup_py(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "backup.py", *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("error: "), line
    return line


def test_a_missing_outputs_file_is_one_line(tmp_path):
    for command in ("now", "list", "check"):
        line = one_error_line(backup_py(cli_env(tmp_path, outputs=False), command))
        assert "OUTPUTS_FILE=" in line and "does not exist; run `python bootstrap.py apply` first" in line


def test_an_unreachable_host_is_one_line_that_says_so(tmp_path):
    """The real ssh, sent to a closed port on loopback: its own message is kept (the cause), exit 255."""
    env = cli_env(tmp_path, ssh='exec /usr/bin/ssh -p 1 "$@"')
    done = backup_py(env, "now")
    assert one_error_line(done) == ("error: backup failed on dokku-1; not reached over SSH: dokku-1; the output is "
                                    "above")
    assert done.stdout.startswith("dokku-1: backup FAILED\n") and "port 1: Connection refused" in done.stdout
    line = one_error_line(backup_py(env, "list"))
    assert line.startswith("error: could not list the snapshots of dokku-1: ") and "Connection refused" in line


@pytest.mark.parametrize("host", ["$(touch pwned)", "dokku-1\nmindroom-backup restore", "../dokku-1", "", "x" * 500])
def test_a_host_not_in_the_inventory_is_one_line_and_reaches_nothing(tmp_path, host):
    env = cli_env(tmp_path, ssh=f"touch {tmp_path / 'ssh-ran'}")
    for argv in (["now", host], ["list", host], ["restore", host, "--yes"]):
        line = one_error_line(backup_py(env, *argv))
        assert line.startswith("error: unknown host ") and line.endswith("; the inventory's hosts: dokku-1"), line
    assert not (tmp_path / "ssh-ran").exists() and not (ROOT / "pwned").exists()


def test_no_ssh_client_is_one_line(tmp_path):
    env = {**cli_env(tmp_path), "PATH": str(tmp_path)}  # a directory without ssh
    assert one_error_line(backup_py(env, "now")) == "error: cannot run ssh (No such file or directory); install the " \
                                                   "OpenSSH client"


def test_list_reads_restics_json_past_its_warnings(tmp_path):
    listed = '[{"time": "2026-12-02T03:04:05.123Z", "id": "ab12cd34ef", "short_id": "ab12cd34", "summary": ' \
             '{"total_bytes_processed": 2048, "data_added_packed": 1024}}]'
    env = cli_env(tmp_path, ssh=f"echo 'unable to open cache: mkdir /var/cache/x: permission denied'; echo '{listed}'")
    done = backup_py(env, "list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split() == ["dokku-1", "ab12cd34", "2026-12-02", "03:04:05", "2.0", "KiB",
                                                   "1.0", "KiB"]


def test_a_failed_job_names_its_unit_journal(tmp_path):
    env = cli_env(tmp_path, ssh="echo 'mindroom-backup: error: restic backup failed'; exit 1")
    done = backup_py(env, "check")
    assert one_error_line(done) == ("error: restore test failed on dokku-1; the job failed on dokku-1 (journalctl -u "
                                    "the unit there); the output is above")
    assert "  mindroom-backup: error: restic backup failed" in done.stdout


def test_ctrl_c_while_a_host_runs_its_job_is_one_line(tmp_path):
    started = tmp_path / "started"
    env = cli_env(tmp_path, ssh=f"touch {started}; exec sleep 60")
    run = subprocess.Popen([sys.executable, "backup.py", "now"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(run.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole foreground group, ssh too
        out, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == 1 and "Traceback" not in err, err
    assert err == "error: interrupted; a job already started on a host runs to its end\n"


# -- the restore on a Dokku server: services as they were, the apps that ran ----------------------------------
# Facts (dokku-postgres 1.48.0 and dokku-redis 1.43.0, the same common-functions): service_create writes PASSWORD
# (-p), and service_commit_config ENV (-C, `echo "$custom_env" | tr ';' "\n"`), CONFIG_OPTIONS (-c), SERVICE_MEMORY
# (-m), SHM_SIZE (-s), IMAGE (-i), IMAGE_VERSION (-I); the networks (-N, -P, -S) are properties in
# /var/lib/dokku/config/PLUGIN/NAME; neither create writes ROOTPASSWORD (-r is parsed, unused). service_create ends
# with service_info, which prints the DSN with the password.
SERVICE_FILES = {"PASSWORD": "pa ss'$(touch PWNED)`touch PWNED`\n", "IMAGE": "postgres\n", "IMAGE_VERSION": "17.2\n",
                 "CONFIG_OPTIONS": "-c max_connections=20\n", "ENV": "A=1\nB=two words\n\n", "SERVICE_MEMORY": "512\n",
                 "SHM_SIZE": "256m\n", "LINKS": "web\n", "ID": "cid\n", "DATABASE_NAME": "db1\n"}


def _restorable_snapshot(job, dump_names=("db1",), running="web\n", apps=("web", "suspended")) -> Path:
    base = job.snapshot / str(job.mount).lstrip("/")
    (base / "dumps/postgres").mkdir(parents=True)
    for name in dump_names:
        (base / "dumps/postgres" / f"{name}.dump").write_bytes(b"PGDMP" + b"x" * 1000)
        service = base / "services/postgres" / name
        service.mkdir(parents=True)
        for file, text in SERVICE_FILES.items():
            (service / file).write_text(text)
    if running is not None:
        (base / "dumps/apps-running").write_text(running)
    for app in apps:
        (base / "dokku-home" / app).mkdir(parents=True)
    return base


def _dokku_calls(job, command: str) -> list[list[str]]:
    return [shlex.split(line)[1:] for line in job.log.read_text().splitlines()
            if line.startswith(f"dokku {command} ")]


def test_a_backup_records_the_apps_that_run(job):
    for app in ("web", "suspended", "Not-an-app", ".hidden"):
        (job.mount / "dokku-home" / app).mkdir()
    assert job("run", running="web").returncode == 0
    assert (job.mount / "dumps/apps-running").read_text() == "web\n"
    assert [call[1:] for call in _dokku_calls(job, "ps:report")] == [["suspended", "--running"], ["web", "--running"]]


def test_an_app_dokku_cannot_report_on_does_not_cost_the_backup(job):
    for app in ("web", "broken", "suspended"):
        (job.mount / "dokku-home" / app).mkdir()
    done = job("run", running="web", report_fails="broken")
    assert done.returncode == 0, done.stderr
    assert " backup " in job.log.read_text(), "the snapshot was taken"
    assert (job.mount / "dumps/apps-running").read_text() == "broken\nweb\n", "rebuilt on restore, as if it ran"
    assert "warning: dokku ps:report broken --running failed" in done.stderr


def test_a_restore_creates_each_service_as_it_was_and_rebuilds_only_the_apps_that_ran(job, tmp_path):
    _restorable_snapshot(job)
    done = job("restore ab12cd34", postgres="", running="")
    assert done.returncode == 0, done.stderr
    [create] = _dokku_calls(job, "postgres:create")
    password = SERVICE_FILES["PASSWORD"].strip()
    assert create == ["postgres:create", "db1", "--password", password, "--image", "postgres", "--image-version",
                      "17.2", "--config-options", "-c max_connections=20", "--custom-env", "A=1;B=two words",
                      "--memory", "512", "--shm-size", "256m"]
    assert password not in done.stdout + done.stderr, "create's output (the DSN) stays out of the log"
    assert (job.mount / "services/postgres/db1/LINKS").read_text() == "web\n"
    assert _dokku_calls(job, "ps:rebuild") == [["ps:rebuild", "web"]], "not the suspended app, not --all"
    assert not _dokku_calls(job, "ps:restart")
    assert (job.mount / "dokku-home/suspended").is_dir() and not list(tmp_path.rglob("PWNED"))


def test_a_service_that_exists_already_is_not_created_again_matched_literally(job):
    _restorable_snapshot(job, dump_names=("db.",))
    assert job("restore ab12cd34 --overwrite", postgres="dbX").returncode == 0  # `grep -qx db.` matched dbX
    assert [call[1] for call in _dokku_calls(job, "postgres:create")] == ["db."]
    job.log.unlink()
    assert job("restore ab12cd34 --overwrite", postgres="db.").returncode == 0
    assert not _dokku_calls(job, "postgres:create")


def test_an_app_that_cannot_be_rebuilt_fails_the_restore_saying_what_to_do(job):
    _restorable_snapshot(job, running="web\nother\n", apps=("web", "other"))
    done = job("restore ab12cd34", postgres="", rebuild_fails="web")
    assert done.returncode == 1
    assert [call[1] for call in _dokku_calls(job, "ps:rebuild")] == ["web", "other"], "every app is tried"
    assert done.stderr.strip().splitlines()[-1] == (
        "mindroom-backup: error: could not rebuild app(s) web (their data is back): deploy each again (git push, "
        "or dokku git:from-image APP IMAGE), then dokku ps:rebuild APP")


def test_a_snapshot_without_the_running_apps_starts_none(job):
    _restorable_snapshot(job, running=None)
    done = job("restore ab12cd34", postgres="")
    assert done.returncode == 0 and "does not say which apps ran: none was started" in done.stdout
    assert not _dokku_calls(job, "ps:rebuild")


@pytest.mark.parametrize("name", ["$(touch PWNED)", "../web", "-rf", "Web", "web;touch PWNED", ""])
def test_a_hostile_app_name_in_the_snapshot_reaches_no_command(job, tmp_path, name):
    _restorable_snapshot(job, running=f"{name}\n")
    assert job("restore ab12cd34", postgres="").returncode == 0
    assert not _dokku_calls(job, "ps:rebuild") and not list(tmp_path.rglob("PWNED"))


@pytest.mark.parametrize("argv", [["restore", "ab12cd34; touch PWNED"], ["restore", "--target=/"],
                                  ["restore", "ab12cd34", "--overwrite; touch PWNED"], ["restore", "$(touch PWNED)"]])
def test_the_job_refuses_a_hostile_snapshot_or_option(job, tmp_path, argv):
    done = job(argv, postgres="")
    assert done.returncode == 1 and "mindroom-backup: error: " in done.stderr
    assert " restore " not in (job.log.read_text() if job.log.exists() else "") and not list(tmp_path.rglob("PWNED"))


def test_the_platform_restore_checks_nginx_and_starts_compose_as_the_deploy_does():
    from types import SimpleNamespace
    from tasks.platform import compose_up_command

    data = SimpleNamespace(backup_dokku=False, platform_dir="/opt/plat form", platform_compose_wait_seconds=180)
    commands = backup.restart_commands(data)
    assert commands == ["nginx -t -q", "systemctl reload nginx",
                        compose_up_command("/opt/plat form/compose.yaml", "/opt/plat form/.env", 180)]
    assert "'/opt/plat form/compose.yaml'" in commands[2]
    assert "--remove-orphans --wait --wait-timeout 180" in commands[2]
    assert backup.restart_commands(SimpleNamespace(backup_dokku=True)) == []


@pytest.mark.parametrize("snapshot_id", ["ab12cd34; touch PWNED", "$(touch PWNED)", "--target=/", "ab12"])
def test_restore_refuses_a_listed_snapshot_id_that_is_not_restics(tmp_path, snapshot_id):
    """The listing is the host's answer: an ID that is not restic's never reaches a command line."""
    listed = json.dumps([{"time": "2026-12-02T03:04:05Z", "id": snapshot_id, "short_id": "ab12cd34"}])
    env = cli_env(tmp_path, ssh=f"case \"$*\" in *snapshots*) echo {shlex.quote(listed)} ;; "
                                f"*) touch {tmp_path / 'restored'} ;; esac")
    line = one_error_line(backup_py(env, "restore", "dokku-1", "--yes"))
    assert line.startswith("error: dokku-1 listed a snapshot whose ID is not restic's")
    assert "nothing was changed" in line
    assert not (tmp_path / "restored").exists() and not (ROOT / "PWNED").exists()


def test_restore_sends_the_snapshot_id_quoted(monkeypatch, tmp_path):
    sent = []
    monkeypatch.setattr(backup_cli, "_hosts", lambda settings: {"dokku-1": {}})
    monkeypatch.setattr(backup_cli, "snapshots", lambda data, name: [
        {"id": "ab12cd34ef", "short_id": "ab12cd34", "time": "2026-12-02T03:00:00Z"}])
    monkeypatch.setattr(backup_cli, "connect", lambda settings: None)
    monkeypatch.setattr(backup_cli.lock, "hold", lambda *args: contextlib.nullcontext())
    monkeypatch.setattr(backup_cli, "_run", lambda data, command, stream=False: sent.append(command) or
                        subprocess.CompletedProcess([], 0, ""))
    (tmp_path / "none.env").write_text("")
    environ = {"DOMAIN": "mindroom.test", "ENV_FILE": str(tmp_path / "none.env"), "SECRETS_DIR": str(tmp_path / "s")}
    assert backup_cli.main(["restore", "dokku-1", "--yes", "--overwrite"], environ) == 0
    assert sent == [f"{backup_cli.SCRIPT} restore ab12cd34ef --overwrite"]


# Where a Dokku service's password is on a command line, each checked in the plugins' source: the restore's own
# create, and the plugins' commands (the README says so plainly).
PASSWORD_ON_COMMAND_LINES = {
    "dokku postgres:create NAME --password PASSWORD (the restore's; the plugins take a password no other way)":
        "dokku-postgres 1.48.0 subcommands/create `#F -p|--password`, common-functions service_parse_args (getopts p:)",
    "docker container create --env=POSTGRES_PASSWORD=$PASSWORD":
        "dokku-postgres 1.48.0 functions service_create_container (DOCKER_ARGS+=)",
    "docker container exec ... env PGPASSWORD=\"$PASSWORD\" pg_dump / pg_restore":
        "dokku-postgres 1.48.0 functions service_export, service_import",
    "redis-cli -a \"$PASSWORD\" (connect), bash -c \"echo LASTSAVE | redis-cli -a ${PASSWORD}\" (export)":
        "dokku-redis 1.43.0 functions service_connect, service_export",
}


def test_the_readme_says_the_service_password_passes_a_command_line_on_restore():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "**A service's password does pass a command line, briefly**" in readme
    for said in ("`dokku postgres:create NAME --password ...`", "--env=POSTGRES_PASSWORD=", "env PGPASSWORD=",
                 "`redis-cli -a ...`", "dokku-postgres 1.48.0 `functions`", "dokku-redis 1.43.0 `functions`"):
        assert said in readme, said
    for source in PASSWORD_ON_COMMAND_LINES.values():  # the README names the plugin and tag each fact is from
        plugin_and_tag = " ".join(source.split()[:2])
        assert plugin_and_tag in readme, plugin_and_tag
    job = (ROOT / "templates/backup/mindroom-backup.j2").read_text()
    assert "PASSWORD:--password" in job


# The custom-format archive version pg_dump writes, by PostgreSQL major (postgres/postgres
# src/bin/pg_dump/pg_backup_archiver.h, K_VERS_SELF): 16 added 1.15 (compression_algorithm), 17 added 1.16 (BLOB
# METADATA, relkind), 18 still writes 1.16 (its statistics entries, REQ_STATS, came without a new version; an 18.1
# dump is "unsupported version (1.16)" to pg_restore 16: CBBIO/FANTASIA#57). pg_restore reads up to K_VERS_MAX, its
# own major.minor with any revision.
PG_DUMP_ARCHIVE_VERSION = {16: (1, 15), 17: (1, 16), 18: (1, 16)}


def test_the_hosts_pg_restore_reads_dumps_of_the_plugins_default_postgres():
    """The backup's check (`pg_restore --list`, Debian's postgresql-client on the host) runs on dumps that pg_dump
    of the service's image writes (the plugin's default image version, as the stand-in has it)."""
    standin = (ROOT / "tests/testbed/dokku_standin/dokku").read_text()
    image_major = int(re.search(r'POSTGRES = ServicePlugin\("postgres", "Postgres", "postgres", "([0-9]+)\.',
                                standin)[1])
    host_major = int(re.search(r'PG_BIN = Path\("/usr/lib/postgresql/([0-9]+)/bin"\)', standin)[1])
    assert image_major in PG_DUMP_ARCHIVE_VERSION, "a new postgres major: read its pg_backup_archiver.h, add it here"
    assert PG_DUMP_ARCHIVE_VERSION[image_major] <= PG_DUMP_ARCHIVE_VERSION[host_major], \
        f"pg_restore {host_major} cannot read the dumps of postgres {image_major}"
