"""What exists: every resource bootstrap owns, found by label selector in a fixed number of requests
(one list per resource type, however many servers there are), fetched concurrently."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import hcloud

from settings import Settings

from .desired import KeySpec


@dataclass
class Observed:
    keys: dict  # our SSH keys by name
    keys_by_md5_fingerprint: dict  # the configured keys' MD5 fingerprints -> the project's key with it (ours or not)
    networks: dict
    firewalls: dict
    placement_groups: dict
    servers: dict
    volumes: dict
    zone: object | None = None
    rrsets: dict = field(default_factory=dict)  # (relative name, type) -> rrset

    def server_by_id(self, server_id: int):
        return next((server for server in self.servers.values() if server.id == server_id), None)


def is_ours(resource, settings: Settings) -> bool:
    labels = resource.labels or {}
    return all(labels.get(key) == value for key, value in settings.labels().items())


def _by_name(resources) -> dict:
    return {resource.name: resource for resource in resources}


def observe(client: hcloud.Client, settings: Settings, keys: list[KeySpec] = ()) -> Observed:
    selector = settings.label_selector
    queries = {
        "keys": lambda: _by_name(client.ssh_keys.get_all(label_selector=selector)),
        "networks": lambda: _by_name(client.networks.get_all(label_selector=selector)),
        "firewalls": lambda: _by_name(client.firewalls.get_all(label_selector=selector)),
        "placement_groups": lambda: _by_name(client.placement_groups.get_all(label_selector=selector)),
        "servers": lambda: _by_name(client.servers.get_all(label_selector=selector)),
        "volumes": lambda: _by_name(client.volumes.get_all(label_selector=selector)),
        "zone": lambda: _zone(client, settings),
    }
    for key in keys:
        queries[key.md5_fingerprint] = lambda fp=key.md5_fingerprint: client.ssh_keys.get_list(fingerprint=fp).ssh_keys
    with ThreadPoolExecutor(max_workers=len(queries)) as pool:
        futures = {name: pool.submit(query) for name, query in queries.items()}
        results = {name: future.result() for name, future in futures.items()}
    zone, rrsets = results.pop("zone")
    return Observed(
        keys=results.pop("keys"), networks=results.pop("networks"), firewalls=results.pop("firewalls"),
        placement_groups=results.pop("placement_groups"), servers=results.pop("servers"),
        volumes=results.pop("volumes"), zone=zone, rrsets=rrsets,
        keys_by_md5_fingerprint={fp: found[0] for fp, found in results.items() if found},
    )


def _zone(client: hcloud.Client, settings: Settings):
    if not settings.dns_zone:
        return None, {}
    zones = client.zones.get_list(name=settings.dns_zone).zones
    if not zones:
        return None, {}
    rrsets = client.zones.get_rrset_all(zones[0])
    return zones[0], {(rrset.name, rrset.type): rrset for rrset in rrsets}
