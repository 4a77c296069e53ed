"""Data of the Dokku hosts (group `dokku`): role values from the settings module, Dokku's pinned versions."""

import sys

from settings import (
    DOKKU_DEPLOY_USER, DOKKU_PLUGINS, DOKKU_PROVISIONER_KEY_NAME, MOUNT_POINTS, PUBLIC_PORTS, SWAP_SIZE_MB,
    SettingsError, load_settings,
)

try:
    settings = load_settings()
    provisioner_public_key = settings.provisioner_public_key()  # dokku-deploy's and Dokku's, never root's
    letsencrypt_email = settings.required("LETSENCRYPT_EMAIL", "Dokku's letsencrypt plugin registers with it")
    settings.required("DOKKU_APT_KEY_SHA256", "the deploy installs Dokku's apt key only with this checksum (.env.example)")
except SettingsError as error:
    sys.exit(f"error: {error}")

public_ports = list(PUBLIC_PORTS["dokku"])
swap_size_mb = SWAP_SIZE_MB["dokku"]
mount_point = MOUNT_POINTS["dokku"]
sysctl_extra = {"vm.max_map_count": "262144"}

dokku_version = settings.dokku_version
dokku_apt_repo_url = settings.dokku_apt_repo_url
dokku_apt_key_url = settings.dokku_apt_key_url
dokku_apt_key_sha256 = settings.dokku_apt_key_sha256  # the file at dokku_apt_key_url is pinned
dokku_apt_suite = settings.dokku_apt_suite
# Installed with dokku: its renewal job lives in dokku's crontab (Dokku Depends `cron | cron-daemon`), and Debian's
# buildx satisfies its `docker-buildx-plugin | moby-buildx | docker-buildx` (docker.io and docker-compose, its
# other Docker Depends, come from tasks/docker.py).
dokku_packages = ["cron", "docker-buildx"]
deploy_user = DOKKU_DEPLOY_USER
provisioner_key_name = DOKKU_PROVISIONER_KEY_NAME
dokku_plugins = DOKKU_PLUGINS  # pinned release tags (settings.DOKKU_PLUGINS)
# Global plugin properties (`dokku <plugin>:set --global <property> <value>`). No server-tokens: it is not an
# nginx:set key; Dokku's /etc/nginx/conf.d/dokku.conf has `server_tokens off;` already.
dokku_global_properties = {
    "nginx/client-max-body-size": "50m",
    "letsencrypt/email": letsencrypt_email,
    "letsencrypt/server": settings.acme_server,  # the ACME directory (the testbed points it at Pebble)
}

# Backups (tasks/backup.py): what a Dokku server's backup holds. The volume (apps: /home/dokku, the services'
# configuration; the dumps) without what is rebuilt (Docker's data-root) or dumped instead (the services' raw
# database files, copied while they change); Dokku's persistent storage and properties on the root disk.
backup_paths = [mount_point, "/var/lib/dokku/data/storage", "/var/lib/dokku/config"]
backup_excludes = [f"{mount_point}/docker", f"{mount_point}/dokku-services/*/*/data", f"{mount_point}/lost+found",
                   f"{mount_point}/mindroom-backup/scratch"]
backup_dumps_dir = f"{mount_point}/mindroom-backup/dumps"  # postgres/NAME.dump, redis/NAME.rdb, before each backup
backup_scratch_dir = f"{mount_point}/mindroom-backup/scratch"  # restore tests and restores unpack here
backup_services_dir = f"{mount_point}/dokku-services"  # not put back in place: the services are created anew
backup_apps_dir = "/home/dokku"  # DOKKU_ROOT: the apps, which a restore rebuilds (those that ran)
backup_dokku = True
