"""Cloud volumes as real block devices: a sparse file per volume behind a loop device.

LAB/volumes/<id>.img is the disk, LAB/volumes/<id>.json records its loop device. Only loop devices backed
by files in LAB are ever detached, so other users of loop devices on the machine are left alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.testbed.procs import LabError, locked, run, wait_for

GIB = 1024 ** 3


def _dir(lab: Path) -> Path:
    return lab / "volumes"


def _backing(lab: Path, volume_id: int) -> Path:
    return _dir(lab) / f"{volume_id}.img"


def loop_devices(lab: Path) -> dict[str, str]:
    """{loop device: backing file} for every loop device whose file lies in this lab."""
    listing = json.loads(run("losetup", "--json", "--list") or '{"loopdevices": []}')
    prefix = str(_dir(lab)) + "/"
    return {entry["name"]: entry["back-file"] for entry in listing.get("loopdevices", [])
            if (entry.get("back-file") or "").startswith(prefix)}


def find(lab: Path, volume_id: int) -> str | None:
    backing = str(_backing(lab, volume_id))
    for loop, file in loop_devices(lab).items():
        if file.removesuffix(" (deleted)") == backing:
            return loop
    return None


def device(lab: Path, volume_id: int, timeout: float = 0) -> str:
    """The loop device of a volume (/dev/loopN), waiting up to timeout for it (the fake API may run the
    attach action while the create action is still making the device)."""
    found = wait_for(lambda: find(lab, volume_id), timeout, f"the loop device of volume {volume_id}") if timeout \
        else find(lab, volume_id)
    if not found:
        raise LabError(f"volume {volume_id} has no loop device (no {_backing(lab, volume_id)})")
    return found


def create(lab: Path, volume_id: int, size_gb: int) -> str:
    """Make the sparse file and its loop device (idempotent); return the device."""
    with locked(lab / ".volumes.lock"):
        backing = _backing(lab, volume_id)
        backing.parent.mkdir(parents=True, exist_ok=True)
        if not backing.exists():
            with open(backing, "wb") as disk:
                disk.truncate(size_gb * GIB)
        return find(lab, volume_id) or run("losetup", "--find", "--show", str(backing)).strip()


def resize(lab: Path, volume_id: int, size_gb: int) -> None:
    backing = _backing(lab, volume_id)
    if backing.stat().st_size < size_gb * GIB:
        os.truncate(backing, size_gb * GIB)
        run("losetup", "--set-capacity", device(lab, volume_id))


def delete(lab: Path, volume_id: int) -> None:
    with locked(lab / ".volumes.lock"):
        try:
            run("losetup", "--detach", device(lab, volume_id))
        except LabError:
            pass
        _backing(lab, volume_id).unlink(missing_ok=True)


def detach_all(lab: Path) -> None:
    """Detach every loop device of this lab (for `down`)."""
    for loop in loop_devices(lab):
        run("losetup", "--detach", loop, check=False)


def node_numbers(loop: str) -> tuple[int, int]:
    rdev = os.stat(loop).st_rdev
    return os.major(rdev), os.minor(rdev)
