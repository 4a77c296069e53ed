"""The server's Hetzner volume (shared by both roles): ext4 only if it holds no filesystem, mounted at the
role's mount point (host data `mount_point`), in fstab by UUID with nofail, exactly once.

The device comes from bootstrap's outputs (host data `volume_device`). What lives on the volume is placed by
the task that owns it (tasks/docker.py: Docker's data-root; tasks/dokku.py: /home/dokku).
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import DeployError, deploy

from tasks import ops


@deploy("Volume")
def mount(mount_point=None, device=None):
    mount_point = mount_point or host.data.mount_point
    device = device or host.data.volume_device
    if not device:
        raise DeployError(f"{host.name} has no volume in OUTPUTS_FILE; run `python bootstrap.py apply`")
    ops.volume_filesystem(name=f"Mount the volume at {mount_point} (ext4 only if empty, fstab by UUID)",
                          device=device, mount_point=mount_point)
