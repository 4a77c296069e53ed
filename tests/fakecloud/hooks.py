"""Hooks: how a testbed turns the fake cloud's resources into real local hosts.

The fake calls a hook in a worker thread while the matching action is `running`; the action becomes
`success` when the hook returns and `error` when it raises. Arguments are plain values, never SDK objects.
Subclass CloudHooks and override what you need; every method here does nothing.
"""

from __future__ import annotations


class CloudHooks:
    def server_created(self, server_id: int, name: str, labels: dict, public_keys: list[str]) -> dict | None:
        """Return {"ipv4": address, "ipv6": address or /64 network} to replace the fake's addresses, or None.

        Like Hetzner, the fake publishes IPv6 as the server's /64; clients use its ::1.
        """
        return None

    def server_deleted(self, server_id: int) -> None:
        """Called after volume_detached for each volume that was attached."""

    def server_powered(self, server_id: int, on: bool) -> None:
        pass

    def server_rebooted(self, server_id: int) -> None:
        pass

    def network_attached(self, server_id: int, ip: str) -> None:
        pass

    def network_detached(self, server_id: int, ip: str) -> None:
        pass

    def volume_created(self, volume_id: int, size_gb: int) -> None:
        pass

    def volume_resized(self, volume_id: int, size_gb: int) -> None:
        pass

    def volume_attached(self, volume_id: int, server_id: int) -> None:
        pass

    def volume_detached(self, volume_id: int, server_id: int) -> None:
        pass

    def volume_deleted(self, volume_id: int) -> None:
        pass

    def dns_rrsets_changed(self, zone: str, rrsets: list[dict]) -> None:
        """rrsets: the zone's whole current list, each {"name": "app", "type": "A", "records": ["10.213.0.20"]}."""
