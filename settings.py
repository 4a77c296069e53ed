"""The single source of truth: every setting, name, address, port and size of the platform.

Values come from the environment, then from the dotenv file (ENV_FILE, default ./.env); real environment
variables win. Everything else (bootstrap.py, inventory.py, group_data/, tasks/) asks this module and repeats
no literal. Bad values raise SettingsError with one line that names the setting and what is allowed.
"""

from __future__ import annotations

import base64
import difflib
import ipaddress
import os
import re
import sys
import unicodedata
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from collections.abc import Mapping
from urllib.parse import urlsplit

from dotenv import dotenv_values

PROJECT = "mindroom"
MANAGED_BY = "mindroom-infra"
PRODUCTION_HCLOUD_ENDPOINT = "https://api.hetzner.cloud/v1"
LETSENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING_DIRECTORY = "https://acme-staging-v02.api.letsencrypt.org/directory"

# Private network: 10.0.0.0/16 with one cloud subnet, 10.0.1.0/24 in eu-central (Dokku servers from .10, the
# platform at .20).
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

    def to_json(self) -> dict:
        """As pyinfra prints host data (`debug-inventory`, `--debug`)."""
        return asdict(self)


PLATFORM_SERVICES = (
    PlatformService("customer-portal", 3000, 3000, None),
    PlatformService("admin-dashboard", 3001, 80, None),
    PlatformService("stripe-handler", 3002, 3005, "/health"),
    PlatformService("dokku-provisioner", 3003, 8002, "/health"),
)
PLATFORM_SUBDOMAINS = ("app", "admin", "api", "webhooks")

DOKKU_DEPLOY_USER = "dokku-deploy"
DOKKU_PROVISIONER_KEY_NAME = "provisioner"
# Dokku's plugins by name: (git URL, release tag) for `dokku plugin:install URL --committish TAG --name NAME`.
# Pinned so that servers set up on different days run the same plugin code; bump a tag after reading the plugin's
# release notes and apply it with `python maintain.py upgrade` (one Dokku server at a time; the deploy installs
# plugins on a new server but leaves an installed plugin at its tag). The database version is chosen per service
# (e.g. `POSTGRES_IMAGE_VERSION`). Resource limits are Dokku's core `resource` plugin (`dokku resource:limit`).
DOKKU_PLUGINS = {
    "postgres": ("https://github.com/dokku/dokku-postgres.git", "1.48.0"),
    "redis": ("https://github.com/dokku/dokku-redis.git", "1.43.0"),
    "letsencrypt": ("https://github.com/dokku/dokku-letsencrypt.git", "0.25.1"),
}


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
_DOMAIN_RE = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]")
_ENVIRONMENT_RE = re.compile(r"[a-z][a-z0-9-]{0,19}")
_SLUG_RE = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}")
_VERSION_RE = re.compile(r"[0-9]{1,6}\.[0-9]{1,6}\.[0-9]{1,6}")  # bounded: it reaches apt and dokku commands
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_PUBLIC_KEY_RE = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) ([A-Za-z0-9+/]+={0,2})( [ -~]*)?")
# Docker's reference grammar (distribution/reference): a tag, and a registry host with an optional port.
_IMAGE_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_REGISTRY_RE = re.compile(r"(?=.{1,200}$)(?=[^:/]{1,253}([:/]|$))([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
                          r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:[0-9]{1,5})?"
                          r"(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*){0,8}")
_REGISTRY_USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}")
_EMAIL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@" + _DOMAIN_RE.pattern)
# What a URL setting may contain (RFC 3986 unreserved, '/', ':', '%', '@'-free): no quotes, '$', '#', ';', spaces.
_URL_CHARS_RE = re.compile(r"[A-Za-z0-9._~:/?&=%+,-]{1,2048}")
_CIDR_RE = re.compile(r"[0-9A-Fa-f:.]+(/[0-9]{1,3})?")
_SECRET_NAMES = (
    "HCLOUD_TOKEN",
    "SUPABASE_SERVICE_KEY",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "REGISTRY_TOKEN",
    "SMTP_PASSWORD",
    "ALERT_WEBHOOK_URL",  # Slack's and Matrix hooks' URLs carry their token
    "BACKUP_PASSWORD",
    "BACKUP_S3_SECRET_ACCESS_KEY",
    "BACKUP_HEALTHCHECK_URL",  # a ping URL is its own token
)
# Settings that the platform's .env needs; checked when a deploy asks for them, not by bootstrap.
PLATFORM_SECRET_NAMES = (
    "SUPABASE_URL",
    "SUPABASE_SERVICE_KEY",
    "STRIPE_SECRET_KEY",
    "STRIPE_PUBLISHABLE_KEY",
    "STRIPE_PRICE_STARTER",
    "STRIPE_PRICE_PROFESSIONAL",
    "STRIPE_PRICE_ENTERPRISE",
    "REGISTRY",
    "REGISTRY_USER",
    "REGISTRY_TOKEN",
    "LETSENCRYPT_EMAIL",
)
BACKUP_SETTINGS = (
    "BACKUP_REPOSITORY", "BACKUP_PASSWORD", "BACKUP_SSH_KEY_PATH", "BACKUP_SSH_KNOWN_HOSTS_FILE",
    "BACKUP_S3_ACCESS_KEY_ID", "BACKUP_S3_SECRET_ACCESS_KEY", "BACKUP_TIME", "BACKUP_RANDOMIZED_DELAY",
    "BACKUP_KEEP_DAILY", "BACKUP_KEEP_WEEKLY", "BACKUP_KEEP_MONTHLY", "BACKUP_HEALTHCHECK_URL", "BACKUP_CA_CERT",
)
# Every key the project reads (bootstrap, group data, the host tests, the testbed's .env.testbed): the one list.
# Settings.get refuses any other name, and a dotenv file's other keys get a warning naming the nearest of these.
KNOWN_SETTINGS = frozenset((
    "ENV_FILE", "HCLOUD_TOKEN", "HCLOUD_ENDPOINT", "HCLOUD_POLL_INTERVAL", "HCLOUD_RETRY_BACKOFF", "HCLOUD_TIMEOUT",
    "ENVIRONMENT", "DOMAIN", "LOCATION", "SERVER_IMAGE", "DOKKU_SERVER_TYPE", "PLATFORM_SERVER_TYPE",
    "DOKKU_SERVERS", "DOKKU_VOLUME_SIZE", "PLATFORM_VOLUME_SIZE", "ENABLE_BACKUPS", "ADMIN_IPS",
    "SSH_PUBLIC_KEY_PATH", "SSH_EXTRA_PUBLIC_KEY_PATHS", "SSH_PRIVATE_KEY_PATH", "DOKKU_PROVISIONER_KEY_PATH",
    "DNS_ZONE", "MATRIX_FEDERATION",
    "OUTPUTS_FILE", "SECRETS_DIR", "SSH_STRICT_HOST_KEY_CHECKING", "SSH_KNOWN_HOSTS_FILE",
    "DOKKU_VERSION", "DOKKU_APT_REPO_URL", "DOKKU_APT_KEY_URL", "DOKKU_APT_KEY_SHA256", "DOKKU_APT_SUITE",
    "LETSENCRYPT_STAGING", "ACME_SERVER", "ACME_CA_BUNDLE", "SERVICE_IMAGE_TAG", "REGISTRY_CA_CERT",
    *PLATFORM_SECRET_NAMES,
    # monitoring (Settings.monitoring)
    "ALERT_WEBHOOK_URL", "ALERT_EMAIL_TO", "SMTP_HOST", "SMTP_PORT", "SMTP_FROM", "SMTP_USER", "SMTP_PASSWORD",
    "SMTP_REQUIRE_TLS", "ALERT_DISK_PERCENT", "ALERT_MEMORY_PERCENT", "ALERT_CERTIFICATE_DAYS",
    "ALERT_BACKUP_MAX_AGE_HOURS", "ALERT_HOST_DOWN_FOR", "ALERT_GROUP_WAIT", "ALERT_GROUP_INTERVAL",
    "ALERT_REPEAT_INTERVAL", "MONITORING_SCRAPE_INTERVAL", "PROMETHEUS_RETENTION_TIME", "PROMETHEUS_RETENTION_SIZE",
    "PROBE_CA_BUNDLE",
    # Stripe (cloud/stripe_webhook.py)
    "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", "STRIPE_ALLOW_MODE_MISMATCH", "STRIPE_RETRY_BACKOFF",
    # backups (Settings.backup, tasks/backup.py, backup.py)
    *BACKUP_SETTINGS,
))
# Values written into /opt/platform/.env, single-quoted. compose's dotenv parser (compose-go dotenv/parser.go) takes
# a single-quoted value literally but skips a quote after a backslash: neither may be in the value.
DOTENV_NAMES = ("HCLOUD_TOKEN", *PLATFORM_SECRET_NAMES, "STRIPE_WEBHOOK_SECRET")
DOTENV_FORBIDDEN = "'\\"
# ADMIN_IPS: never these (no admin connects from them), and at most this many addresses per family in total.
_NOT_ADMIN_SOURCES = (
    ("loopback", ("127.0.0.0/8", "::1/128")),
    ("link-local", ("169.254.0.0/16", "fe80::/10")),
    ("multicast", ("224.0.0.0/4", "ff00::/8")),
    ("unspecified ('this network')", ("0.0.0.0/8", "::/128")),
    ("reserved or broadcast", ("240.0.0.0/4",)),
    ("IPv4-mapped", ("::ffff:0:0/96",)),
)
_IPV6_UNICAST = tuple(ipaddress.ip_network(net) for net in ("2000::/3", "fc00::/7"))  # global, unique local
ADMIN_IPS_MAX_PREFIX = {4: 16, 6: 48}  # the sum of all entries: at most one /16 of IPv4, one /48 of IPv6
# Against a remote API (Hetzner: 3,600 requests an hour per project) no client setting may poll faster than this.
MAX_LOCK_WAIT_SECONDS = 86400  # --lock-wait, --data lock_wait: at most a day
MIN_REMOTE_POLL_INTERVAL = 1.0
MIN_REMOTE_RETRY_BACKOFF = 0.5


def _show(raw: str) -> str:
    """A value for an error message: repr, cut short."""
    return repr(raw if len(raw) <= 80 else raw[:80] + "...")

# -- Stripe: the webhook endpoint bootstrap keeps (cloud/stripe_webhook.py), only when STRIPE_SECRET_KEY is set --
STRIPE_DEFAULT_API_BASE = "https://api.stripe.com"
STRIPE_WEBHOOK_PATH = "/stripe"  # on webhooks.DOMAIN, served by the stripe-handler
STRIPE_WEBHOOK_EVENTS = (  # the events the stripe-handler serves: subscriptions' lifecycle and invoice payments
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
)
# The API version Stripe renders the endpoint's events in (stripe 16.1.0's own). Stripe cannot change it on an
# existing endpoint: a new value replaces the endpoint (new signing secret, then deploy the platform).
STRIPE_WEBHOOK_API_VERSION = "2026-10-28.endive"
STRIPE_PRICE_SETTINGS = ("STRIPE_PRICE_STARTER", "STRIPE_PRICE_PROFESSIONAL", "STRIPE_PRICE_ENTERPRISE")
STRIPE_WEBHOOK_SECRET_FILE = "stripe-webhook-secret"  # in SECRETS_DIR, written by apply (0600)
_STRIPE_KEY_RE = re.compile(r"^[sr]k_(live|test)_[A-Za-z0-9_]+$")


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name}={_show(raw)} is not a boolean; use true or false")


def _int(name: str, raw: str, low: float, high: float, kind: type = int) -> int:
    # ASCII digits only: int() and float() also take '1_0', unicode digits, 'nan', 'inf' and '1e3'.
    pattern = r"[0-9]{1,6}" if kind is int else r"[0-9]{1,6}(\.[0-9]{1,6})?"
    if not re.fullmatch(pattern, raw):
        what = "a whole number" if kind is int else "a number"
        raise SettingsError(f"{name}={_show(raw)} is not {what}; allowed: {low:g} to {high:g}")
    value = kind(raw)
    if not low <= value <= high:
        raise SettingsError(f"{name}={value:g} is out of range; allowed: {low:g} to {high:g}")
    return value


def _match(name: str, raw: str, pattern: re.Pattern, allowed: str) -> str:
    if not pattern.fullmatch(raw):
        raise SettingsError(f"{name}={_show(raw)} is invalid; allowed: {allowed}")
    return raw


def _ip_address(text: str):
    """text as an IP address, or None when it is not one (a host name)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_loopback(hostname: str) -> bool:
    address = _ip_address(hostname)
    return hostname == "localhost" if address is None else address.is_loopback


def _is_local(hostname: str) -> bool:
    address = _ip_address(hostname)
    return hostname == "localhost" if address is None else address.is_loopback or address.is_private


def _url(name: str, raw: str, plain_http_to=None, example: str = "https://example.org/") -> str:
    """An http(s) URL without credentials, fragment, spaces, quotes, '$', ';' or '..' segments. Plain http only
    where plain_http_to(hostname) allows it."""
    allowed = f"an https:// URL such as {example}"
    if not raw:
        raise SettingsError(f"{name} is set but empty; unset it for the default, or give {allowed}")
    if not _URL_CHARS_RE.fullmatch(raw):
        raise SettingsError(f"{name}={_show(raw)} has characters a URL setting may not hold (quotes, spaces, $, #, ;, "
                            f"@, non-ASCII); allowed: {allowed}")
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        raise SettingsError(f"{name}={_show(raw)} is not a URL; allowed: {allowed}") from None
    hostname = parts.hostname or ""
    plain_ok = parts.scheme == "http" and plain_http_to is not None and plain_http_to(hostname)
    if parts.scheme != "https" and not plain_ok:
        why = " (plain http only to a local address)" if parts.scheme == "http" and plain_http_to else ""
        raise SettingsError(f"{name}={_show(raw)} is not https{why}; allowed: {allowed}")
    if not hostname or parts.username is not None or parts.fragment or set(parts.path.split("/")) & {".", ".."}:
        raise SettingsError(f"{name}={_show(raw)} must name a host, with no user, '#' or '..'; allowed: {allowed}")
    return raw


def lock_wait_seconds(text) -> float:
    """A wait for the environment's lock: seconds from 0 to MAX_LOCK_WAIT_SECONDS in ASCII digits (float() also
    takes '1_0', '1e3', 'nan', other scripts' digits and spaces); ValueError naming the value otherwise."""
    seconds = float(text) if re.fullmatch(r"[0-9]{1,6}(\.[0-9]{1,6})?", str(text)) else -1
    if not 0 <= seconds <= MAX_LOCK_WAIT_SECONDS:
        raise ValueError(f"{text!r} is not a number of seconds from 0 to {MAX_LOCK_WAIT_SECONDS}")
    return seconds


def unprintable(text: str) -> str | None:
    """The first character of text that breaks a line or is invisible (control, format, line or paragraph
    separator), or None."""
    return next((c for c in text if unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp")),
                None)


def dotenv_unquotable(text: str) -> str | None:
    """The first character of text that a single-quoted /opt/platform/.env value cannot hold (a quote, a
    backslash, which escapes the closing quote, or a character unprintable() names), or None."""
    return unprintable(text) or next((c for c in text if c in DOTENV_FORBIDDEN), None)


def _printable(name: str, raw: str) -> str:
    """One line of printable text (the value may be a secret: only the character is shown)."""
    bad = unprintable(raw)
    if bad is not None:
        raise SettingsError(f"{name} contains the control character {bad!r}; allowed: one line of printable text")
    return raw


def _dotenv_value(name: str, raw: str) -> str:
    bad = next((c for c in raw if c in DOTENV_FORBIDDEN), None)
    if bad is not None:
        raise SettingsError(f"{name} contains {bad!r}, which /opt/platform/.env cannot hold; allowed: any printable "
                            "text without single quotes and backslashes")
    return raw


def _admin_network(part: str):
    if "%" in part:
        raise SettingsError(f"ADMIN_IPS entry {_show(part)} has an IPv6 scope id (%...); allowed: CIDRs without "
                            "a zone, such as 2001:db8::1/128")
    if not _CIDR_RE.fullmatch(part):
        raise SettingsError(f"ADMIN_IPS entry {_show(part)} is not a CIDR such as 203.0.113.7/32")
    try:
        network = ipaddress.ip_network(part)
    except ValueError as error:
        try:
            loose = ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise SettingsError(f"ADMIN_IPS entry {_show(part)} is not a CIDR such as 203.0.113.7/32") from None
        address = part.split("/")[0]
        raise SettingsError(f"ADMIN_IPS entry {part} has host bits set: write {address}/{loose.max_prefixlen} for "
                            f"that address or {loose} for its network") from error
    if network.prefixlen == 0:
        raise SettingsError(f"ADMIN_IPS must not contain {network} (SSH open to the world); list your own CIDRs")
    for kind, forbidden in _NOT_ADMIN_SOURCES:
        for other in map(ipaddress.ip_network, forbidden):
            if other.version == network.version and network.overlaps(other):
                raise SettingsError(f"ADMIN_IPS entry {network} overlaps {other} ({kind}), where no admin "
                                    "connects from; allowed: unicast CIDRs")
    if network.version == 6 and not any(network.subnet_of(unicast) for unicast in _IPV6_UNICAST):
        raise SettingsError(f"ADMIN_IPS entry {network} is not IPv6 unicast; allowed: CIDRs in 2000::/3 (global) "
                            "or fc00::/7 (unique local)")
    return network


def _admin_networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if not parts:
        raise SettingsError("ADMIN_IPS is required: comma-separated CIDRs allowed to reach SSH, e.g. 203.0.113.7/32")
    networks = []
    for network in map(_admin_network, parts):
        other = next((other for other in networks if other.version == network.version and other.overlaps(network)),
                     None)
        if other is not None:
            raise SettingsError(f"ADMIN_IPS entries {other} and {network} overlap; list each network once")
        networks.append(network)
    for version, max_prefix in ADMIN_IPS_MAX_PREFIX.items():
        total = sum(network.num_addresses for network in networks if network.version == version)
        bits = 32 if version == 4 else 128
        if total > 2 ** (bits - max_prefix):
            raise SettingsError(f"ADMIN_IPS opens SSH to {total} IPv{version} addresses; at most {2 ** (bits - max_prefix)}"
                                f" (one /{max_prefix}) in total are allowed: list your own networks")
    return tuple(networks)


def _expand(path: str, base: Path) -> Path:
    expanded = Path(os.path.expanduser(path))
    return expanded if expanded.is_absolute() else base / expanded


def check_private_directory(name: str, path: Path) -> None:
    """A directory for secrets, if it exists, is a directory of ours that nobody else can enter (never chmod-ed:
    SECRETS_DIR=/tmp must not turn /tmp into 0700)."""
    try:
        if not path.exists():
            return
    except OSError as error:
        raise SettingsError(f"{name}={_show(str(path))} cannot be used ({error.strerror})") from None
    if not path.is_dir():
        raise SettingsError(f"{name}={_show(str(path))} is not a directory; point it at a private directory "
                            "(created with mode 0700 if missing)")
    info = path.stat()
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise SettingsError(f"{name}={_show(str(path))} is not private (mode {info.st_mode & 0o7777:04o}, owner uid "
                            f"{info.st_uid}); use a directory only you can read (chmod 700) or a new path")


def _pem_file(name: str, raw: str, base: Path) -> str:
    """A local CA certificate file (uploaded to the hosts), checked when the settings are read."""
    if not raw:
        return ""
    path = _expand(raw, base)
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        raise SettingsError(f"{name}={_show(raw)} cannot be read ({error.strerror}); point it at a PEM CA certificate"
                            ) from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise SettingsError(f"{name}={_show(raw)} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return str(path)


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
    ssh_extra_public_key_paths: tuple[Path, ...]
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
    dokku_apt_key_sha256: str  # "" when unset: the Dokku hosts' group data requires it
    acme_server: str
    acme_ca_bundle: str
    registry_ca_cert: str
    service_image_tag: str

    def to_json(self) -> str:
        """How pyinfra prints it when it dumps host data: never the values."""
        return f"<settings of environment {self.environment}>"

    # -- raw access -------------------------------------------------------------------------------
    def get(self, name: str, default: str = "") -> str:
        if name not in KNOWN_SETTINGS:
            raise KeyError(f"{name} is not in settings.KNOWN_SETTINGS; add it there and to .env.example")
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

    # -- SSH keys (root's authorized_keys holds exactly the admin keys; see tasks/keys.py) -------------
    def admin_public_keys(self) -> list[tuple[str, str]]:
        """(setting, public key line) of every admin key: SSH_PUBLIC_KEY_PATH, then SSH_EXTRA_PUBLIC_KEY_PATHS."""
        keys = [("SSH_PUBLIC_KEY_PATH", read_public_key(self.ssh_public_key_path, "SSH_PUBLIC_KEY_PATH"))]
        for path in self.ssh_extra_public_key_paths:
            key = read_public_key(path, "SSH_EXTRA_PUBLIC_KEY_PATHS")
            same = next((setting for setting, other in keys if _key_blob(other) == _key_blob(key)), None)
            if same:
                raise SettingsError(f"SSH_EXTRA_PUBLIC_KEY_PATHS lists {_show(str(path))}, the same key as {same}; "
                                    "list each admin key once")
            keys.append(("SSH_EXTRA_PUBLIC_KEY_PATHS", key))
        return keys

    def connecting_public_key(self) -> str:
        """The public half of SSH_PRIVATE_KEY_PATH (the key pyinfra and the host tests log in with), which must be
        one of the admin keys: the deploy writes root's authorized_keys with exactly those and must never remove
        the key it connects with."""
        path, setting = self.ssh_private_key_path, "SSH_PRIVATE_KEY_PATH"
        beside = path.with_name(path.name + ".pub")
        key = read_public_key(beside, setting) if beside.is_file() else _openssh_private_key_public_half(path, setting)
        admins = [_key_blob(admin) for _, admin in self.admin_public_keys()]
        if _key_blob(key) not in admins:
            raise SettingsError(f"{setting}={_show(str(path))} is not one of the admin keys (SSH_PUBLIC_KEY_PATH, "
                                "SSH_EXTRA_PUBLIC_KEY_PATHS): the deploy keeps only those in root's authorized_keys "
                                "and would lock itself out; list it in SSH_EXTRA_PUBLIC_KEY_PATHS until the new key "
                                "is deployed (README: rotating the admin key)")
        return key

    def provisioner_public_key(self) -> str:
        """DOKKU_PROVISIONER_KEY_PATH's key: dokku-deploy's and Dokku's only, so never one of the admin keys."""
        key = read_public_key(self.dokku_provisioner_key_path, "DOKKU_PROVISIONER_KEY_PATH")
        same = next((setting for setting, admin in self.admin_public_keys()
                     if _key_blob(admin) == _key_blob(key)), None)
        if same:
            raise SettingsError(f"DOKKU_PROVISIONER_KEY_PATH must be another key than {same} (the provisioner's key "
                                "may run dokku only, an admin key is root's)")
        return key

    def platform_secrets(self) -> dict[str, str]:
        """The values the platform's services need, all required."""
        values = {name: self.required(name, "the platform's services need it") for name in PLATFORM_SECRET_NAMES}
        values["STRIPE_WEBHOOK_SECRET"] = self.stripe_webhook_secret() or self.required(
            "STRIPE_WEBHOOK_SECRET", f"run `python bootstrap.py apply` with STRIPE_SECRET_KEY set (it writes "
            f"{self.stripe_webhook_secret_file}), or set the webhook endpoint's signing secret by hand")
        return values

    def secret_values(self) -> list[str]:
        """Every secret that is set, so tests and logs can prove none of them leaks."""
        values = [self.get(name) for name in _SECRET_NAMES + ("SUPABASE_URL",) if self.get(name)]
        return values + [value for value in [self.stripe_webhook_secret()] if value and value not in values]

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

    def extra_admin_key_name(self, md5_fingerprint: str) -> str:
        """An SSH_EXTRA_PUBLIC_KEY_PATHS key in the project, named by its MD5 fingerprint (Hetzner's; reordering
        renames nothing)."""
        return f"{self.admin_key_name}-{md5_fingerprint.replace(':', '')[:8]}"

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

    # -- Stripe -------------------------------------------------------------------------------------------
    @property
    def stripe_api_base(self) -> str:
        """Stripe's API, or a fake on loopback (plain http allowed there only: the key goes with every request)."""
        return _url("STRIPE_API_BASE", self.get("STRIPE_API_BASE", STRIPE_DEFAULT_API_BASE), _is_loopback,
                    STRIPE_DEFAULT_API_BASE).rstrip("/")

    @property
    def stripe_live_mode(self) -> bool | None:
        """None without STRIPE_SECRET_KEY (bootstrap leaves Stripe alone); else whether the key is live-mode."""
        key = self.get("STRIPE_SECRET_KEY")
        if not key:
            return None
        match = _STRIPE_KEY_RE.match(key)
        if not match:
            raise SettingsError("STRIPE_SECRET_KEY is not a Stripe secret key; allowed: sk_live_..., sk_test_... "
                                "or a restricted rk_live_... / rk_test_... key")
        return match.group(1) == "live"

    @property
    def stripe_allow_mode_mismatch(self) -> bool:
        return _bool("STRIPE_ALLOW_MODE_MISMATCH", self.get("STRIPE_ALLOW_MODE_MISMATCH", "false"))

    @property
    def stripe_retry_backoff(self) -> float:
        remote = not _is_loopback(urlsplit(self.stripe_api_base).hostname)
        return _int("STRIPE_RETRY_BACKOFF", self.get("STRIPE_RETRY_BACKOFF", "1"),
                    MIN_REMOTE_RETRY_BACKOFF if remote else 0, 60, float)

    @property
    def stripe_webhook_url(self) -> str:
        return self.url("webhooks") + STRIPE_WEBHOOK_PATH

    @property
    def stripe_webhook_secret_file(self) -> Path:
        return self.secrets_dir / STRIPE_WEBHOOK_SECRET_FILE

    def stripe_webhook_secret(self) -> str:
        """STRIPE_WEBHOOK_SECRET when set (it wins), else the secret apply kept when it created the endpoint."""
        path = self.stripe_webhook_secret_file
        kept = path.read_text(errors="replace").strip() if path.is_file() else ""
        return self.get("STRIPE_WEBHOOK_SECRET") or _dotenv_value(str(path), _printable(str(path), kept))

    # -- monitoring -------------------------------------------------------------------------------------
    @property
    def platform_private_ip(self) -> str:
        return self.private_ip(self.server_names("platform")[0])

    def monitoring(self) -> Monitoring:
        """Prometheus' and Alertmanager's settings, checked when a deploy asks for them."""
        return _monitoring(self)

    def backup(self) -> Backup | None:
        """The backup settings (None: backups are off, BACKUP_REPOSITORY is not set)."""
        return _backup(self)


# -- monitoring (tasks/monitoring.py) -------------------------------------------------------------------------
NODE_EXPORTER_PORT = 9100  # on each host's private address, open to the platform's private IP only
PROMETHEUS_PORT = 9090  # the rest on the platform host's loopback: reached through an SSH tunnel
ALERTMANAGER_PORT = 9093
BLACKBOX_EXPORTER_PORT = 9115
# Where node_exporter's textfile collector reads *.prom files (Debian's default directory). The backup job writes
# BACKUP_METRICS_FILE there with the metrics named in BACKUP_METRICS; the alert rules read them.
NODE_EXPORTER_TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
BACKUP_METRICS_FILE = "mindroom_backup.prom"
BACKUP_METRICS = {
    "last_success": "mindroom_backup_last_success_timestamp_seconds",  # unix time of the newest good backup
    "restore_test_success": "mindroom_backup_restore_test_success",  # 1: the last restore test passed, 0: failed
    "restore_test_time": "mindroom_backup_restore_test_timestamp_seconds",  # unix time of that test
}
_DURATION_RE = re.compile(r"^[1-9][0-9]{0,5}(s|m|h|d|w)$")  # Prometheus/Alertmanager durations, one unit
_SIZE_RE = re.compile(r"^[1-9][0-9]{0,5}(MB|GB|TB)$")  # Prometheus' retention size
_SMTP_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._%+@-]{0,254}$")


@dataclass(frozen=True)
class Monitoring:
    """Validated monitoring settings; each reaches the platform host quoted (YAML strings) or in a 0600 file."""

    retention_time: str
    retention_size: str
    scrape_interval: str
    host_down_for: str
    group_wait: str
    group_interval: str
    repeat_interval: str
    disk_percent: int
    memory_percent: int
    certificate_days: int
    backup_max_age_hours: int
    webhook_url: str = field(repr=False)
    email_to: tuple[str, ...]
    smtp_host: str
    smtp_port: int
    smtp_from: str
    smtp_user: str
    smtp_password: str = field(repr=False)
    smtp_require_tls: bool
    probe_ca_bundle: str

    def to_json(self) -> str:
        return "<monitoring settings>"


def _emails(name: str, raw: str) -> tuple[str, ...]:
    addresses = tuple(part.strip() for part in raw.split(",") if part.strip())
    for address in addresses:
        _match(name, address, _EMAIL_RE, "comma-separated e-mail addresses such as ops@example.org")
    return addresses


def _monitoring(settings: Settings) -> Monitoring:
    get = settings.get

    def duration(name: str, default: str) -> str:
        return _match(name, get(name, default), _DURATION_RE, "a duration such as 30s, 5m, 4h or 15d")

    webhook_url = get("ALERT_WEBHOOK_URL")
    if webhook_url:
        try:  # plain http only to a local receiver: the URL may hold a token
            _url("ALERT_WEBHOOK_URL", webhook_url, _is_local, "https://hooks.example.org/...")
        except SettingsError:  # its message would show the value
            raise SettingsError("ALERT_WEBHOOK_URL is invalid (value not shown: it may hold a token); allowed: an "
                                "https:// URL (http:// to a local address) without spaces, quotes, '#', '@' or "
                                "'..'") from None
    email_to = _emails("ALERT_EMAIL_TO", get("ALERT_EMAIL_TO"))
    smtp_host = get("SMTP_HOST").lower()
    if smtp_host and _ip_address(smtp_host) is None:
        _match("SMTP_HOST", smtp_host, _DOMAIN_RE, "the SMTP server's host name or IP, such as smtp.example.org")
    elif email_to and not smtp_host:
        raise SettingsError("SMTP_HOST is required with ALERT_EMAIL_TO: the SMTP server that sends the alert mails")
    smtp_user = get("SMTP_USER")
    if smtp_user:
        _match("SMTP_USER", smtp_user, _SMTP_USER_RE, "a login name: letters, digits and . _ % + @ -")
    smtp_password = get("SMTP_PASSWORD")  # any printable line (checked when read): it goes into a 0600 file as is
    return Monitoring(
        retention_time=duration("PROMETHEUS_RETENTION_TIME", "30d"),
        retention_size=_match("PROMETHEUS_RETENTION_SIZE", get("PROMETHEUS_RETENTION_SIZE", "4GB"), _SIZE_RE,
                              "a size such as 500MB or 4GB"),
        scrape_interval=duration("MONITORING_SCRAPE_INTERVAL", "15s"),
        host_down_for=duration("ALERT_HOST_DOWN_FOR", "2m"),
        group_wait=duration("ALERT_GROUP_WAIT", "30s"),
        group_interval=duration("ALERT_GROUP_INTERVAL", "5m"),
        repeat_interval=duration("ALERT_REPEAT_INTERVAL", "4h"),
        disk_percent=_int("ALERT_DISK_PERCENT", get("ALERT_DISK_PERCENT", "85"), 50, 99),
        memory_percent=_int("ALERT_MEMORY_PERCENT", get("ALERT_MEMORY_PERCENT", "90"), 50, 99),
        certificate_days=_int("ALERT_CERTIFICATE_DAYS", get("ALERT_CERTIFICATE_DAYS", "14"), 1, 60),
        backup_max_age_hours=_int("ALERT_BACKUP_MAX_AGE_HOURS", get("ALERT_BACKUP_MAX_AGE_HOURS", "26"), 1, 720),
        webhook_url=webhook_url,
        email_to=email_to,
        smtp_host=smtp_host,
        smtp_port=_int("SMTP_PORT", get("SMTP_PORT", "587"), 1, 65535),
        smtp_from=_match("SMTP_FROM", get("SMTP_FROM", f"alertmanager@{settings.domain}"), _EMAIL_RE,
                         "an e-mail address such as alerts@example.org"),
        smtp_user=smtp_user,
        smtp_password=smtp_password,
        smtp_require_tls=_bool("SMTP_REQUIRE_TLS", get("SMTP_REQUIRE_TLS", "true")),
        probe_ca_bundle=_pem_file("PROBE_CA_BUNDLE", get("PROBE_CA_BUNDLE"), settings.base_dir),
    )


# -- backups (tasks/backup.py, backup.py) --------------------------------------------------------------------
# restic's repository syntax, one repository per host below it (<BACKUP_REPOSITORY>/<server name>):
# sftp://user@host[:port]/path (relative to the account's home; a Hetzner Storage Box: port 23) or
# s3:https://endpoint[:port]/bucket[/prefix] (S3-compatible Object Storage, https only; Hetzner's endpoint is
# https://<location>.your-objectstorage.com).
# The host is DNS labels or an IPv4 address: never empty, never starting with '-' (ssh would read an option), and
# the port (checked in _backup) 1 to 65535.
_REPOSITORY_HOST = (r"(?P<host>(?=[A-Za-z0-9.-]{1,253}[:/])[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)(:(?P<port>[0-9]{1,5}))?")
_SFTP_REPOSITORY_RE = re.compile(r"sftp://(?P<user>[A-Za-z0-9][A-Za-z0-9._-]{0,63})@" + _REPOSITORY_HOST
                                 + r"/(?P<path>[A-Za-z0-9_][A-Za-z0-9._/-]{0,200})")
# The bucket as S3 names one: 3 to 63 lower-case letters, digits, '.' and '-', a letter or digit at both ends.
_S3_REPOSITORY_RE = re.compile(r"s3:https://" + _REPOSITORY_HOST
                               + r"/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9_][A-Za-z0-9._-]{0,100}){0,8}")
_BACKUP_TIME_RE = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
_S3_ACCESS_KEY_RE = re.compile(r"[A-Za-z0-9]{8,128}")
_S3_SECRET_KEY_RE = re.compile(r"[A-Za-z0-9/+=._-]{8,256}")
_KNOWN_HOSTS_LINE_RE = re.compile(r"(\[[A-Za-z0-9.:-]+\]:[0-9]{1,5}|[A-Za-z0-9.:-]+)(,[][A-Za-z0-9.:,-]+)? "
                                  + _PUBLIC_KEY_RE.pattern)
BACKUP_PASSWORD_FILE = "backup-password"  # in SECRETS_DIR, generated by the first deploy unless BACKUP_PASSWORD
BACKUP_SSH_KEY_FILE = "backup-ssh-key"  # in SECRETS_DIR (and .pub), generated unless BACKUP_SSH_KEY_PATH
BACKUP_RESTORE_TEST_DAY = "Sun"  # the weekly restore test runs on this day, BACKUP_RESTORE_TEST_HOURS after the backup
BACKUP_RESTORE_TEST_HOURS = 3
# At most: the weekly restore test (BACKUP_RESTORE_TEST_HOURS later, its own delay as random) must follow that day's
# backup, and two daily backups stay within BACKUP_MAX_SNAPSHOT_AGE_HOURS (and the default alert's 26 h).
BACKUP_MAX_RANDOMIZED_DELAY_SECONDS = 2 * 3600
BACKUP_MAX_SNAPSHOT_AGE_HOURS = 26  # the restore test fails on an older newest snapshot (a missed daily run)
BACKUP_EXPORT_TIMEOUT_SECONDS = 1800  # an export running longer fails the run (redis:export can wait for good)
BACKUP_DUMP_MIN_BYTES = 512  # a postgres dump below this is no dump (the plugins' known 111-byte "successes")


@dataclass(frozen=True)
class Backup:
    """Validated backup settings. The secrets reach the hosts in root-only 0600 files only (tasks/backup.py)."""

    repository: str  # the base: each host's repository is <repository>/<server name> (tasks/backup.py)
    kind: str  # "sftp" or "s3"
    time: str  # HH:MM, the hosts' time (UTC)
    randomized_delay: str
    keep_daily: int
    keep_weekly: int
    keep_monthly: int
    password: str = field(repr=False)  # "" until the first deploy generates SECRETS_DIR/backup-password
    password_file: Path
    ssh_key_path: Path | None  # sftp: the key the hosts log in to the storage box with (None: generated)
    generated_ssh_key_path: Path
    ssh_known_hosts: str  # sftp: the storage box's host key lines
    s3_access_key_id: str
    s3_secret_access_key: str = field(repr=False)
    ca_cert: str  # s3: a PEM CA file restic trusts for the endpoint (--cacert; "": the system's CAs)
    healthcheck_url: str = field(repr=False)

    def to_json(self) -> str:
        return "<backup settings>"


def _known_hosts(raw: str, base: Path, sftp: re.Match) -> str:
    """The storage box's host key lines; one must name the repository's host as ssh looks it up ("host" on port
    22, "[host]:port" on another), else every host's backup fails on "Host key verification failed"."""
    name = "BACKUP_SSH_KNOWN_HOSTS_FILE"
    if not raw:
        raise SettingsError(f"{name} is required with an sftp BACKUP_REPOSITORY: a known_hosts file with the storage "
                            "box's host key (ssh-keyscan -p 23 uXXXXX.your-storagebox.de > storagebox.known_hosts)")
    path = _expand(raw, base)
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
    except OSError as error:
        raise SettingsError(f"{name}={_show(raw)} cannot be read ({error.strerror}); point it at a known_hosts file"
                            ) from None
    if not lines or not all(_KNOWN_HOSTS_LINE_RE.fullmatch(line) for line in lines):
        raise SettingsError(f"{name}={_show(raw)} is not a known_hosts file (lines `host key-type base64`, as "
                            "ssh-keyscan prints them)")
    host, port = sftp["host"].lower(), sftp["port"] or "22"
    wanted = host if int(port) == 22 else f"[{host}]:{int(port)}"
    if not any(wanted in line.split(" ", 1)[0].lower().split(",") for line in lines):
        raise SettingsError(f"{name}={_show(raw)} has no key for {wanted}, the host of BACKUP_REPOSITORY; allowed: "
                            f"its key as `ssh-keyscan -p {int(port)} {host}` prints it")
    return "\n".join(lines) + "\n"


def _private_key_path(raw: str, base: Path) -> Path | None:
    if not raw:
        return None
    path = _expand(raw, base)
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        raise SettingsError(f"BACKUP_SSH_KEY_PATH={_show(raw)} cannot be read ({error.strerror}); point it at the "
                            "private key whose public half is in the storage box's authorized_keys") from None
    if not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", text) or "ENCRYPTED" in text:
        raise SettingsError(f"BACKUP_SSH_KEY_PATH={_show(raw)} is not an unencrypted OpenSSH/PEM private key (the "
                            "hosts' timer uses it unattended)")
    return path


def _randomized_delay(raw: str) -> str:
    allowed = f"a duration such as 30m or 1h, at most {BACKUP_MAX_RANDOMIZED_DELAY_SECONDS // 3600}h"
    _match("BACKUP_RANDOMIZED_DELAY", raw, _DURATION_RE, allowed)
    seconds = int(raw[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[raw[-1]]
    if seconds > BACKUP_MAX_RANDOMIZED_DELAY_SECONDS:
        raise SettingsError(f"BACKUP_RANDOMIZED_DELAY={raw} is too long: the weekly restore test, "
                            f"{BACKUP_RESTORE_TEST_HOURS} h after BACKUP_TIME, must follow that day's backup; allowed: "
                            f"{allowed}")
    return raw


def _backup(settings: Settings) -> Backup | None:
    get = settings.get
    repository = get("BACKUP_REPOSITORY")
    if not repository:
        return None
    allowed = ("sftp://user@host[:port]/path (a Hetzner Storage Box: sftp://u123456@u123456.your-storagebox.de:23/"
               "mindroom) or s3:https://endpoint/bucket[/prefix]")
    sftp = _SFTP_REPOSITORY_RE.fullmatch(repository)
    parsed = sftp or _S3_REPOSITORY_RE.fullmatch(repository)
    if not parsed or ".." in repository or "//" in repository.partition("://")[2]:
        raise SettingsError(f"BACKUP_REPOSITORY={_show(repository)} is invalid; allowed: {allowed}")
    if parsed["port"] and not 1 <= int(parsed["port"]) <= 65535:
        raise SettingsError(f"BACKUP_REPOSITORY={_show(repository)} has port {parsed['port']}; allowed: 1 to 65535")
    kind = "sftp" if sftp else "s3"
    password = get("BACKUP_PASSWORD")
    password_file = settings.secrets_dir / BACKUP_PASSWORD_FILE
    if not password and password_file.is_file():
        password = _printable(str(password_file), password_file.read_text(errors="replace").strip())
    healthcheck_url = get("BACKUP_HEALTHCHECK_URL")
    if healthcheck_url:
        try:
            _url("BACKUP_HEALTHCHECK_URL", healthcheck_url, _is_local, "https://hc-ping.com/<uuid>")
        except SettingsError:  # its message would show the value
            raise SettingsError("BACKUP_HEALTHCHECK_URL is invalid (value not shown: it is a token); allowed: an "
                                "https:// URL (http:// to a local address) without spaces, quotes, '#', '@' or "
                                "'..'") from None
    access_key, secret_key = get("BACKUP_S3_ACCESS_KEY_ID"), get("BACKUP_S3_SECRET_ACCESS_KEY")
    if access_key:
        _match("BACKUP_S3_ACCESS_KEY_ID", access_key, _S3_ACCESS_KEY_RE, "8 to 128 letters and digits")
    if secret_key and not _S3_SECRET_KEY_RE.fullmatch(secret_key):
        raise SettingsError("BACKUP_S3_SECRET_ACCESS_KEY is invalid (value not shown); allowed: 8 to 256 letters, "
                            "digits and / + = . _ -")
    if kind == "s3" and not (access_key and secret_key):
        raise SettingsError("BACKUP_S3_ACCESS_KEY_ID and BACKUP_S3_SECRET_ACCESS_KEY are required with an s3 "
                            "BACKUP_REPOSITORY (the Object Storage credentials)")
    ca_cert = _pem_file("BACKUP_CA_CERT", get("BACKUP_CA_CERT"), settings.base_dir)
    if ca_cert and kind != "s3":
        raise SettingsError("BACKUP_CA_CERT is for an s3 BACKUP_REPOSITORY only (the endpoint's CA); unset it")
    return Backup(
        repository=repository,
        kind=kind,
        time=_match("BACKUP_TIME", get("BACKUP_TIME", "03:00"), _BACKUP_TIME_RE, "HH:MM in UTC, such as 03:00"),
        randomized_delay=_randomized_delay(get("BACKUP_RANDOMIZED_DELAY", "1h")),
        keep_daily=_int("BACKUP_KEEP_DAILY", get("BACKUP_KEEP_DAILY", "7"), 1, 1000),
        keep_weekly=_int("BACKUP_KEEP_WEEKLY", get("BACKUP_KEEP_WEEKLY", "4"), 0, 1000),
        keep_monthly=_int("BACKUP_KEEP_MONTHLY", get("BACKUP_KEEP_MONTHLY", "6"), 0, 1000),
        password=password,
        password_file=password_file,
        ssh_key_path=_private_key_path(get("BACKUP_SSH_KEY_PATH"), settings.base_dir),
        generated_ssh_key_path=settings.secrets_dir / BACKUP_SSH_KEY_FILE,
        ssh_known_hosts=_known_hosts(get("BACKUP_SSH_KNOWN_HOSTS_FILE"), settings.base_dir, sftp) if sftp else "",
        s3_access_key_id=access_key,
        s3_secret_access_key=secret_key,
        ca_cert=ca_cert,
        healthcheck_url=healthcheck_url,
    )


_warned: set[tuple[Path, str]] = set()


def _warn_unknown_keys(path: Path, keys) -> None:
    """One stderr line per key of the dotenv file that no part of the project reads (once per process)."""
    for key in keys:
        if key in KNOWN_SETTINGS or (path, key) in _warned:
            continue
        _warned.add((path, key))
        nearest = difflib.get_close_matches(key, KNOWN_SETTINGS, n=1)
        hint = f"; did you mean {nearest[0]}?" if nearest else "; see .env.example"
        print(f"warning: {path.name}: unknown setting {key} is ignored{hint}", file=sys.stderr)


def _read_values(environ: Mapping[str, str], cwd: Path) -> tuple[dict[str, str], Path]:
    env_file = environ.get("ENV_FILE", "").strip()
    path = _expand(env_file or ".env", cwd)
    try:
        is_file = path.is_file()
    except OSError as error:
        raise SettingsError(f"ENV_FILE={_show(env_file)} cannot be used ({error.strerror})") from None
    if env_file and not is_file:
        raise SettingsError(f"ENV_FILE={_show(env_file)} does not exist; point it at a dotenv file")
    file_values = {}
    if is_file:
        try:
            file_values = {k: v or "" for k, v in dotenv_values(path, encoding="utf-8").items()}
        except UnicodeDecodeError as error:
            raise SettingsError(f"ENV_FILE={_show(str(path))} is not UTF-8 (byte {error.start}); save it as UTF-8 text"
                                ) from None
        _warn_unknown_keys(path, file_values)
    values = {**file_values, **environ}
    for name in KNOWN_SETTINGS & values.keys():
        values[name] = _printable(name, values[name].strip())
    return values, path.parent


def load_settings(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Read and validate every setting. Raises SettingsError with a one-line message."""
    cwd = cwd or Path.cwd()
    values, base_dir = _read_values(os.environ if environ is None else environ, cwd)

    def get(name: str, default: str = "") -> str:
        assert name in KNOWN_SETTINGS, name
        return values[name] if name in values else default

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
    hcloud_endpoint = _url("HCLOUD_ENDPOINT", get("HCLOUD_ENDPOINT", PRODUCTION_HCLOUD_ENDPOINT), _is_loopback,
                           PRODUCTION_HCLOUD_ENDPOINT).rstrip("/")
    # The fake cloud on loopback may be polled as fast as a test likes; a remote API may not.
    remote = not _is_loopback(urlsplit(hcloud_endpoint).hostname)
    secrets_dir = _expand(get("SECRETS_DIR", f".secrets/{environment}"), base_dir)
    check_private_directory("SECRETS_DIR", secrets_dir)

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
        hcloud_endpoint=hcloud_endpoint,
        hcloud_poll_interval=_int("HCLOUD_POLL_INTERVAL", get("HCLOUD_POLL_INTERVAL", "1"),
                                  MIN_REMOTE_POLL_INTERVAL if remote else 0.001, 60, float),
        hcloud_retry_backoff=_int("HCLOUD_RETRY_BACKOFF", get("HCLOUD_RETRY_BACKOFF", "1"),
                                  MIN_REMOTE_RETRY_BACKOFF if remote else 0.001, 60, float),
        hcloud_timeout=_int("HCLOUD_TIMEOUT", get("HCLOUD_TIMEOUT", "30"), 0.1, 600, float),
        dns_zone=dns_zone,
        ssh_public_key_path=ssh_public_key_path,
        ssh_extra_public_key_paths=tuple(_expand(path.strip(), base_dir)
                                         for path in get("SSH_EXTRA_PUBLIC_KEY_PATHS").split(",") if path.strip()),
        ssh_private_key_path=_expand(get("SSH_PRIVATE_KEY_PATH", private_default), base_dir),
        dokku_provisioner_key_path=_expand(get("DOKKU_PROVISIONER_KEY_PATH", "./ssh/dokku_provisioner.pub"), base_dir),
        ssh_known_hosts_file=os.path.expanduser(get("SSH_KNOWN_HOSTS_FILE", "~/.ssh/known_hosts")),
        ssh_strict_host_key_checking=_match(
            "SSH_STRICT_HOST_KEY_CHECKING", get("SSH_STRICT_HOST_KEY_CHECKING", "accept-new"),
            re.compile(r"yes|no|accept-new"), "yes, no or accept-new"),
        outputs_file=_expand(get("OUTPUTS_FILE", f"outputs.{environment}.json"), base_dir),
        secrets_dir=secrets_dir,
        dokku_version=_match("DOKKU_VERSION", get("DOKKU_VERSION", "0.38.27"), _VERSION_RE, "a version such as 0.38.27"),
        # apt checks the packages' signatures, so the repository may be plain http; its key must not be (but
        # from a mirror at a local address, as the testbed's).
        dokku_apt_repo_url=_url("DOKKU_APT_REPO_URL", get("DOKKU_APT_REPO_URL", "https://packagecloud.io/dokku/dokku/debian/"),
                                lambda hostname: True, "https://packagecloud.io/dokku/dokku/debian/"),
        # Dokku publishes packages per Debian release: trixie's for Debian 13 (SERVER_IMAGE debian-13).
        dokku_apt_suite=_match("DOKKU_APT_SUITE", get("DOKKU_APT_SUITE", "trixie"), _SLUG_RE, "an apt suite such as trixie"),
        dokku_apt_key_url=_url("DOKKU_APT_KEY_URL", get("DOKKU_APT_KEY_URL", "https://packagecloud.io/dokku/dokku/gpgkey"),
                               _is_local, "https://packagecloud.io/dokku/dokku/gpgkey"),
        dokku_apt_key_sha256=_match("DOKKU_APT_KEY_SHA256", get("DOKKU_APT_KEY_SHA256"), _SHA256_RE,
                                    "64 lowercase hex digits, as sha256sum prints them") if get("DOKKU_APT_KEY_SHA256") else "",
        acme_server=_url("ACME_SERVER", get("ACME_SERVER", acme_default), None, LETSENCRYPT_DIRECTORY),
        acme_ca_bundle=_pem_file("ACME_CA_BUNDLE", get("ACME_CA_BUNDLE"), base_dir),
        registry_ca_cert=_pem_file("REGISTRY_CA_CERT", get("REGISTRY_CA_CERT"), base_dir),
        service_image_tag=_match("SERVICE_IMAGE_TAG", get("SERVICE_IMAGE_TAG", "latest"), _IMAGE_TAG_RE,
                                 "a Docker tag: letters, digits, '_', '.', '-', at most 128, e.g. 2026.12.1"),
    )
    _check_platform_values(get)
    _check_dokku_plugins(DOKKU_PLUGINS)
    settings.monitoring()  # checked here, so that a bad value stops every command, not only the deploy
    settings.backup()
    if get("ADMIN_IPS"):
        settings.admin_networks  # validate the format early; required-ness is checked by whoever needs it
    settings.stripe_api_base, settings.stripe_allow_mode_mismatch, settings.stripe_retry_backoff  # noqa: B018
    return settings


_PLUGIN_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,39}")  # also a file name (tasks/dokku.py PLUGIN_MARKERS)
_PLUGIN_TAG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a git tag; never an option (`-...`) or a space


def _check_dokku_plugins(plugins) -> None:
    """DOKKU_PLUGINS is code, not a setting, but its values reach `dokku plugin:install/update` and a marker file
    name on every Dokku server: an edit that breaks them stops every command here."""
    for name, (url, tag) in plugins.items():
        where = f"settings.DOKKU_PLUGINS[{name!r}]"
        _match(where, name, _PLUGIN_NAME_RE, "a plugin name: lowercase letters, digits and '-'")
        _url(f"{where} URL", url, None, "https://github.com/dokku/dokku-postgres.git")
        _match(f"{where} tag", tag, _PLUGIN_TAG_RE, "a release tag such as 1.48.0: letters, digits, '.', '_', '-'")


def _check_platform_values(get) -> None:
    """The format of the values bound for the platform host, where they are set; whether they are required is
    checked by whoever needs them (Settings.required)."""
    formats = {
        "LETSENCRYPT_EMAIL": (_EMAIL_RE, "an email address such as ops@mindroom.chat"),
        "REGISTRY": (_REGISTRY_RE, "host[:port][/namespace] of the registry, such as ghcr.io/mindroom or 10.0.0.5:5000"),
        "REGISTRY_USER": (_REGISTRY_USER_RE, "letters, digits and . _ @ + -"),
    }
    for name, (pattern, allowed) in formats.items():
        if get(name):
            _match(name, get(name), pattern, allowed)
    if get("SUPABASE_URL"):
        _url("SUPABASE_URL", get("SUPABASE_URL"), lambda hostname: True, "https://xyz.supabase.co")
    for name in DOTENV_NAMES:
        _dotenv_value(name, get(name))
    if get("HCLOUD_TOKEN") and not re.fullmatch(r"[!-~]+", get("HCLOUD_TOKEN")):
        raise SettingsError("HCLOUD_TOKEN has characters outside printable ASCII (no spaces); a Hetzner API token "
                            "is 64 letters and digits")


def read_public_key(path: Path, setting: str) -> str:
    """Return the one-line OpenSSH public key at path, or raise naming the setting."""
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        raise SettingsError(f"{setting}={_show(str(path))} does not exist; point it at an OpenSSH public key (.pub)"
                            ) from None
    match = _PUBLIC_KEY_RE.fullmatch(text)
    if not match:
        raise SettingsError(f"{setting}={_show(str(path))} is not an OpenSSH public key (ssh-ed25519/ssh-rsa/ecdsa ..., "
                            "one line of printable ASCII)")
    # The blob is base64 of the key in SSH wire format, which starts with its own type name.
    key_type = match.group(1).encode()
    try:
        blob = base64.b64decode(match.group(3), validate=True)
    except ValueError:
        blob = b""
    if blob[:4 + len(key_type)] != len(key_type).to_bytes(4, "big") + key_type:
        raise SettingsError(f"{setting}={_show(str(path))}: the key after {match.group(1)} is not the base64 of a "
                            f"{match.group(1)} key; copy the .pub file again")
    return text


def _key_blob(public_key: str) -> str:
    return public_key.split()[1]


def _openssh_private_key_public_half(path: Path, setting: str) -> str:
    """The public key stored in an OpenSSH private key file's header, which is never encrypted, so no passphrase
    is needed (openssh-portable PROTOCOL.key: the magic "openssh-key-v1" and a NUL byte, cipher, kdf, kdf options,
    number of keys, then each public key)."""
    fix = f"put its public half beside it: ssh-keygen -y -f {path} > {path}.pub"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        raise SettingsError(f"{setting}={_show(str(path))} cannot be read and there is no {path.name}.pub beside it; "
                            "point it at the private key pyinfra logs in with") from None
    armour = "OPENSSH PRIVATE KEY"  # PEM-style armour around the base64 body
    body = re.search(f"-----BEGIN {armour}-----(.*?)-----END {armour}-----", text, re.S)
    magic = b"openssh-key-v1\0"
    try:
        data = base64.b64decode("".join(body.group(1).split()), validate=True) if body else b""
    except ValueError:
        data = b""
    if not data.startswith(magic):
        raise SettingsError(f"{setting}={_show(str(path))} is not an OpenSSH private key whose public key can be read; "
                            f"{fix}")

    def string(position: int) -> tuple[bytes, int]:  # an SSH wire-format string: 4-byte length, bytes
        length = int.from_bytes(data[position:position + 4], "big")
        return data[position + 4:position + 4 + length], position + 4 + length

    position = len(magic)
    for _ in range(3):  # cipher, kdf, kdf options
        position = string(position)[1]
    blob = string(position + 4)[0]  # after the number of keys: the first public key
    key_type = blob[4:4 + int.from_bytes(blob[:4], "big")].decode(errors="replace")
    key = f"{key_type} {base64.b64encode(blob).decode()}"
    if not _PUBLIC_KEY_RE.fullmatch(key):
        raise SettingsError(f"{setting}={_show(str(path))} holds no public key this project accepts; {fix}")
    return key
