"""Data every host gets. Values come from the settings module; nothing here is a literal of its own
except the host policy below (packages, kernel tuning), which is the same for every role."""

import sys

from settings import (
    HTTP_PORT, NODE_EXPORTER_PORT, NODE_EXPORTER_TEXTFILE_DIR, SSH_PORT, SUBNET_IP_RANGE, SettingsError, load_settings,
)

try:
    settings = load_settings()
    # SSH: only from the admins' networks and from the private network (the platform drives Dokku over it).
    ssh_allowed_from = [*settings.admin_ips, SUBNET_IP_RANGE]
    # root's authorized_keys holds exactly these (tasks/keys.py), so the key this deploy logs in with must be one.
    admin_public_keys = [key for _setting, key in settings.admin_public_keys()]
    settings.connecting_public_key()
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
