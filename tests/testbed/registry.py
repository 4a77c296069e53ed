"""A private container registry for the testbed: Debian's docker-registry on the bridge address, TLS from
the lab's throwaway CA, bcrypt htpasswd auth (the registry rejects apr1/md5 entries). It holds the four
service images (tests/testbed/service_images.py), pushed without a local Docker engine.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import bcrypt

from tests.testbed import ca, procs, service_images

PORT = 5000
USER = "mindroom"
# The registry checks the bcrypt hash on every request: a low cost keeps pushes and pulls fast (testbed only).
BCRYPT_ROUNDS = 6


def _dir(lab: Path) -> Path:
    return lab / "registry"


def _token(directory: Path) -> str:
    """The registry password, generated once and kept 0600 in the lab."""
    path = directory / "token"
    if not path.is_file():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24))
    return path.read_text()


def start(lab: Path, bridge_ip: str) -> dict[str, str]:
    directory = _dir(lab)
    (directory / "storage").mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_cert, _ = ca.ensure_ca(lab)
    cert, key = ca.server_cert(lab, "registry", [bridge_ip])
    token = _token(directory)
    htpasswd = directory / "htpasswd"
    if not htpasswd.is_file() or not _matches(htpasswd, token):  # a new token, or a first start
        htpasswd.write_text(f"{USER}:{bcrypt.hashpw(token.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()}\n")
    config = directory / "config.yml"
    # Own config: the packaged one listens on all interfaces.
    config.write_text(
        "version: 0.1\n"
        "log: {level: info}\n"
        f"storage: {{filesystem: {{rootdirectory: {directory / 'storage'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '{bridge_ip}:{PORT}', tls: {{certificate: {cert}, key: {key}}}}}\n"
        f"auth: {{htpasswd: {{realm: mindroom-testbed, path: {htpasswd}}}}}\n"
    )
    procs.spawn(["docker-registry", "serve", str(config)], directory / "registry.pid", directory / "registry.log")
    procs.wait_for(lambda: procs.port_open(bridge_ip, PORT), 15, f"the registry on {bridge_ip}:{PORT}")
    address = f"{bridge_ip}:{PORT}"
    service_images.push_all(address, USER, token, ca_cert)
    return {"REGISTRY": address, "REGISTRY_USER": USER, "REGISTRY_TOKEN": token, "REGISTRY_CA_CERT": str(ca_cert)}


def _matches(htpasswd: Path, token: str) -> bool:
    _, _, hashed = htpasswd.read_text().strip().partition(":")
    return bool(hashed) and bcrypt.checkpw(token.encode(), hashed.encode())


def stop(lab: Path) -> None:
    procs.stop(_dir(lab) / "registry.pid")
