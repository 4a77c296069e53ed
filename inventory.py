"""pyinfra inventory: the servers bootstrap.py created, grouped by role (groups `dokku` and `platform`).

It reads bootstrap's outputs file (OUTPUTS_FILE), not the API, so it needs no token and no secret.
Each host carries what its tasks need: its role, private IP and volume device.
"""

import ipaddress
import json
import re
import sys

# ROLES imported under a private name: pyinfra would take a module-level tuple of strings for a host group.
from settings import ROLES as _ROLES, SettingsError, load_settings
from tasks.converged import no_failure_prompt_without_terminal


def _load_servers(settings):
    try:
        outputs = json.loads(settings.outputs_file.read_text())
    except FileNotFoundError:
        raise SettingsError(
            f"OUTPUTS_FILE={str(settings.outputs_file)!r} does not exist; run `python bootstrap.py apply` first"
        ) from None
    except (OSError, ValueError) as error:
        raise SettingsError(f"OUTPUTS_FILE={str(settings.outputs_file)!r} cannot be read as JSON ({error}); "
                            "run `python bootstrap.py output` to write it again") from None
    servers = outputs.get("servers") if isinstance(outputs, dict) else None
    if not isinstance(servers, list) or not all(map(_valid_server, servers)):
        raise SettingsError(f"OUTPUTS_FILE={str(settings.outputs_file)!r} lacks servers with name, role, ipv4 and "
                            "private_ip; run `python bootstrap.py output` to write it again")
    _check_environment(outputs, settings)
    if not servers:  # pyinfra with no host would still plan nothing and prompt
        raise SettingsError(f"OUTPUTS_FILE={str(settings.outputs_file)!r} lists no server; run `python bootstrap.py "
                            "apply` to create them")
    return servers


def _valid_server(server) -> bool:
    """The fields the hosts are built from, well-formed (the IPs end up in authorized_keys and compose.yaml)."""
    try:
        ipaddress.ip_address(server["ipv4"]), ipaddress.ip_address(server["private_ip"])
        return server["role"] in _ROLES and re.fullmatch(r"[a-z0-9-]{1,63}", server["name"]) is not None
    except (TypeError, KeyError, ValueError):
        return False


def _check_environment(outputs, settings):
    """Another environment's outputs would deploy this environment's secrets onto its servers."""
    found = outputs.get("environment")
    if found != settings.environment:
        raise SettingsError(
            f"OUTPUTS_FILE={str(settings.outputs_file)!r} belongs to environment {found!r}, not "
            f"ENVIRONMENT={settings.environment!r}; point OUTPUTS_FILE at this environment's file "
            f"(python bootstrap.py output writes it)"
        )


def _host(server, settings):
    volume = server.get("volume") or {}
    return (
        server["name"],
        {
            "ssh_hostname": server["ipv4"],
            "ssh_user": "root",
            "ssh_key": str(settings.ssh_private_key_path),
            "ssh_known_hosts_file": settings.ssh_known_hosts_file,
            "ssh_strict_host_key_checking": settings.ssh_strict_host_key_checking,
            "role": server["role"],
            "server_name": server["name"],
            "public_ipv4": server["ipv4"],
            "private_ip": server["private_ip"],
            "volume_device": volume.get("device"),
        },
    )


def build_inventory(settings=None):
    """Return {group: [(name, data), ...]} for the servers bootstrap created."""
    settings = settings or load_settings()
    servers = _load_servers(settings)
    return {
        role: [_host(server, settings) for server in servers if server["role"] == role]
        for role in _ROLES
    }


no_failure_prompt_without_terminal()  # pyinfra's "continue?" after a failed host, which needs a terminal
try:
    _groups = build_inventory()
except SettingsError as error:
    sys.exit(f"error: {error}")

dokku = _groups["dokku"]
platform = _groups["platform"]
