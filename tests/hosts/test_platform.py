"""tasks/platform.py on the platform host: the .env, the four services (restart always, ports, /health)."""

import hashlib

import pytest

from settings import PLATFORM_SERVICES, load_settings
from tests.hosts import live
from tests.hosts.roles import group_data

testinfra_hosts = live.hosts("platform")
DATA = group_data("platform")
ENV_FILE = f"{DATA['platform_dir']}/.env"
HEALTHY = [service for service in PLATFORM_SERVICES if service.health_path]


def _container(service) -> str:
    return f"{DATA['platform_compose_project']}-{service.name}-1"


def test_env_file_is_root_only(host):
    env = host.file(ENV_FILE)
    assert env.is_file
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    assert host.file(DATA["platform_dir"]).mode == 0o700


def test_env_file_has_every_key(host):
    keys = {line.split("=", 1)[0] for line in host.file(ENV_FILE).content_string.splitlines()
            if "=" in line and not line.startswith("#")}
    wanted = {key for keys in DATA["platform_service_env"].values() for key in keys}
    assert wanted <= keys


def test_env_points_at_the_first_dokku_host(host):
    dokku_ips = [data["private_ip"] for _, data in sorted(live.groups["dokku"])]
    lines = host.file(ENV_FILE).content_string.splitlines()
    assert f"DOKKU_HOST='{dokku_ips[0]}'" in lines
    assert f"DOKKU_HOSTS='{','.join(dokku_ips)}'" in lines


def test_env_has_the_webhook_signing_secret_kept_locally(host):
    """The secret bootstrap kept when it made the Stripe endpoint (or STRIPE_WEBHOOK_SECRET): after apply
    replaced the endpoint, this fails until the next deploy. Compared by hash, so no failure shows it."""
    wanted = f"STRIPE_WEBHOOK_SECRET='{load_settings().stripe_webhook_secret()}'"
    lines = [line for line in host.file(ENV_FILE).content_string.splitlines()
             if line.startswith("STRIPE_WEBHOOK_SECRET=")]
    assert [hashlib.sha256(line.encode()).hexdigest() for line in lines] == [hashlib.sha256(wanted.encode()).hexdigest()]


def test_registry_token_not_in_process_list(host):
    token = load_settings().required("REGISTRY_TOKEN")
    assert token not in host.check_output("ps -eo args")


@pytest.mark.parametrize("service", PLATFORM_SERVICES, ids=lambda service: service.name)
def test_container_running_with_restart_always(host, service):
    state = host.check_output(
        f"docker inspect -f '{{{{.State.Status}}}} {{{{.HostConfig.RestartPolicy.Name}}}}' {_container(service)}")
    assert state == "running always"


@pytest.mark.parametrize("service", PLATFORM_SERVICES, ids=lambda service: service.name)
def test_container_on_platform_network(host, service):
    networks = host.check_output(
        f"docker inspect -f '{{{{range $name, $_ := .NetworkSettings.Networks}}}}{{{{$name}}}} {{{{end}}}}' "
        f"{_container(service)}")
    assert DATA["platform_docker_network"] in networks.split()


@pytest.mark.parametrize("service", PLATFORM_SERVICES, ids=lambda service: service.name)
def test_port_answers(host, service):
    status = host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{service.host_port}/")
    assert status == "200"


@pytest.mark.parametrize("service", HEALTHY, ids=lambda service: service.name)
def test_health_endpoint(host, service):
    result = host.run(f"curl -sf http://127.0.0.1:{service.host_port}{service.health_path}")
    assert result.rc == 0, result.stderr
    health = host.check_output(f"docker inspect -f '{{{{.State.Health.Status}}}}' {_container(service)}")
    assert health == "healthy"


def test_provisioner_has_the_dokku_key(host):
    container = _container(next(s for s in PLATFORM_SERVICES if s.name == "dokku-provisioner"))
    for mount in (DATA["provisioner_key_mount"], DATA["provisioner_known_hosts_mount"]):
        assert host.run(f"docker exec {container} sh -c 'test -s {mount}'").rc == 0
