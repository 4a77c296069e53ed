"""What the settings ask for, as plain values: SSH keys, firewall rules, servers with their volumes, DNS records."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from dataclasses import dataclass

from hcloud.firewalls.domain import FirewallRule

from settings import ANYWHERE, PUBLIC_PORTS, ROLES, SSH_PORT, Settings


@dataclass(frozen=True)
class KeySpec:
    name: str
    setting: str
    public_key: str
    md5_fingerprint: str  # as Hetzner reports it


@dataclass(frozen=True)
class ServerSpec:
    name: str
    role: str
    server_type: str
    ip: str
    labels: dict
    firewall: str
    key_md5_fingerprints: tuple
    volume_name: str
    volume_size: int
    volume_labels: dict


@dataclass(frozen=True)
class Record:
    type: str
    name: str  # fully qualified, without the trailing dot
    value: str | None  # None while the server it points at does not exist yet


def md5_fingerprint(public_key: str) -> str:
    """The MD5 fingerprint Hetzner reports for an SSH key (aa:bb:...; OpenSSH prints SHA256 ones)."""
    digest = hashlib.md5(base64.b64decode(public_key.split()[1])).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def key_specs(settings: Settings) -> list[KeySpec]:
    """The admin keys, each an SSH key in the project: SSH_PUBLIC_KEY_PATH's named `…-admin`, the extra ones
    by MD5 fingerprint. Hetzner gives a server its keys once, at creation, for root; the provisioner's key is not
    among them (it may run dokku only: the deploy gives it to dokku-deploy and Dokku's ssh-keys)."""
    specs = []
    for setting, public_key in settings.admin_public_keys():
        key_md5_fingerprint = md5_fingerprint(public_key)
        name = (settings.admin_key_name if setting == "SSH_PUBLIC_KEY_PATH"
                else settings.extra_admin_key_name(key_md5_fingerprint))
        specs.append(KeySpec(name, setting, public_key, key_md5_fingerprint))
    return specs


def firewall_rules(settings: Settings, role: str) -> list[FirewallRule]:
    rules = [FirewallRule(direction="in", protocol="tcp", port=str(SSH_PORT), source_ips=settings.admin_ips,
                          description="SSH from ADMIN_IPS")]
    rules += [FirewallRule(direction="in", protocol="tcp", port=str(port), source_ips=list(ANYWHERE),
                           description=f"port {port} from anywhere") for port in PUBLIC_PORTS[role]]
    return rules


def rule_key(rule: FirewallRule) -> tuple:
    """What makes two rules the same (descriptions and address spelling aside)."""
    ips = sorted(str(ipaddress.ip_network(ip, strict=False)) for ip in rule.source_ips or [])
    return rule.direction, rule.protocol, rule.port, tuple(ips)


def server_specs(settings: Settings, keys: list[KeySpec]) -> list[ServerSpec]:
    # Created with every admin key; later changes of the keys are the deploy's (servers are never rebuilt).
    md5_fingerprints = tuple(key.md5_fingerprint for key in keys)
    return [
        ServerSpec(
            name=name, role=role, server_type=settings.server_type(role), ip=settings.private_ip(name),
            labels=settings.labels(role), firewall=settings.firewall_name(role),
            key_md5_fingerprints=md5_fingerprints, volume_name=settings.volume_name(name),
            volume_size=settings.volume_size(role), volume_labels=settings.labels(role),
        )
        for role in ROLES
        for name in settings.server_names(role)
    ]


def ipv6_address(network: str | None) -> str | None:
    """Hetzner gives each server a /64; by convention the server itself answers on ::1."""
    return str(ipaddress.IPv6Network(network, strict=False)[1]) if network else None


def dns_records(settings: Settings, addresses: dict[str, tuple[str | None, str | None]]) -> list[Record]:
    """The platform's DNS records: DOMAIN (A and AAAA) and the platform names (A) at the platform server, the
    customer instances' wildcard (and *.m. for Matrix federation) at the first Dokku server. addresses: server
    name -> (ipv4, ipv6 address).

    The wildcard (customer instances) points at the first Dokku server: a wildcard with several servers'
    addresses would send each request to a random server, while an instance lives on exactly one. Instances
    on further Dokku servers get their own records from the provisioner.
    """
    platform = addresses.get(settings.server_names("platform")[0], (None, None))
    dokku = addresses.get(settings.server_names("dokku")[0], (None, None))
    domain = settings.domain
    records = [Record("A", domain, platform[0]), Record("AAAA", domain, platform[1])]
    records += [Record("A", host, platform[0]) for host in settings.platform_hostnames()[1:]]
    records += [Record("A", f"*.{domain}", dokku[0]), Record("AAAA", f"*.{domain}", dokku[1])]
    if settings.matrix_federation:
        records.append(Record("A", f"*.m.{domain}", dokku[0]))
    return records
