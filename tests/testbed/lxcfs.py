"""lxcfs on LAB/lxcfs: gives each guest its own /proc/uptime (the image bind-mounts it over /proc/uptime).

Without it a guest reports the host's uptime and pyinfra's server.reboot waits forever for it to drop.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.testbed import procs


def start(lab: Path, bridge_ip: str = "") -> dict[str, str]:
    mountpoint = lab / "lxcfs"
    if not os.path.ismount(mountpoint):
        mountpoint.mkdir(parents=True, exist_ok=True)
        procs.stop(lab / "lxcfs.pid")
        procs.spawn(["lxcfs", "--foreground", str(mountpoint)], lab / "lxcfs.pid", lab / "logs/lxcfs.log")
        procs.wait_for(lambda: (mountpoint / "proc/uptime").exists(), 10, f"lxcfs on {mountpoint}")
    return {}


def stop(lab: Path) -> None:
    mountpoint = lab / "lxcfs"
    if os.path.ismount(mountpoint):
        procs.run("umount", str(mountpoint), check=False)
        if os.path.ismount(mountpoint):
            procs.run("umount", "--lazy", str(mountpoint))
    procs.stop(lab / "lxcfs.pid")
