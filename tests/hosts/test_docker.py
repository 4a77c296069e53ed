"""tasks/docker.py on every host: Debian's docker.io with compose v2, running, its data-root on the volume."""

import pytest

from tasks.docker import DOCKER_PACKAGES
from tests.hosts import live
from tests.hosts.roles import group_data

testinfra_hosts = live.hosts("dokku") + live.hosts("platform")


@pytest.mark.parametrize("package", DOCKER_PACKAGES)
def test_docker_packages(host, package):
    assert host.package(package).is_installed


def test_docker_enabled_and_running(host):
    assert host.service("docker").is_enabled
    assert host.service("docker").is_running


def test_compose_v2(host):
    assert host.run("docker compose version").rc == 0


def test_docker_data_root_on_volume(host, host_data):
    mount_point = group_data(host_data["role"])["mount_point"]
    root = host.check_output("docker info --format '{{.DockerRootDir}}'")
    assert root == f"{mount_point}/docker"
    assert host.check_output(f"findmnt -n -o TARGET -T {root}") == mount_point
