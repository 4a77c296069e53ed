"""tasks/keys.py: root's authorized_keys on every host is exactly the admin keys (on Dokku hosts also the
platform's key, from the platform's private IP only), never the provisioner's key; the platform's key is in
Dokku's ssh-keys and usable from the platform host over the private network with strict host key checking."""

import pytest
import testinfra

from tests.hosts import live
from tests.hosts.roles import group_data

testinfra_hosts = live.hosts("dokku")
DATA = group_data("platform")
KEY = DATA["platform_key_path"]
ADMIN_KEYS = DATA["admin_public_keys"]
PROVISIONER_KEY = group_data("dokku")["provisioner_public_key"]
ROOT_KEYS = "/root/.ssh/authorized_keys"


@pytest.fixture(scope="module")
def platform(request):
    return testinfra.get_host(live.hosts("platform")[0], ssh_config=request.config.option.ssh_config)


@pytest.fixture(scope="module")
def public_key(platform):
    return " ".join(platform.file(f"{KEY}.pub").content_string.split()[:2])


def test_platform_key_files(platform):
    key = platform.file(KEY)
    assert (key.user, key.mode) == ("root", 0o600)
    assert platform.file(f"{KEY}.pub").content_string.startswith("ssh-ed25519 ")


def _root_keys(host) -> list[str]:
    keys = host.file(ROOT_KEYS)
    assert (keys.user, keys.group, keys.mode) == ("root", "root", 0o600)
    lines = keys.content_string.splitlines()
    assert not any(PROVISIONER_KEY.split()[1] in line for line in lines), "the provisioner key is root's"
    return lines


def test_root_keys_are_the_admin_keys_and_the_platform_key_from_the_platform_only(host, public_key):
    platform_ip = live.groups["platform"][0][1]["private_ip"]
    assert _root_keys(host) == [*ADMIN_KEYS, f'from="{platform_ip}" {public_key} {DATA["platform_key_comment"]}']


def test_platform_root_keys_are_the_admin_keys(platform):
    assert _root_keys(platform) == ADMIN_KEYS


def test_in_dokku_ssh_keys(host, public_key):
    listing = host.check_output("dokku ssh-keys:list")
    assert DATA["platform_dokku_key_name"] in listing


def _ssh(platform, user: str, ip: str, command: str):
    return platform.run(
        f"ssh -i {KEY} -o BatchMode=yes -o StrictHostKeyChecking=yes "
        f"-o UserKnownHostsFile={DATA['platform_known_hosts_path']} {user}@{ip} {command}")


def test_root_runs_dokku_over_the_private_network(host, host_data, platform):
    result = _ssh(platform, "root", host_data["private_ip"], "dokku version")
    assert result.rc == 0, result.stderr
    assert "dokku" in result.stdout.lower()


def test_dokku_user_accepts_the_key(host, host_data, platform):
    result = _ssh(platform, DATA["dokku_ssh_user"], host_data["private_ip"], "version")
    assert result.rc == 0, result.stderr
