"""Data of the Dokku hosts (group `dokku`): role values from the settings module, Dokku's pinned versions."""

import sys

from settings import (
    DOKKU_DEPLOY_USER, DOKKU_PROVISIONER_KEY_NAME, MOUNT_POINTS, PUBLIC_PORTS, SWAP_SIZE_MB, SettingsError,
    load_settings, read_public_key,
)

try:
    settings = load_settings()
    provisioner_public_key = read_public_key(settings.dokku_provisioner_key_path, "DOKKU_PROVISIONER_KEY_PATH")
    letsencrypt_email = settings.required("LETSENCRYPT_EMAIL", "Dokku's letsencrypt plugin registers with it")
except SettingsError as error:
    sys.exit(f"error: {error}")

public_ports = list(PUBLIC_PORTS["dokku"])
swap_size_mb = SWAP_SIZE_MB["dokku"]
mount_point = MOUNT_POINTS["dokku"]
sysctl_extra = {"vm.max_map_count": "262144"}

dokku_version = settings.dokku_version
dokku_apt_repo_url = settings.dokku_apt_repo_url
dokku_apt_key_url = settings.dokku_apt_key_url
dokku_apt_suite = settings.dokku_apt_suite
dokku_packages = ["cron"]  # the letsencrypt plugin's renewal job lives in dokku's crontab
deploy_user = DOKKU_DEPLOY_USER
provisioner_key_name = DOKKU_PROVISIONER_KEY_NAME
# Plugins by name: the git URL `dokku plugin:install` fetches. Resource limits are Dokku's core `resource`
# plugin (`dokku resource:limit`), so nothing is installed for them.
dokku_plugins = {
    "postgres": "https://github.com/dokku/dokku-postgres.git",
    "redis": "https://github.com/dokku/dokku-redis.git",
    "letsencrypt": "https://github.com/dokku/dokku-letsencrypt.git",
}
# Global plugin properties (`dokku <plugin>:set --global <property> <value>`).
dokku_global_properties = {
    "nginx/server-tokens": "off",
    "nginx/client-max-body-size": "50m",
    "letsencrypt/email": letsencrypt_email,
    "letsencrypt/server": settings.acme_server,  # the ACME directory (the testbed points it at Pebble)
}
