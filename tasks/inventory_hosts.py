"""The inventory's other hosts, as the tasks of one host see them: pyinfra's inventory (built by inventory.py
from bootstrap's outputs file) and those hosts' data, never the settings."""

from __future__ import annotations

import ipaddress

from pyinfra import inventory


def dokku_hosts() -> list:
    """The inventory's Dokku hosts, dokku-1 first (by private IP: 10.0.1.10, .11, ...; names would put
    dokku-10 before dokku-2)."""
    return sorted(inventory.get_group("dokku", default=[]),
                  key=lambda dokku_host: ipaddress.ip_address(dokku_host.data.private_ip))


def dokku_private_ips() -> list[str]:
    """Private IPs of every Dokku host, dokku-1 first."""
    return [dokku_host.data.private_ip for dokku_host in dokku_hosts()]


def platform_host():
    """The inventory's platform host, or None (a deploy limited to Dokku hosts still knows it)."""
    platform_hosts = inventory.get_group("platform", default=[])
    return platform_hosts[0] if platform_hosts else None
