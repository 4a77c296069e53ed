"""Pebble (Let's Encrypt's test ACME server) and pebble-challtestsrv (its mock DNS) on the bridge address.

HTTP-01 is validated for real: Pebble asks challtestsrv for the A record of each name and fetches the
challenge from the guest's nginx on port 80. `set_a_records` maps the platform's names to the guest.
Nothing is skipped (no PEBBLE_VA_ALWAYS_VALID).
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.request
from pathlib import Path

from tests.testbed import ca, procs

ACME_PORT = 14000
MANAGEMENT_PORT = 15000
DNS_PORT = 8053
CHALLTESTSRV_MANAGEMENT_PORT = 8055
PEBBLE_ENV = {
    "PEBBLE_VA_NOSLEEP": "1",  # no random validation delay
    "PEBBLE_AUTHZREUSE": "0",  # every order is validated for real
    # Pebble rejects 5% of valid nonces by default to test clients; certbot retries a rejected nonce once, so
    # about one certbot run in twenty failed at random (first issuance, renew --dry-run), proving nothing.
    "PEBBLE_WFE_NONCEREJECT": "0",
}


def _dir(lab: Path) -> Path:
    return lab / "pebble"


def start(lab: Path, bridge_ip: str) -> dict[str, str]:
    directory = _dir(lab)
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, _ = ca.ensure_ca(lab)
    cert, key = ca.server_cert(lab, "pebble", [bridge_ip])
    config = directory / "pebble-config.json"
    config.write_text(json.dumps({"pebble": {
        "listenAddress": f"{bridge_ip}:{ACME_PORT}",
        "managementListenAddress": f"{bridge_ip}:{MANAGEMENT_PORT}",
        "certificate": str(cert), "privateKey": str(key),
        "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": False,
    }}, indent=2))
    # Every listener is given explicitly: by default challtestsrv binds several ports on all addresses.
    # -defaultIPv6 "": otherwise AAAA answers ::1 and validation dials the validator's own loopback.
    _daemon(directory, "challtestsrv", [
        "pebble-challtestsrv", "-dns01", f"{bridge_ip}:{DNS_PORT}",
        "-management", f"{bridge_ip}:{CHALLTESTSRV_MANAGEMENT_PORT}",
        "-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv4", "", "-defaultIPv6", "",
    ], (bridge_ip, CHALLTESTSRV_MANAGEMENT_PORT))
    (directory / "bridge_ip").write_text(bridge_ip)
    _daemon(directory, "pebble", ["pebble", "-config", str(config), "-dnsserver", f"{bridge_ip}:{DNS_PORT}"],
            (bridge_ip, ACME_PORT), env={**os.environ, **PEBBLE_ENV})
    # The platform's probes verify the certificates Pebble issues: they chain to this run's root.
    issuing_root = directory / "issuing-root.pem"
    procs.wait_for(lambda: procs.port_open(bridge_ip, MANAGEMENT_PORT), 15, "pebble's management port")
    issuing_root.write_text(root_certificate(lab))
    return {"ACME_SERVER": f"https://{bridge_ip}:{ACME_PORT}/dir", "ACME_CA_BUNDLE": str(ca_cert),
            "PROBE_CA_BUNDLE": str(issuing_root)}


def _daemon(directory: Path, name: str, argv: list[str], address: tuple[str, int], env=None) -> None:
    procs.spawn(argv, directory / f"{name}.pid", directory / f"{name}.log", env=env)
    procs.wait_for(lambda: procs.port_open(*address), 15, f"{name} on {address[0]}:{address[1]}")


def log_file(lab: Path) -> Path:
    """Pebble's own log: what it asked, fetched and rejected (the gate quotes it when issuance fails)."""
    return _dir(lab) / "pebble.log"


def set_a_records(lab: Path, records: dict[str, str]) -> None:
    """Answer A queries for each fqdn with its IPv4 address (what the validator resolves)."""
    bridge_ip = (_dir(lab) / "bridge_ip").read_text()
    for fqdn, ipv4 in records.items():
        body = json.dumps({"host": fqdn.rstrip(".") + ".", "addresses": [ipv4]}).encode()
        request = urllib.request.Request(f"http://{bridge_ip}:{CHALLTESTSRV_MANAGEMENT_PORT}/add-a", data=body,
                                         method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass


def root_certificate(lab: Path) -> str:
    """Pebble's run-time root (regenerated at every start): what issued certificates chain to."""
    bridge_ip = (_dir(lab) / "bridge_ip").read_text()
    context = ssl.create_default_context(cafile=str(ca.ensure_ca(lab)[0]))
    with urllib.request.urlopen(f"https://{bridge_ip}:{MANAGEMENT_PORT}/roots/0", timeout=5, context=context) as response:
        return response.read().decode()


def stop(lab: Path) -> None:
    directory = _dir(lab)
    procs.stop(directory / "pebble.pid")
    procs.stop(directory / "challtestsrv.pid")
