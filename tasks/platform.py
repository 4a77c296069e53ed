"""Platform services: the four MindRoom services from the private registry, run by Docker Compose.

- /opt/platform/.env (root, 0600) is rendered from the local settings (group data `platform_env`: the services'
  URLs and their Supabase, Stripe, registry and Hetzner credentials), never from user_data, plus DOKKU_HOST (the
  first Dokku server's private IP) and DOKKU_HOSTS (all of them, comma-separated), which this module takes from
  the inventory's Dokku hosts (tasks/inventory_hosts.py).
- A changed secret restarts only the services that read it: compose.yaml names, per service, the .env keys it
  reads (group data `platform_service_env`) and compose resolves them from the .env file. `docker compose up`
  recreates a container only when its resolved configuration changed.
- Registry login without `docker login`: /root/.docker/config.json (0600) is written with the credential, so
  the token is never on a command line. Secret files go through `ops.secret_file`, which never prints a diff.
- `docker compose up -d --wait` runs only when compose.yaml, .env, the registry login or its CA changed, or
  when a service is not running (the host snapshot's compose states), so a second deploy changes nothing.
"""

from __future__ import annotations

import base64
import json
import shlex

from pyinfra import host
from pyinfra.api import OperationError, deploy

from settings import dotenv_unquotable
from tasks import ops, snapshot
from tasks.inventory_hosts import dokku_private_ips
from tasks.snapshot import snapshot_operation

def platform_directory() -> None:
    """/opt/platform: root only (it holds the .env and the platform key)."""
    directory = host.data.platform_dir
    ops.directory(name=f"Create {directory}", path=directory, mode="700")


def compose_up_command(compose_file: str, env_file: str, wait_seconds: int) -> str:
    """`docker compose up`: orphans removed, done only when every service is healthy (or it fails)."""
    return (f"docker compose -f {shlex.quote(compose_file)} --env-file {shlex.quote(env_file)} up -d "
            f"--remove-orphans --wait --wait-timeout {int(wait_seconds)}")


@snapshot_operation(lambda project, **_: {"compose": project})
def compose_up(compose_file: str, env_file: str, project: str, services: list[str], wait_seconds: int,
               changes: list):
    """`docker compose up` when a service of the project is not running, or when an operation in `changes` (the
    files compose reads) changed something. Custom: pyinfra has no compose operation."""
    states = snapshot.read()["compose"]
    stopped = [service for service in services if states.get(service) != "running"]
    if not stopped and not ops.changed(changes):
        host.noop(f"{', '.join(services)} running")
        return
    yield compose_up_command(compose_file, env_file, wait_seconds)


def environment() -> dict[str, str]:
    """Every key of /opt/platform/.env: group data's `platform_env` with the Dokku hosts' private IPs filled in
    (in their places: the dict keeps its order)."""
    dokku_ips = dokku_private_ips()
    return {**host.data.platform_env, "DOKKU_HOST": (dokku_ips or [""])[0], "DOKKU_HOSTS": ",".join(dokku_ips)}


def registry_host(registry: str) -> str:
    """host[:port] of REGISTRY (which may add a namespace): what Docker keys logins and CA directories by."""
    return registry.split("/", 1)[0]


def registry_auth(registry: str, user: str, token: str) -> str:
    """/root/.docker/config.json: the registry credential, as `docker login` would store it."""
    auth = base64.b64encode(f"{user}:{token}".encode()).decode()
    return json.dumps({"auths": {registry_host(registry): {"auth": auth}}}, indent=2) + "\n"


def dotenv(env: dict[str, str]) -> str:
    """/opt/platform/.env with every value single-quoted: compose's dotenv parser takes such a value literally, no
    `$` interpolation (compose-go dotenv/parser.go). A value the quotes cannot hold (a quote, a backslash, which
    escapes the closing quote, a line break) is refused: the settings refuse them already, this is the second
    check where the value lands."""
    for name, value in env.items():
        if dotenv_unquotable(value):
            raise OperationError(f"{name} cannot go into .env single-quoted (quote, backslash or control character)")
    return ops.render("templates/platform/env.j2", env=env)


@deploy("Platform: services")
def services():
    data = host.data
    directory = data.platform_dir
    compose_file = f"{directory}/compose.yaml"
    env_file = f"{directory}/.env"
    registry = data.registry

    ops.packages(name="Install the platform's packages", packages=data.platform_packages)
    platform_directory()
    ops.directory(name="Create /root/.docker", path="/root/.docker", mode="700")
    for service in data.platform_services:
        ops.directory(name=f"Create {data.platform_data_dir}/{service.name}",
                      path=f"{data.platform_data_dir}/{service.name}", mode="750")

    env = ops.secret_file(name=f"Write {env_file}", dest=env_file,
                          content=dotenv(environment()))
    login = ops.secret_file(name="Write the registry login /root/.docker/config.json", dest="/root/.docker/config.json",
                            content=registry_auth(registry, data.registry_login["user"], data.registry_login["token"]))
    ca_dest = f"/etc/docker/certs.d/{registry_host(registry)}/ca.crt"
    if data.registry_ca_cert:
        ca = ops.put(name=f"Upload the registry CA to {ca_dest}", src=data.registry_ca_cert, dest=ca_dest,
                     mode="644")
    else:
        ca = ops.absent(name=f"Remove {ca_dest}", path=ca_dest)
    compose = ops.template(
        name=f"Render {compose_file}", src="templates/platform/compose.yaml.j2", dest=compose_file,
        mode="600", services=data.platform_services, registry=registry, tag=data.service_image_tag,
        service_env=data.platform_service_env, healthcheck=data.platform_healthcheck,
        project=data.platform_compose_project, network=data.platform_docker_network,
        data_dir=data.platform_data_dir, key_path=data.platform_key_path,
        known_hosts_path=data.platform_known_hosts_path, key_mount=data.provisioner_key_mount,
        known_hosts_mount=data.provisioner_known_hosts_mount, dokku_host=(dokku_private_ips() or [""])[0],
        dokku_user=data.dokku_ssh_user,
    )
    compose_up(name="Start the platform services (docker compose up)", compose_file=compose_file,
               env_file=env_file, project=data.platform_compose_project,
               services=[service.name for service in data.platform_services],
               wait_seconds=data.platform_compose_wait_seconds, changes=[env, login, ca, compose])
