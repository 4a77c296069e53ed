"""Data every host gets. Values come from the settings module; nothing here is a literal of its own
except the host policy below (packages, kernel tuning), which is the same for every role."""

import sys

from settings import (
    BACKUP_DUMP_MIN_BYTES, BACKUP_EXPORT_TIMEOUT_SECONDS, BACKUP_MAX_SNAPSHOT_AGE_HOURS, BACKUP_METRICS,
    BACKUP_METRICS_FILE, BACKUP_RESTORE_TEST_DAY, BACKUP_RESTORE_TEST_HOURS, HTTP_PORT, NODE_EXPORTER_PORT,
    NODE_EXPORTER_TEXTFILE_DIR, SSH_PORT, SUBNET_IP_RANGE,
    SecretValues, SettingsError, load_settings,
)

try:
    settings = load_settings()
    # SSH: only from the admins' networks and from the private network (the platform drives Dokku over it).
    ssh_allowed_from = [*settings.admin_ips, SUBNET_IP_RANGE]
    # root's authorized_keys holds exactly these (tasks/keys.py), so the key this deploy logs in with must be one.
    admin_public_keys = [key for _setting, key in settings.admin_public_keys()]
    settings.connecting_public_key()
    _backup = settings.backup()
except SettingsError as error:
    sys.exit(f"error: {error}")

domain = settings.domain
environment = settings.environment
ssh_port = SSH_PORT
http_port = HTTP_PORT  # nginx's plain HTTP (the platform probes each Dokku server's)

# Base (tasks/base.py): an operator's tools and the firewall, fail2ban and nginx every host runs, plus what the
# tasks themselves use.
base_packages = [
    "curl", "git", "ufw", "fail2ban", "htop", "ncdu", "tmux", "wget", "gnupg", "nginx", "ca-certificates",
    "unattended-upgrades",  # security updates (templates/base/20auto-upgrades.j2)
    "python3-systemd",  # fail2ban's systemd backend: Debian 13 logs sshd to the journal only
    "e2fsprogs",  # mkfs.ext4 for the volume
    "sudo",
]
# Marker written by the first run's full upgrade; later runs leave upgrades to unattended-upgrades.
upgrade_marker = "/var/lib/mindroom-infra/first-upgrade"
swap_file = "/swapfile"
timezone = "Etc/UTC"
# Kernel tuning shared by both roles, for many concurrent connections (accept and SYN backlogs, outgoing ports);
# group files add role values in `sysctl_extra`.
sysctl = {
    "net.core.somaxconn": "65535",
    "net.ipv4.tcp_max_syn_backlog": "65535",
    "net.ipv4.ip_local_port_range": "1024 65535",
}
# What a container cannot set (vm.* is not namespaced): configured in the drop-in, applied on real hosts only.
sysctl_container_skip = ["vm."]

# Monitoring (tasks/monitoring.py): node_exporter on every host's private address, open to Prometheus on the
# platform's private IP only (ufw, tasks/base.py).
node_exporter_port = NODE_EXPORTER_PORT
node_exporter_textfile_dir = NODE_EXPORTER_TEXTFILE_DIR
prometheus_source_ip = settings.platform_private_ip

# Backups (tasks/backup.py): off (None) unless BACKUP_REPOSITORY is set. Each host backs up to its own repository,
# <BACKUP_REPOSITORY>/<server name>. The secrets are SecretValues, written by ops.secret_file into root-only 0600
# files; the repository password and the storage box key are generated locally by the first deploy when not given
# (tasks/backup.py), so loading group data writes nothing.
backup = None
if _backup:
    backup = {
        "repository": _backup.repository, "kind": _backup.kind, "time": _backup.time,
        "randomized_delay": _backup.randomized_delay, "restore_test_day": BACKUP_RESTORE_TEST_DAY,
        "restore_test_hours": BACKUP_RESTORE_TEST_HOURS, "keep_daily": _backup.keep_daily,
        "keep_weekly": _backup.keep_weekly, "keep_monthly": _backup.keep_monthly,
        "dump_min_bytes": BACKUP_DUMP_MIN_BYTES, "export_timeout_seconds": BACKUP_EXPORT_TIMEOUT_SECONDS,
        "max_snapshot_age_hours": BACKUP_MAX_SNAPSHOT_AGE_HOURS,
        "ssh_known_hosts": _backup.ssh_known_hosts, "has_healthcheck": bool(_backup.healthcheck_url),
        "password_file": str(_backup.password_file),
        "ssh_key_path": str(_backup.ssh_key_path or _backup.generated_ssh_key_path),
        "generate_ssh_key": _backup.kind == "sftp" and _backup.ssh_key_path is None,
        "ca_cert": _backup.ca_cert,
    }
backup_secrets = SecretValues({
    "password": _backup.password if _backup else "",
    "s3_access_key_id": _backup.s3_access_key_id if _backup else "",
    "s3_secret_access_key": _backup.s3_secret_access_key if _backup else "",
    "healthcheck_url": _backup.healthcheck_url if _backup else "",
})
backup_packages = ["restic", "postgresql-client"]  # pg_restore --list checks each postgres dump
backup_config_dir = "/etc/mindroom-backup"  # root 0700: the password, keys, credentials
backup_state_dir = "/var/lib/mindroom-backup"  # the last success, the last restore test, the last backup's summary
backup_metrics = BACKUP_METRICS
backup_metrics_path = f"{NODE_EXPORTER_TEXTFILE_DIR}/{BACKUP_METRICS_FILE}"
del _backup
