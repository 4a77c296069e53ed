"""The local cloud's hosts, driven through the cloud hooks exactly as the fake API drives them (needs root).

Two guests in a scratch lab: keys from the API, public and private addresses, a volume that is a real block
device surviving a reboot, apt through the proxy, no CAP_SYS_TIME; and `down` leaves nothing behind.
"""

import os
import subprocess
from pathlib import Path

import pytest

from tests.testbed import (aptproxy, cloudhooks, guest_image, guests, lab, layout, lxcfs, network, procs,
                           volumes)

pytestmark = pytest.mark.testbed
CAP_SYS_TIME = 25


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    if Path(f"/sys/class/net/{layout.PUBLIC_BRIDGE}").exists():
        pytest.fail(f"a testbed is already up ({layout.PUBLIC_BRIDGE} exists); run `python -m tests.testbed down` first")
    root = tmp_path_factory.mktemp("lab")
    scratch_lab = Path("/var/tmp") / f"mindroom-testbed-test-{os.getpid()}"
    env_file = root / ".env.testbed"
    try:
        guest_image.extract_base(scratch_lab, guest_image.ensure_image())
        network.bridges_up()
        lxcfs.start(scratch_lab)
        aptproxy.start(scratch_lab, layout.BRIDGE_IP)
        lab.ssh_keys(scratch_lab)
        yield scratch_lab
    finally:
        problems = lab.down(scratch_lab, env_file)
        assert not problems, problems
        _assert_nothing_left(scratch_lab)


def _assert_nothing_left(scratch_lab):
    assert not scratch_lab.exists()
    assert not Path(f"/sys/class/net/{layout.PUBLIC_BRIDGE}").exists()
    assert not network.leftover_octets()
    assert str(scratch_lab) not in Path("/proc/self/mounts").read_text()
    assert str(scratch_lab) not in subprocess.run(["losetup", "--list"], capture_output=True, text=True).stdout
    assert str(scratch_lab) not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not (guests._cgroup2_root() / guests.CGROUP_PARENT).exists()


@pytest.fixture(scope="module")
def hosts(scratch):
    hooks = cloudhooks.TestbedHooks(scratch)
    key = (scratch / "ssh/admin_ed25519.pub").read_text()
    hooks.volume_created(901, 10)
    first = hooks.server_created(801, "tb-test-dokku-1", {"role": "dokku"}, [key])
    second = hooks.server_created(802, "tb-test-platform", {"role": "platform"}, [key])
    hooks.network_attached(801, "10.0.1.10")
    hooks.network_attached(802, "10.0.1.20")
    hooks.volume_attached(901, 801)
    return hooks, first, second


def ssh(scratch, address, command, check=True):
    result = subprocess.run(
        ["ssh", "-i", str(scratch / "ssh/admin_ed25519"), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5",
         "-o", "BatchMode=yes", f"root@{address}", command], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_server_gets_its_name_keys_and_public_address(scratch, hosts):
    _, first, second = hosts
    assert first["ipv4"] != second["ipv4"]
    assert first["ipv4"].startswith(layout.PUBLIC_PREFIX + ".")
    assert ssh(scratch, first["ipv4"], "hostname") == "tb-test-dokku-1"
    assert ssh(scratch, second["ipv4"], "cat /proc/1/comm") == "systemd"


def test_each_guest_has_a_cgroup_of_its_own(scratch, hosts):
    """Else the guests' systemds share one cgroup tree and a unit of the same name in two guests one cgroup."""
    def init_cgroup(server_id):
        [line] = [line for line in Path(f"/proc/{guests.init_pid(scratch, server_id)}/cgroup").read_text().splitlines()
                  if line.startswith("0::")]
        return guests._cgroup2_root() / line[len("0::/"):]
    first, second = init_cgroup(801), init_cgroup(802)
    assert first != second
    assert guests.guest_cgroup(801) in first.parents and guests.guest_cgroup(802) in second.parents


def test_private_network_connects_the_guests(scratch, hosts):
    _, first, _ = hosts
    assert "10.0.1.10/24" in ssh(scratch, first["ipv4"], "ip -o -4 addr show dev eth1")
    assert ssh(scratch, first["ipv4"], "timeout 5 bash -c 'head -c 4 < /dev/tcp/10.0.1.20/22'") == "SSH-"


def test_guest_has_no_clock_capability(scratch, hosts):
    _, first, _ = hosts
    bounding = int(ssh(scratch, first["ipv4"], "awk '/^CapBnd/{print $2}' /proc/1/status"), 16)
    assert not bounding & (1 << CAP_SYS_TIME)


def test_apt_works_through_the_proxy(scratch, hosts):
    _, first, _ = hosts
    ssh(scratch, first["ipv4"], "apt-get update -q")


def test_volume_is_a_block_device_that_survives_a_reboot(scratch, hosts):
    hooks, first, _ = hosts
    device = "/dev/disk/by-id/scsi-0HC_Volume_901"
    address = first["ipv4"]
    assert ssh(scratch, address, f"test -b {device} && echo block") == "block"
    ssh(scratch, address, f"mkfs.ext4 -q {device} && mkdir -p /mnt/data && "
                          f"echo \"UUID=$(blkid -s UUID -o value {device}) /mnt/data ext4 defaults,nofail 0 2\" >> /etc/fstab"
                          " && mount /mnt/data && echo kept > /mnt/data/marker")
    uptime_before = float(ssh(scratch, address, "cut -d' ' -f1 /proc/uptime"))
    hooks.server_rebooted(801)
    procs.wait_for(lambda: ssh(scratch, address, "cat /mnt/data/marker", check=False) == "kept", 90,
                   "the volume mounted again after the reboot")
    assert float(ssh(scratch, address, "cut -d' ' -f1 /proc/uptime")) < uptime_before + 60
    assert "10.0.1.10/24" in ssh(scratch, address, "ip -o -4 addr show dev eth1")


def test_power_off_and_on_keeps_the_disk(scratch, hosts):
    hooks, _, second = hosts
    ssh(scratch, second["ipv4"], "echo stays > /root/file")
    hooks.server_powered(802, False)
    assert not guests.init_pid(scratch, 802)
    hooks.server_powered(802, True)
    assert ssh(scratch, second["ipv4"], "cat /root/file") == "stays"


def test_deleting_a_server_removes_its_guest(scratch, hosts):
    hooks, _, second = hosts
    hooks.server_deleted(802)
    assert not guests.guest_dir(scratch, 802).exists()
    assert not guests.guest_cgroup(802).exists()
    assert not procs.port_open(second["ipv4"], 22)
    hooks.volume_detached(901, 801)
    hooks.volume_deleted(901)
    assert not volumes.loop_devices(scratch)
