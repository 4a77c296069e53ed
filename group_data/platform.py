"""Data of the platform host (group `platform`): its packages, paths, which settings each service reads, and
the settings its tasks need (tasks/platform.py, nginx.py, tls.py read host data only).

Secrets are here too, wrapped in SecretValues (`platform_env`, `registry_login`): where pyinfra prints host
data (`--debug`, `debug-inventory`) they show as their keys only, and the tasks write them with
`ops.secret_file`, which never shows them. A missing or bad setting stops with one line.
"""

import dataclasses
import sys

from settings import (
    ALERTMANAGER_PORT, BACKUP_METRICS_FILE, BLACKBOX_EXPORTER_PORT, MOUNT_POINTS, PLATFORM_DIR,
    PLATFORM_SERVICES, PROMETHEUS_PORT, PUBLIC_PORTS, SSH_PORT, SWAP_SIZE_MB, SecretValues, SettingsError,
    load_settings,
)

try:
    _settings = load_settings()
    _secrets = _settings.platform_secrets()
    _hcloud_token = _settings.hcloud_token
    _monitoring = _settings.monitoring()
except SettingsError as error:
    sys.exit(f"error: {error}")

# Role values for the shared base, volume and docker tasks.
public_ports = list(PUBLIC_PORTS["platform"])
swap_size_mb = SWAP_SIZE_MB["platform"]
mount_point = MOUNT_POINTS["platform"]
sysctl_extra = {"net.ipv4.tcp_tw_reuse": "1"}

# Beyond the base packages: certbot (tasks/tls.py), the PostgreSQL and Redis clients, jq, openssl, apache2-utils;
# Docker comes from tasks/docker.py.
platform_packages = ["nginx", "certbot", "postgresql-client", "redis-tools", "jq", "curl", "openssl", "apache2-utils"]

platform_dir = PLATFORM_DIR
# The four services: name, host port, container port, health path (settings.PlatformService).
platform_services = list(PLATFORM_SERVICES)
platform_compose_project = "platform"
platform_docker_network = "platform"
platform_data_dir = MOUNT_POINTS["platform"]  # one folder per service
# The platform's key for Dokku (generated on the host once), and the Dokku hosts' SSH host keys for it.
platform_key_path = f"{PLATFORM_DIR}/dokku-ssh-key"
platform_known_hosts_path = f"{PLATFORM_DIR}/dokku-known-hosts"
platform_key_comment = f"mindroom-{_settings.environment}-platform"
# Name of the platform key in Dokku's ssh-keys; Dokku's SSH user.
platform_dokku_key_name = "platform"
dokku_ssh_user = "dokku"
# Where the provisioner container sees the key and known_hosts file.
provisioner_key_mount = "/run/secrets/dokku-ssh-key"
provisioner_known_hosts_mount = "/run/secrets/dokku-known-hosts"

# The .env keys each service reads. Compose hands a container only these, so a changed value recreates
# only the services listed with it (compose compares each service's resolved configuration).
_urls = ["NODE_ENV", "API_URL", "APP_URL", "ADMIN_URL", "WEBHOOK_URL"]
_prices = ["STRIPE_PRICE_STARTER", "STRIPE_PRICE_PROFESSIONAL", "STRIPE_PRICE_ENTERPRISE"]
platform_service_env = {
    "customer-portal": _urls + ["SUPABASE_URL", "STRIPE_PUBLISHABLE_KEY"] + _prices,
    "admin-dashboard": _urls + ["SUPABASE_URL", "SUPABASE_SERVICE_KEY"],
    "stripe-handler": _urls + ["SUPABASE_URL", "SUPABASE_SERVICE_KEY", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"]
    + _prices,
    "dokku-provisioner": _urls + ["SUPABASE_URL", "SUPABASE_SERVICE_KEY", "DOKKU_HOST", "DOKKU_HOSTS",
                                  "DOKKU_SSH_PORT", "DOKKU_USER", "HCLOUD_TOKEN", "REGISTRY", "REGISTRY_USER",
                                  "REGISTRY_TOKEN"],
}
# Health check command inside a container (busybox/alpine/debian images with wget); {port} and {path} filled in.
platform_healthcheck = "wget -q -O /dev/null http://127.0.0.1:{port}{path}"
# How long `docker compose up --wait` waits for the services to be healthy.
platform_compose_wait_seconds = 180

# nginx
nginx_landing_root = "/var/www/landing"
nginx_acme_root = "/var/www/letsencrypt"
nginx_htpasswd = "/etc/nginx/.htpasswd"
nginx_admin_user = "admin"
nginx_api_max_body_size = "10m"

# TLS (certbot, HTTP-01 through the webroot above)
tls_ca_bundle_path = "/etc/letsencrypt/acme-ca.pem"

# -- from the settings --------------------------------------------------------------------------------------
# Every key of /opt/platform/.env, in the file's order. DOKKU_HOST (dokku-1's private IP) and DOKKU_HOSTS (all
# of them) depend on the inventory's other hosts: tasks/platform.py fills them in from their host data
# (tasks/inventory_hosts.py).
platform_env = SecretValues({
    "NODE_ENV": "production",
    "API_URL": _settings.url("api"),
    "APP_URL": _settings.url("app"),
    "ADMIN_URL": _settings.url("admin"),
    "WEBHOOK_URL": _settings.url("webhooks"),
    # STRIPE_WEBHOOK_SECRET: the signing secret bootstrap apply kept in SECRETS_DIR, unless the setting is set.
    **{name: _secrets[name] for name in ["SUPABASE_URL", "SUPABASE_SERVICE_KEY", "STRIPE_SECRET_KEY",
                                          "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET", *_prices]},
    "DOKKU_HOST": "",
    "DOKKU_HOSTS": "",
    "DOKKU_SSH_PORT": str(SSH_PORT),
    "DOKKU_USER": dokku_ssh_user,
    "HCLOUD_TOKEN": _hcloud_token,
    **{name: _secrets[name] for name in ["REGISTRY", "REGISTRY_USER", "REGISTRY_TOKEN"]},
})
# The admin dashboard's basic-auth password is kept locally in SECRETS_DIR (checked private by the settings);
# the platform's nginx task makes it on its first run. Loading group data writes nothing.
nginx_admin_secrets_dir = str(_settings.secrets_dir)

registry = _secrets["REGISTRY"]  # compose's image prefix; the login (/root/.docker/config.json) is for it
registry_login = SecretValues({"user": _secrets["REGISTRY_USER"], "token": _secrets["REGISTRY_TOKEN"]})
registry_ca_cert = _settings.registry_ca_cert  # local path of the registry's CA, or "" (a public CA)
service_image_tag = _settings.service_image_tag
platform_hostnames = _settings.platform_hostnames()  # the certificate's names: DOMAIN, app., admin., api., webhooks.
acme_server = _settings.acme_server
acme_ca_bundle = _settings.acme_ca_bundle  # local path of the ACME server's CA (testbed only), or ""
letsencrypt_email = _secrets["LETSENCRYPT_EMAIL"]

# Monitoring (tasks/monitoring.py): Prometheus, Alertmanager and blackbox_exporter on loopback, thresholds and
# intervals from the settings. The webhook URL and SMTP password are secrets: Alertmanager reads them from 0600
# files (url_file, smtp_auth_password_file), never from its configuration.
monitoring = dataclasses.replace(_monitoring, webhook_url="", smtp_password="")
alert_secrets = SecretValues({"webhook_url": _monitoring.webhook_url, "smtp_password": _monitoring.smtp_password})
prometheus_port = PROMETHEUS_PORT
alertmanager_port = ALERTMANAGER_PORT
blackbox_exporter_port = BLACKBOX_EXPORTER_PORT
monitored_mount_points = ["/", *MOUNT_POINTS.values()]  # the disk alert's filesystems
# backup_metrics (group_data/all.py): written by the backup job to BACKUP_METRICS_FILE on each host (textfile)
backup_metrics_file = BACKUP_METRICS_FILE
# A platform service alert fires after this many container restarts within restart_window (restart: always
# hides a crash loop from /health between two crashes).
platform_restart_limit = 3
platform_restart_window = "15m"
# How long a failing probe (a service's /health, a platform name over HTTPS, a Dokku server's nginx) may last.
probe_failure_for = "2m"

# Backups (tasks/backup.py): the platform's settings and keys, its volume (without Docker's data-root), nginx and
# Let's Encrypt's state.
backup_paths = [PLATFORM_DIR, mount_point, "/etc/nginx", "/etc/letsencrypt"]
backup_excludes = [f"{mount_point}/docker", f"{mount_point}/lost+found", f"{mount_point}/mindroom-backup/scratch"]
backup_dumps_dir = f"{mount_point}/mindroom-backup/dumps"  # none on the platform (no database of its own)
backup_scratch_dir = f"{mount_point}/mindroom-backup/scratch"
backup_services_dir = ""
backup_apps_dir = ""
backup_dokku = False

# Plain secret values must not stay behind as host data (pyinfra keeps every non-dunder name).
del _secrets, _hcloud_token, _monitoring
