"""The local cloud: what the fake Hetzner API does on this machine when a resource changes.

Run by the fake API daemon (`python -m tests.fakecloud ... --hooks tests.testbed.cloudhooks:TestbedHooks`):
creating a server boots a guest and reports the guest's address as the server's public IPv4; attaching it
to the network puts its private IP on the guest's eth1; volumes are loop devices that appear in the guest;
DNS records of the zone are handed to the ACME server's DNS so HTTP-01 validation reaches the guests.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.testbed import guests, layout, volumes

from tests.fakecloud.hooks import CloudHooks


def a_records(zone: str, rrsets: list[dict]) -> dict[str, str]:
    """{fully qualified name: first IPv4} for the zone's A records ("@" is the zone itself)."""
    records = {}
    for rrset in rrsets:
        if rrset.get("type") != "A" or not rrset.get("records"):
            continue
        name = rrset["name"]
        fqdn = zone if name in ("@", "") else f"{name}.{zone}"
        value = rrset["records"][0]
        records[fqdn] = value["value"] if isinstance(value, dict) else value
    return records


class TestbedHooks(CloudHooks):
    __test__ = False  # not a pytest test class

    def __init__(self, lab: Path | None = None):
        self.lab = lab or layout.LAB

    def server_created(self, server_id: int, name: str, labels: dict, public_keys: list[str]) -> dict:
        return guests.create(self.lab, server_id, name, public_keys)

    def server_deleted(self, server_id: int) -> None:
        guests.delete(self.lab, server_id)

    def server_powered(self, server_id: int, on: bool) -> None:
        if on:
            guests.boot(self.lab, server_id)
        else:
            guests.shutdown(self.lab, server_id)

    def server_rebooted(self, server_id: int) -> None:
        guests.reboot(self.lab, server_id)

    def network_attached(self, server_id: int, ip: str) -> None:
        guests.set_private_ip(self.lab, server_id, ip, present=True)

    def network_detached(self, server_id: int, ip: str) -> None:
        guests.set_private_ip(self.lab, server_id, ip, present=False)

    def volume_created(self, volume_id: int, size_gb: int) -> None:
        volumes.create(self.lab, volume_id, size_gb)

    def volume_resized(self, volume_id: int, size_gb: int) -> None:
        volumes.resize(self.lab, volume_id, size_gb)

    def volume_attached(self, volume_id: int, server_id: int) -> None:
        guests.attach_volume(self.lab, server_id, volume_id)

    def volume_detached(self, volume_id: int, server_id: int) -> None:
        guests.detach_volume(self.lab, server_id, volume_id)

    def volume_deleted(self, volume_id: int) -> None:
        volumes.delete(self.lab, volume_id)

    def dns_rrsets_changed(self, zone: str, rrsets: list[dict]) -> None:
        records = a_records(zone, rrsets)
        (self.lab / "dns.json").write_text(json.dumps(records, indent=1, sort_keys=True))
        try:
            from tests.testbed import pebble
        except ModuleNotFoundError:
            return  # no ACME stand-in yet: the names are recorded in LAB/dns.json
        pebble.set_a_records(self.lab, records)
