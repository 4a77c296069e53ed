"""The single source of truth: every setting, name, address, port and size of the platform.

Values come from the environment, then from the dotenv file (ENV_FILE, default ./.env); real environment
variables win. Everything else (bootstrap.py, inventory.py, group_data/, tasks/) asks this module and repeats
no literal. Bad values raise SettingsError with one line that names the setting and what is allowed.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from collections.abc import Mapping

from dotenv import dotenv_values

PROJECT = "mindroom"
MANAGED_BY = "mindroom-infra"
PRODUCTION_HCLOUD_ENDPOINT = "https://api.hetzner.cloud/v1"
LETSENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING_DIRECTORY = "https://acme-staging-v02.api.letsencrypt.org/directory"

# Private network (SPEC: 10.0.0.0/16, one cloud subnet 10.0.1.0/24 in eu-central).
NETWORK_IP_RANGE = "10.0.0.0/16"
SUBNET_IP_RANGE = "10.0.1.0/24"
NETWORK_ZONE = "eu-central"
DOKKU_FIRST_HOST_OCTET = 10  # dokku-1 = 10.0.1.10, dokku-2 = 10.0.1.11, ...
PLATFORM_HOST_OCTET = 20
MAX_DOKKU_SERVERS = PLATFORM_HOST_OCTET - DOKKU_FIRST_HOST_OCTET

SSH_PORT = 22
HTTP_PORT = 80
HTTPS_PORT = 443
MATRIX_FEDERATION_PORT = 8448
# Public ports per role; SSH is added separately, and only from ADMIN_IPS.
PUBLIC_PORTS = {
    "dokku": (HTTP_PORT, HTTPS_PORT, MATRIX_FEDERATION_PORT),
    "platform": (HTTP_PORT, HTTPS_PORT),
}
ROLES = ("dokku", "platform")
ANYWHERE = ("0.0.0.0/0", "::/0")  # source of the public ports' firewall rules

MOUNT_POINTS = {"dokku": "/mnt/dokku-data", "platform": "/mnt/platform-data"}
SWAP_SIZE_MB = {"dokku": 4096, "platform": 2048}
HCLOUD_VOLUME_DEVICE_PREFIX = "/dev/disk/by-id/scsi-0HC_Volume_"

# The platform's four services: (name, host port, container port, health path or None).
PLATFORM_DIR = "/opt/platform"


@dataclass(frozen=True)
class PlatformService:
    name: str
    host_port: int
    container_port: int
    health_path: str | None


PLATFORM_SERVICES = (
    PlatformService("customer-portal", 3000, 3000, None),
    PlatformService("admin-dashboard", 3001, 80, None),
    PlatformService("stripe-handler", 3002, 3005, "/health"),
    PlatformService("dokku-provisioner", 3003, 8002, "/health"),
)
PLATFORM_SUBDOMAINS = ("app", "admin", "api", "webhooks")

DOKKU_DEPLOY_USER = "dokku-deploy"
DOKKU_PROVISIONER_KEY_NAME = "provisioner"


class SecretValues(Mapping):
    """Secret values for the tasks, readable by key but hidden wherever pyinfra prints host data
    (`--debug`, `debug-inventory`, `--json`): its repr and JSON form name only the keys."""

    def __init__(self, values: Mapping[str, str]):
        self._values = dict(values)

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<secret values: {', '.join(self._values)}>"

    to_json = __repr__


class SettingsError(Exception):
    """A setting is missing or invalid; str(error) is the one line to show the user."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")
_ENVIRONMENT_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")
_VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
_PUBLIC_KEY_RE = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( .*)?$")
_SECRET_NAMES = (
    "HCLOUD_TOKEN",
    "SUPABASE_SERVICE_KEY",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "REGISTRY_TOKEN",
)
# Settings that the platform's .env needs; checked when a deploy asks for them, not by bootstrap.
PLATFORM_SECRET_NAMES = (
    "SUPABASE_URL",
    "SUPABASE_SERVICE_KEY",
    "STRIPE_SECRET_KEY",
    "STRIPE_PUBLISHABLE_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_PRICE_STARTER",
    "STRIPE_PRICE_PROFESSIONAL",
    "STRIPE_PRICE_ENTERPRISE",
    "REGISTRY",
    "REGISTRY_USER",
    "REGISTRY_TOKEN",
    "LETSENCRYPT_EMAIL",
)


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean; use true or false")


def _int(name: str, raw: str, low: int, high: int, kind: type = int) -> int:
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise SettingsError(f"{name}={raw!r} is not {what}; allowed: {low} to {high}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} is out of range; allowed: {low} to {high}")
    return value


def _match(name: str, raw: str, pattern: re.Pattern, allowed: str) -> str:
    if not pattern.match(raw):
        raise SettingsError(f"{name}={raw!r} is invalid; allowed: {allowed}")
    return raw


def _admin_networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if not parts:
        raise SettingsError("ADMIN_IPS is required: comma-separated CIDRs allowed to reach SSH, e.g. 203.0.113.7/32")
    networks = []
    for part in parts:
        try:
            network = ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise SettingsError(f"ADMIN_IPS entry {part!r} is not a CIDR such as 203.0.113.7/32") from None
        if network.prefixlen == 0:
            raise SettingsError(f"ADMIN_IPS must not contain {network} (SSH open to the world); list your own CIDRs")
        networks.append(network)
    return tuple(networks)


def _expand(path: str, base: Path) -> Path:
    expanded = Path(os.path.expanduser(path))
    return expanded if expanded.is_absolute() else base / expanded


@dataclass(frozen=True)
class Settings:
    """Validated settings plus every name and address derived from them."""

    values: Mapping[str, str] = field(repr=False)
    base_dir: Path
    environment: str
    domain: str
    location: str
    server_image: str
    dokku_server_type: str
    platform_server_type: str
    dokku_servers: int
    dokku_volume_size: int
    platform_volume_size: int
    enable_backups: bool
    matrix_federation: bool
    hcloud_endpoint: str
    hcloud_poll_interval: float
    hcloud_retry_backoff: float
    hcloud_timeout: float
    dns_zone: str
    ssh_public_key_path: Path
    ssh_private_key_path: Path
    dokku_provisioner_key_path: Path
    ssh_known_hosts_file: str
    ssh_strict_host_key_checking: str
    outputs_file: Path
    secrets_dir: Path
    dokku_version: str
    dokku_apt_repo_url: str
    dokku_apt_suite: str
    dokku_apt_key_url: str
    acme_server: str
    acme_ca_bundle: str
    registry_ca_cert: str
    service_image_tag: str

    def to_json(self) -> str:
        """How pyinfra prints it when it dumps host data: never the values."""
        return f"<settings of environment {self.environment}>"

    # -- raw access -------------------------------------------------------------------------------
    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default).strip()

    def required(self, name: str, why: str = "") -> str:
        value = self.get(name)
        if not value:
            raise SettingsError(f"{name} is required{': ' + why if why else ''} (set it in the environment or {self.env_file_name})")
        return value

    @property
    def env_file_name(self) -> str:
        return self.values.get("ENV_FILE") or ".env"

    @property
    def hcloud_token(self) -> str:
        return self.required("HCLOUD_TOKEN", "the Hetzner Cloud API token of the project")

    @cached_property
    def admin_networks(self):
        return _admin_networks(self.get("ADMIN_IPS"))

    @property
    def admin_ips(self) -> list[str]:
        return [str(network) for network in self.admin_networks]

    def platform_secrets(self) -> dict[str, str]:
        """The values the platform's services need, all required."""
        return {name: self.required(name, "the platform's services need it") for name in PLATFORM_SECRET_NAMES}

    def secret_values(self) -> list[str]:
        """Every secret that is set, so tests and logs can prove none of them leaks."""
        return [self.get(name) for name in _SECRET_NAMES + ("SUPABASE_URL",) if self.get(name)]

    # -- names and labels ---------------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        return f"{PROJECT}-{self.environment}"

    def labels(self, role: str | None = None, **extra: str) -> dict[str, str]:
        labels = {"managed-by": MANAGED_BY, "project": PROJECT, "environment": self.environment}
        if role:
            labels["role"] = role
        labels.update(extra)
        return labels

    @property
    def label_selector(self) -> str:
        return ",".join(f"{key}={value}" for key, value in self.labels().items())

    @property
    def network_name(self) -> str:
        return f"{self.prefix}-network"

    def firewall_name(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    @property
    def placement_group_name(self) -> str:
        return f"{self.prefix}-dokku-spread"

    @property
    def admin_key_name(self) -> str:
        return f"{self.prefix}-admin"

    @property
    def provisioner_key_name(self) -> str:
        return f"{self.prefix}-dokku-provisioner"

    def server_names(self, role: str) -> list[str]:
        if role == "platform":
            return [f"{self.prefix}-platform"]
        return [f"{self.prefix}-dokku-{index}" for index in range(1, self.dokku_servers + 1)]

    @staticmethod
    def volume_name(server_name: str) -> str:
        return f"{server_name}-data"

    def private_ip(self, server_name: str) -> str:
        subnet = ipaddress.ip_network(SUBNET_IP_RANGE)
        if server_name == self.server_names("platform")[0]:
            return str(subnet[PLATFORM_HOST_OCTET])
        index = int(server_name.rsplit("-", 1)[1])
        return str(subnet[DOKKU_FIRST_HOST_OCTET + index - 1])

    def server_type(self, role: str) -> str:
        return self.dokku_server_type if role == "dokku" else self.platform_server_type

    def volume_size(self, role: str) -> int:
        return self.dokku_volume_size if role == "dokku" else self.platform_volume_size

    # -- DNS ------------------------------------------------------------------------------------------
    def platform_hostnames(self) -> list[str]:
        return [self.domain] + [f"{sub}.{self.domain}" for sub in PLATFORM_SUBDOMAINS]

    def url(self, subdomain: str) -> str:
        return f"https://{subdomain}.{self.domain}"


def _read_values(environ: Mapping[str, str], cwd: Path) -> tuple[dict[str, str], Path]:
    env_file = environ.get("ENV_FILE", "").strip()
    path = _expand(env_file or ".env", cwd)
    if env_file and not path.is_file():
        raise SettingsError(f"ENV_FILE={env_file!r} does not exist; point it at a dotenv file")
    file_values = {k: v or "" for k, v in dotenv_values(path).items()} if path.is_file() else {}
    return {**file_values, **environ}, path.parent


def load_settings(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Read and validate every setting. Raises SettingsError with a one-line message."""
    cwd = cwd or Path.cwd()
    values, base_dir = _read_values(os.environ if environ is None else environ, cwd)

    def get(name: str, default: str = "") -> str:
        return (values.get(name) or default).strip()

    environment = _match("ENVIRONMENT", get("ENVIRONMENT", "production"), _ENVIRONMENT_RE,
                         "lowercase letters, digits and '-', starting with a letter, at most 20 characters")
    domain = get("DOMAIN").lower().rstrip(".")
    if not domain:
        raise SettingsError("DOMAIN is required: the platform's domain, e.g. mindroom.chat")
    _match("DOMAIN", domain, _DOMAIN_RE, "a DNS domain such as mindroom.chat")
    dns_zone = get("DNS_ZONE").lower().rstrip(".")
    if dns_zone:
        _match("DNS_ZONE", dns_zone, _DOMAIN_RE, "a DNS zone such as mindroom.chat")
        if domain != dns_zone and not domain.endswith("." + dns_zone):
            raise SettingsError(f"DNS_ZONE={dns_zone!r} must be DOMAIN ({domain}) or a parent of it")

    ssh_public_key_path = _expand(get("SSH_PUBLIC_KEY_PATH", "~/.ssh/id_ed25519.pub"), base_dir)
    private_default = str(ssh_public_key_path)[: -len(".pub")] if str(ssh_public_key_path).endswith(".pub") else ""
    letsencrypt_staging = _bool("LETSENCRYPT_STAGING", get("LETSENCRYPT_STAGING", "false"))
    acme_default = LETSENCRYPT_STAGING_DIRECTORY if letsencrypt_staging else LETSENCRYPT_DIRECTORY

    settings = Settings(
        values=values,
        base_dir=base_dir,
        environment=environment,
        domain=domain,
        location=_match("LOCATION", get("LOCATION", "nbg1"), _SLUG_RE, "a Hetzner location name such as nbg1"),
        server_image=_match("SERVER_IMAGE", get("SERVER_IMAGE", "debian-13"), _SLUG_RE,
                            "a Hetzner image name such as debian-13"),
        dokku_server_type=_match("DOKKU_SERVER_TYPE", get("DOKKU_SERVER_TYPE", "cpx31"), _SLUG_RE,
                                 "a Hetzner server type such as cpx31"),
        platform_server_type=_match("PLATFORM_SERVER_TYPE", get("PLATFORM_SERVER_TYPE", "cpx21"), _SLUG_RE,
                                    "a Hetzner server type such as cpx21"),
        dokku_servers=_int("DOKKU_SERVERS", get("DOKKU_SERVERS", "1"), 1, MAX_DOKKU_SERVERS),
        dokku_volume_size=_int("DOKKU_VOLUME_SIZE", get("DOKKU_VOLUME_SIZE", "200"), 10, 10240),
        platform_volume_size=_int("PLATFORM_VOLUME_SIZE", get("PLATFORM_VOLUME_SIZE", "50"), 10, 10240),
        enable_backups=_bool("ENABLE_BACKUPS", get("ENABLE_BACKUPS", "true")),
        matrix_federation=_bool("MATRIX_FEDERATION", get("MATRIX_FEDERATION", "false")),
        hcloud_endpoint=get("HCLOUD_ENDPOINT", PRODUCTION_HCLOUD_ENDPOINT).rstrip("/"),
        hcloud_poll_interval=_int("HCLOUD_POLL_INTERVAL", get("HCLOUD_POLL_INTERVAL", "1"), 0, 60, float),
        hcloud_retry_backoff=_int("HCLOUD_RETRY_BACKOFF", get("HCLOUD_RETRY_BACKOFF", "1"), 0, 60, float),
        hcloud_timeout=_int("HCLOUD_TIMEOUT", get("HCLOUD_TIMEOUT", "30"), 0.1, 600, float),
        dns_zone=dns_zone,
        ssh_public_key_path=ssh_public_key_path,
        ssh_private_key_path=_expand(get("SSH_PRIVATE_KEY_PATH", private_default), base_dir),
        dokku_provisioner_key_path=_expand(get("DOKKU_PROVISIONER_KEY_PATH", "./ssh/dokku_provisioner.pub"), base_dir),
        ssh_known_hosts_file=os.path.expanduser(get("SSH_KNOWN_HOSTS_FILE", "~/.ssh/known_hosts")),
        ssh_strict_host_key_checking=_match(
            "SSH_STRICT_HOST_KEY_CHECKING", get("SSH_STRICT_HOST_KEY_CHECKING", "accept-new"),
            re.compile(r"^(yes|no|accept-new)$"), "yes, no or accept-new"),
        outputs_file=_expand(get("OUTPUTS_FILE", f"outputs.{environment}.json"), base_dir),
        secrets_dir=_expand(get("SECRETS_DIR", f".secrets/{environment}"), base_dir),
        dokku_version=_match("DOKKU_VERSION", get("DOKKU_VERSION", "0.36.4"), _VERSION_RE, "a version such as 0.36.4"),
        dokku_apt_repo_url=get("DOKKU_APT_REPO_URL", "https://packagecloud.io/dokku/dokku/debian/"),
        # Dokku publishes packages per Debian release; bookworm's run on trixie until a trixie suite exists.
        dokku_apt_suite=_match("DOKKU_APT_SUITE", get("DOKKU_APT_SUITE", "bookworm"), _SLUG_RE, "an apt suite such as bookworm"),
        dokku_apt_key_url=get("DOKKU_APT_KEY_URL", "https://packagecloud.io/dokku/dokku/gpgkey"),
        acme_server=get("ACME_SERVER", acme_default),
        acme_ca_bundle=get("ACME_CA_BUNDLE"),
        registry_ca_cert=get("REGISTRY_CA_CERT"),
        service_image_tag=get("SERVICE_IMAGE_TAG", "latest"),
    )
    if get("ADMIN_IPS"):
        settings.admin_networks  # validate the format early; required-ness is checked by whoever needs it
    return settings


def read_public_key(path: Path, setting: str) -> str:
    """Return the one-line OpenSSH public key at path, or raise naming the setting."""
    if not path.is_file():
        raise SettingsError(f"{setting}={str(path)!r} does not exist; point it at an OpenSSH public key (.pub)")
    text = path.read_text(errors="replace").strip()
    if not _PUBLIC_KEY_RE.match(text) or "\n" in text:
        raise SettingsError(f"{setting}={str(path)!r} is not an OpenSSH public key (ssh-ed25519/ssh-rsa/ecdsa ...)")
    return text
