"""Data of the platform host (group `platform`): its packages, paths and which settings each service reads.

Secrets are not here: tasks read them from the settings module at deploy time, so they never sit in host data.
"""

from settings import MOUNT_POINTS, PLATFORM_DIR, PUBLIC_PORTS, SWAP_SIZE_MB, load_settings

_settings = load_settings()

# Role values for the shared base, volume and docker tasks.
public_ports = list(PUBLIC_PORTS["platform"])
swap_size_mb = SWAP_SIZE_MB["platform"]
mount_point = MOUNT_POINTS["platform"]
sysctl_extra = {"net.ipv4.tcp_tw_reuse": "1"}

# Beyond the base packages (SPEC: certbot, postgresql-client, redis-tools, jq; Docker comes from tasks/docker.py).
platform_packages = ["nginx", "certbot", "postgresql-client", "redis-tools", "jq", "curl", "openssl", "apache2-utils"]

platform_dir = PLATFORM_DIR
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
nginx_sites = ["landing", "app", "admin", "api"]
nginx_landing_root = "/var/www/landing"
nginx_acme_root = "/var/www/letsencrypt"
nginx_htpasswd = "/etc/nginx/.htpasswd"
nginx_admin_user = "admin"
nginx_api_max_body_size = "10m"

# TLS (certbot, HTTP-01 through the webroot above)
tls_ca_bundle_path = "/etc/letsencrypt/acme-ca.pem"
