"""tasks/base.py on every host: packages, SSH, firewall, fail2ban, unattended-upgrades, swap, sysctl, identity."""

import pytest

from tests.hosts import live
from tests.hosts.roles import group_data, in_container

testinfra_hosts = live.hosts("dokku") + live.hosts("platform")
ALL = group_data(None)


@pytest.fixture
def data(host_data):
    return group_data(host_data["role"])


@pytest.mark.parametrize("package", ALL["base_packages"])
def test_base_package_installed(host, package):
    assert host.package(package).is_installed


@pytest.mark.parametrize("service", ["ssh", "fail2ban", "unattended-upgrades", "nginx"])
def test_service_enabled_and_running(host, service):
    unit = host.service(service)
    assert unit.is_enabled
    assert unit.is_running


def test_first_run_upgrade_happened_once(host, data):
    marker = host.file(data["upgrade_marker"])
    assert marker.is_file, "the first deploy's full upgrade leaves its marker"


@pytest.mark.parametrize("setting, value", [
    ("passwordauthentication", "no"),
    ("kbdinteractiveauthentication", "no"),
    ("permitemptypasswords", "no"),
    ("permitrootlogin", "without-password"),  # = prohibit-password: root by key only
    ("pubkeyauthentication", "yes"),
])
def test_sshd_effective_setting(host, setting, value):
    effective = host.check_output("sshd -T")
    assert f"{setting} {value}" in effective.splitlines()


def test_ssh_refuses_passwords(host):
    """Ask the host's own sshd for password/keyboard-interactive login: it must offer publickey only."""
    result = host.run("ssh -o BatchMode=yes -o PubkeyAuthentication=no -o StrictHostKeyChecking=no "
                      "-o UserKnownHostsFile=/dev/null -o PreferredAuthentications=password,keyboard-interactive "
                      "root@127.0.0.1 true 2>&1; echo exit=$?")  # (testinfra takes a bare 255 for its own failure)
    assert "exit=0" not in result.stdout
    assert "Permission denied (publickey)" in result.stdout


@pytest.mark.parametrize("port", [22, 80])
def test_port_listening(host, port):
    assert host.socket(f"tcp://0.0.0.0:{port}").is_listening or host.socket(f"tcp://:::{port}").is_listening


def test_ufw_policy(host):
    status = host.check_output("ufw status verbose")
    assert "Status: active" in status
    assert "Default: deny (incoming), allow (outgoing)" in status
    assert host.service("ufw").is_enabled


def test_ufw_public_ports(host, data):
    rules = host.check_output("ufw show added").splitlines()
    for port in data["public_ports"]:
        assert f"ufw allow {port}/tcp" in rules


def test_ufw_ssh_only_from_admins_and_private_network(host, data):
    rules = host.check_output("ufw show added").splitlines()
    ssh_rules = [rule for rule in rules if "port 22 " in rule or rule.startswith("ufw allow 22")]
    assert "ufw allow 22/tcp" not in rules and "ufw allow 22" not in rules, "SSH must not be open to everyone"
    sources = sorted(rule.split(" from ")[1].split(" ")[0] for rule in ssh_rules)
    expected = sorted(cidr.removesuffix("/32") for cidr in data["ssh_allowed_from"])
    assert sources == expected


def test_fail2ban_sshd_jail(host):
    assert host.run("fail2ban-client status sshd").rc == 0


def test_unattended_upgrades_enabled(host):
    config = host.check_output("apt-config dump APT::Periodic")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in config
    assert 'APT::Periodic::Update-Package-Lists "1";' in config


def test_swap(host, data):
    path, size = data["swap_file"], data["swap_size_mb"] * 1024 * 1024
    swapfile = host.file(path)
    assert swapfile.is_file and swapfile.size == size and swapfile.mode == 0o600
    if in_container(host):
        print(f"{host.backend.get_hostname()}: container: swap cannot be active; checked the {path} file only")
        signature = host.check_output(f"dd if={path} bs=1 skip=4086 count=10 status=none")
        assert signature == "SWAPSPACE2", f"container branch: {path} is not a swap file (mkswap)"
    else:
        print(f"{host.backend.get_hostname()}: VM: checking {path} is active swap")
        active = host.check_output("tail -n +2 /proc/swaps").split()
        assert path in active, f"VM branch: {path} is not active swap"


def test_fstab_has_no_duplicate_lines(host, data):
    entries = [line.split() for line in host.file("/etc/fstab").content_string.splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
    assert len({tuple(entry[:2]) for entry in entries}) == len(entries), f"duplicate fstab entries: {entries}"
    assert sum(1 for entry in entries if entry[0] == data["swap_file"]) == 1


def test_sysctl_values(host, data):
    values = {**data["sysctl"], **data.get("sysctl_extra", {})}
    dropin = host.file("/etc/sysctl.d/60-mindroom.conf").content_string
    container = in_container(host)
    for key, value in values.items():
        assert f"{key} = {value}" in dropin
        if container and key.startswith(tuple(data["sysctl_container_skip"])):
            print(f"container: {key} cannot be set here; checked the drop-in only")
            continue
        live_value = " ".join(host.check_output(f"sysctl -n {key}").split())
        assert live_value == value, f"{key} is {live_value}, want {value} ({'container' if container else 'VM'})"


def test_hostname_and_timezone(host, host_data):
    assert host.check_output("hostname") == host_data["server_name"]
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Etc/UTC"
    assert host.check_output("date +%Z") == "UTC"
