"""What bootstrap made, for people (`output`) and for inventory.py (the outputs file, mode 0600)."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from local_secrets import write_atomically
from settings import HCLOUD_VOLUME_DEVICE_PREFIX, ROLES, Settings, SettingsError

from .desired import dns_records, ipv6_address
from .dns import addresses
from .observe import Observed


def _order(server) -> tuple:
    role = (server.labels or {}).get("role", "")
    number = re.search(r"(\d+)$", server.name)
    return (ROLES.index(role) if role in ROLES else len(ROLES), int(number.group(1)) if number else 0, server.name)


def build(settings: Settings, observed: Observed) -> dict:
    network = observed.networks.get(settings.network_name)
    servers = []
    for server in sorted(observed.servers.values(), key=_order):
        volume = observed.volumes.get(settings.volume_name(server.name))
        servers.append({
            "name": server.name,
            "role": (server.labels or {}).get("role"),
            "id": server.id,
            "ipv4": server.public_net.ipv4.ip if server.public_net.ipv4 else None,
            "ipv6": ipv6_address(server.public_net.ipv6.ip if server.public_net.ipv6 else None),
            "private_ip": next((net.ip for net in server.private_net or [] if network and net.network.id == network.id), None),
            "volume": {"id": volume.id, "name": volume.name, "size": volume.size,
                       "device": f"{HCLOUD_VOLUME_DEVICE_PREFIX}{volume.id}"} if volume else None,
        })
    records = dns_records(settings, addresses(observed.servers))
    return {
        "environment": settings.environment,
        "network_id": network.id if network else None,
        "servers": servers,
        "dns_zone": settings.dns_zone or None,
        "dns_managed": observed.zone is not None,
        "dns_records": [{"type": r.type, "name": r.name, "value": r.value} for r in records],
    }


def check_writable(path: Path) -> None:
    """Raise SettingsError unless write() can replace path: checked before apply changes anything, so a run never
    creates servers and then fails to record them."""
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "is a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as error:
        raise SettingsError(f"OUTPUTS_FILE={str(path)!r} cannot be written ({error.strerror}); point it at a "
                            "writable place") from None


def write(path: Path, outputs: dict) -> None:
    """Atomically replace the file; it is created with mode 0600 and never exists with a wider mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(outputs, indent=2) + "\n")


def render(outputs: dict, path: Path) -> str:
    lines = [f"Environment {outputs['environment']}, network id {outputs['network_id']}"]
    for server in outputs["servers"]:
        volume = server["volume"]
        lines.append(f"  {server['role'] or '?':<8} {server['name']}  public {server['ipv4']} {server['ipv6']}  "
                     f"private {server['private_ip']}")
        lines.append(f"           volume {volume['name']} (id {volume['id']}, {volume['size']} GB) {volume['device']}"
                     if volume else "           no volume")
    if outputs["dns_managed"]:
        lines.append(f"DNS records (managed in zone {outputs['dns_zone']} by apply):")
    else:
        lines.append("DNS records to create at your DNS provider:")
    for record in outputs["dns_records"]:
        lines.append(f"  {record['type']:<5} {record['name']:<32} {record['value'] or '(after apply)'}")
    lines.append(f"Written to {path} (mode 0600).")
    return "\n".join(lines)
