"""Docker engine from Debian's docker.io (+ docker-compose: compose v2 in Debian 13), the same packages on
production and the testbed. Its data-root is on the volume (host data `mount_point`), configured before the
engine is installed; data an older engine left in /var/lib/docker is moved there once, with Docker stopped.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import systemd

from tasks import ops

# docker-cli is only a Recommends of docker.io in Debian 13; installs here skip recommends.
DOCKER_PACKAGES = ["docker.io", "docker-cli", "docker-compose"]
DEFAULT_DATA_ROOT = "/var/lib/docker"


def data_root() -> str:
    return f"{host.data.mount_point}/docker"


@deploy("Docker")
def install():
    config = ops.template(
        name="Upload /etc/docker/daemon.json", src="templates/docker/daemon.json.j2", dest="/etc/docker/daemon.json",
        mode="644",
        # live-restore: containers outlive a daemon restart; Dokku's postinst would add it to the file otherwise
        config={"data-root": data_root(), "live-restore": True, "log-driver": "json-file",
                "log-opts": {"max-size": "10m", "max-file": "3"}},
    )
    ops.move_onto(name=f"Move Docker's data to {data_root()} (once)", src=DEFAULT_DATA_ROOT, dest=data_root(),
                  stop=["docker.socket", "docker.service"])
    ops.packages(name="Install Docker", packages=DOCKER_PACKAGES)
    ops.services(name="Run Docker", units=["docker"])
    ops.on_change(name="Restart Docker", changes=[config], operation=systemd.service, service="docker",
                  restarted=True)
