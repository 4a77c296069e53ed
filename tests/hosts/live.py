"""The live hosts the testinfra suite checks: whatever the settings point at (production or the testbed).

Hosts come from inventory.py, so `pytest tests/hosts` verifies exactly what `pyinfra inventory.py deploy.py`
configured. Test modules bind to a group with `testinfra_hosts = live.hosts("dokku")`.
"""

from inventory import build_inventory
from settings import load_settings

settings = load_settings()
groups = build_inventory(settings)
_data_by_name = {name: data for members in groups.values() for name, data in members}


def hosts(group: str) -> list[str]:
    return [f"ssh://{name}" for name, _ in groups[group]]


def data(host) -> dict:
    """The inventory data of a testinfra host (its role, private IP, volume device...)."""
    return _data_by_name[host.backend.get_hostname()]


def ssh_config() -> str:
    """An ssh_config that reaches every inventory host the way pyinfra does."""
    blocks = []
    for name, host_data in _data_by_name.items():
        blocks.append(
            f"Host {name}\n"
            f"  HostName {host_data['ssh_hostname']}\n"
            f"  User {host_data['ssh_user']}\n"
            f"  IdentityFile {host_data['ssh_key']}\n"
            "  IdentitiesOnly yes\n"
            f"  StrictHostKeyChecking {host_data['ssh_strict_host_key_checking']}\n"
            f"  UserKnownHostsFile {host_data['ssh_known_hosts_file']}\n"
            "  LogLevel ERROR\n"
        )
    return "".join(blocks)
