"""Backups with restic (Debian's package), off unless BACKUP_REPOSITORY is set (host data `backup`).

- Each host backs up to its own repository, <BACKUP_REPOSITORY>/<server name>: the role's paths (host data
  `backup_paths`, `backup_excludes`), on a Dokku server after a dump of every postgres and redis service
  (the plugins' `postgres:export` / `redis:export`), then forget + prune by the retention, then the health check
  ping.
  `mindroom-backup.timer` runs it daily (BACKUP_TIME, BACKUP_RANDOMIZED_DELAY); `mindroom-backup-test.timer`
  runs the restore test weekly. Both run /usr/local/sbin/mindroom-backup (templates/backup/mindroom-backup.j2),
  which also writes the metrics monitoring alerts on (settings.BACKUP_METRICS, node_exporter's textfile directory).
- Secrets live in /etc/mindroom-backup (root, 0700), each in a 0600 file written by ops.secret_file: the
  repository password (restic reads RESTIC_PASSWORD_FILE), the storage box key, the S3 credentials (an env file
  the script loads), the health check URL (a curl config file). None is ever on a command line or in a log.
  BACKUP_CA_CERT (s3, the testbed's stand-in) is uploaded beside them as ca.pem, for restic's --cacert; without
  it restic trusts the system's CAs (production: Hetzner's endpoint has a public certificate).
- The repository password and the storage box key are generated locally by the first deploy into SECRETS_DIR
  when BACKUP_PASSWORD / BACKUP_SSH_KEY_PATH are not set: without the password no backup can be read.
"""

from __future__ import annotations

import logging
import secrets
import shlex
import subprocess
from pathlib import Path

from pyinfra import host
from pyinfra.api import DeployError, deploy
from pyinfra.operations import systemd

from local_secrets import private_directory, write_atomically
from tasks import ops
from tasks.platform import compose_up_command

logger = logging.getLogger("pyinfra")
BACKUP = "templates/backup"  # the repository path pyinfra resolves from its working directory
SCRIPT = "/usr/local/sbin/mindroom-backup"
UNITS = ("mindroom-backup", "mindroom-backup-test")
TIMERS = [f"{unit}.timer" for unit in UNITS]


def _config(name: str) -> str:
    return f"{host.data.backup_config_dir}/{name}"


# -- the secrets kept locally ------------------------------------------------------------------------------
def repository_password(backup: dict, given: str) -> str:
    """BACKUP_PASSWORD, or the password kept in SECRETS_DIR (made on first use: 32 random bytes, URL-safe)."""
    if given:
        return given
    path = Path(backup["password_file"])
    if not path.is_file():
        private_directory(path.parent)
        write_atomically(path, secrets.token_urlsafe(32) + "\n")
        logger.warning(f"backup: generated the repository password in {path}; keep a copy off this machine: "
                       "without it no backup can be read")
    password = path.read_text().strip()
    if not password:
        raise DeployError(f"{path} is empty; put the repository password back (or delete the file for a new "
                          "repository)")
    return password


def storage_box_key(backup: dict) -> str:
    """The private key for the storage box: BACKUP_SSH_KEY_PATH, or SECRETS_DIR/backup-ssh-key (made once)."""
    path = Path(backup["ssh_key_path"])
    if backup["generate_ssh_key"] and not path.is_file():
        private_directory(path.parent)
        made = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mindroom-backup", "-f",
                               str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if made.returncode:
            raise DeployError(f"ssh-keygen could not make the storage box key {path}: "
                              f"{' '.join(made.stdout.split()) or f'exit {made.returncode}'}")
        logger.warning(f"backup: generated the storage box key {path}; add {path}.pub to the storage box: "
                       f"cat {path}.pub | ssh -p 23 <user>@<user>.your-storagebox.de install-ssh-key")
    return path.read_text()


# -- the deploy --------------------------------------------------------------------------------------------
@deploy("Backups")
def configure():
    data = host.data
    if not data.backup:
        timers_off()
        return
    ops.packages(name="Install restic", packages=data.backup_packages)
    secrets_files()
    script()  # read by the service at its next run: nothing to restart
    units = timer_units()
    ops.on_change(name="Reload systemd for the backup units", changes=units, operation=systemd.daemon_reload)
    ops.services(name="Run the backup timers", units=TIMERS)
    for timer, unit in zip(TIMERS, units[1::2]):
        ops.on_change(name=f"Restart {timer}", changes=[unit], operation=systemd.service, service=timer,
                      restarted=True)


@deploy("Backups: secrets")
def secrets_files():
    data, backup, secret = host.data, host.data.backup, host.data.backup_secrets
    ops.directory(name=f"Create {data.backup_config_dir}", path=data.backup_config_dir, mode="700")
    ops.directory(name=f"Create {data.backup_state_dir}", path=data.backup_state_dir, mode="700")
    ops.secret_file(name=f"Write {_config('password')}", dest=_config("password"),
                    content=repository_password(backup, secret["password"]) + "\n")
    sftp = backup["kind"] == "sftp"
    if sftp:
        ops.secret_file(name=f"Write {_config('ssh-key')}", dest=_config("ssh-key"), content=storage_box_key(backup))
        ops.template(name=f"Upload {_config('known_hosts')}", src=f"{BACKUP}/known_hosts.j2",
                     dest=_config("known_hosts"), mode="600", lines=backup["ssh_known_hosts"].splitlines())
        ops.template(name=f"Upload {_config('ssh_config')}", src=f"{BACKUP}/ssh_config.j2",
                     dest=_config("ssh_config"), mode="600", key_path=_config("ssh-key"),
                     known_hosts_path=_config("known_hosts"))
    else:
        ops.secret_file(name=f"Write {_config('s3.env')}", dest=_config("s3.env"), content=ops.render(
            f"{BACKUP}/s3.env.j2", shell_quote=shlex.quote, access_key_id=secret["s3_access_key_id"],
            secret_access_key=secret["s3_secret_access_key"]))
    if backup["ca_cert"]:
        ops.put(name=f"Upload the Object Storage endpoint's CA to {_config('ca.pem')}", src=backup["ca_cert"],
                dest=_config("ca.pem"), mode="600")
    for name, wanted in (("ssh-key", sftp), ("known_hosts", sftp), ("ssh_config", sftp), ("s3.env", not sftp),
                         ("ca.pem", bool(backup["ca_cert"]))):
        if not wanted:
            ops.absent(name=f"Remove {_config(name)}", path=_config(name))
    if secret["healthcheck_url"]:
        ops.secret_file(name=f"Write {_config('healthcheck.curl')}", dest=_config("healthcheck.curl"),
                        content=ops.render(f"{BACKUP}/healthcheck.curl.j2", url=secret["healthcheck_url"]))
    else:
        ops.absent(name=f"Remove {_config('healthcheck.curl')}", path=_config("healthcheck.curl"))


def retention(backup: dict) -> str:
    return (f"--keep-daily {int(backup['keep_daily'])} --keep-weekly {int(backup['keep_weekly'])} "
            f"--keep-monthly {int(backup['keep_monthly'])}")


def restart_commands(data) -> list[str]:
    """What a restore runs on the platform once its files are back: nginx's configuration checked (a reload of a
    broken one fails silently), nginx reloaded, the compose services up as the deploy starts them (healthy, or the
    restore fails)."""
    if data.backup_dokku:
        return []
    return ["nginx -t -q", "systemctl reload nginx", compose_up_command(
        f"{data.platform_dir}/compose.yaml", f"{data.platform_dir}/.env", data.platform_compose_wait_seconds)]


def script():
    data = host.data
    backup = data.backup
    return ops.template(
        name=f"Upload {SCRIPT}", src=f"{BACKUP}/mindroom-backup.j2", dest=SCRIPT, mode="755",
        validate="bash -n {path}", config_dir=data.backup_config_dir, state_dir=data.backup_state_dir,
        repository=f"{backup['repository'].rstrip('/')}/{data.server_name}", host_name=data.server_name,
        paths=data.backup_paths, excludes=data.backup_excludes, dumps_dir=data.backup_dumps_dir,
        scratch_dir=data.backup_scratch_dir, services_dir=data.backup_services_dir,
        apps_dir=data.backup_apps_dir, dokku=data.backup_dokku,
        dump_min_bytes=backup["dump_min_bytes"], export_timeout_seconds=backup["export_timeout_seconds"],
        max_snapshot_age_hours=backup["max_snapshot_age_hours"],
        metrics_path=data.backup_metrics_path, metrics=data.backup_metrics, kind=backup["kind"],
        retention=retention(backup), has_healthcheck=backup["has_healthcheck"], has_ca_cert=bool(backup["ca_cert"]),
        restart_commands=restart_commands(data))


def restore_test_time(backup: dict) -> str:
    """The weekly restore test starts restore_test_hours after the daily backup (HH:MM)."""
    hours, minutes = backup["time"].split(":")
    return f"{(int(hours) + int(backup['restore_test_hours'])) % 24:02d}:{minutes}"


@deploy("Backups: timers")
def timer_units() -> list:
    """mindroom-backup.service/.timer and mindroom-backup-test.service/.timer, in that order."""
    backup = host.data.backup
    times = {"mindroom-backup": dict(time=backup["time"]),
             "mindroom-backup-test": dict(time=restore_test_time(backup), day=backup["restore_test_day"])}
    units = []
    for unit in UNITS:
        for kind, values in (("service", dict(script=SCRIPT)),
                             ("timer", dict(randomized_delay=backup["randomized_delay"], **times[unit]))):
            units.append(ops.template(name=f"Upload /etc/systemd/system/{unit}.{kind}",
                                      src=f"{BACKUP}/{unit}.{kind}.j2",
                                      dest=f"/etc/systemd/system/{unit}.{kind}", mode="644", **values))
    return units


@deploy("Backups: off")
def timers_off():
    """BACKUP_REPOSITORY unset: the timers are removed (the configuration and the repository are left as they are)."""
    removed = [ops.absent(name=f"Remove /etc/systemd/system/{timer}", path=f"/etc/systemd/system/{timer}")
               for timer in TIMERS]
    for timer, unit in zip(TIMERS, removed):
        ops.on_change(name=f"Stop {timer}", changes=[unit], operation=systemd.service, service=timer, running=False)
    ops.on_change(name="Reload systemd without the backup timers", changes=removed, operation=systemd.daemon_reload)
