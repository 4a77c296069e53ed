"""tasks/volume.py on every host: the volume is ext4, in fstab by UUID with nofail exactly once, and mounted."""

import pytest

from tests.hosts import live
from tests.hosts.roles import group_data

testinfra_hosts = live.hosts("dokku") + live.hosts("platform")


@pytest.fixture
def mount_point(host_data):
    return group_data(host_data["role"])["mount_point"]


@pytest.fixture
def volume_uuid(host, host_data):
    probe = host.check_output(f"blkid -p -o export {host_data['volume_device']}")
    values = dict(line.split("=", 1) for line in probe.splitlines() if "=" in line)
    assert values.get("TYPE") == "ext4"
    return values["UUID"]


def test_volume_in_fstab_once_by_uuid(host, mount_point, volume_uuid):
    entries = [line.split() for line in host.file("/etc/fstab").content_string.splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
    at_mount_point = [entry for entry in entries if entry[1] == mount_point]
    assert len(at_mount_point) == 1, at_mount_point
    spec, _, fs_type, options = at_mount_point[0][:4]
    assert spec == f"UUID={volume_uuid}"
    assert fs_type == "ext4"
    assert "nofail" in options.split(",")


def test_volume_mounted(host, host_data, mount_point):
    mount = host.mount_point(mount_point)
    assert mount.exists
    assert mount.filesystem == "ext4"
    # the device mounted there is the volume (compare device numbers: in a container the source name differs)
    assert host.check_output(f"stat -L -c %t:%T {host_data['volume_device']}") == \
        host.check_output(f"stat -c %t:%T $(findmnt -n -o SOURCE {mount_point})")
