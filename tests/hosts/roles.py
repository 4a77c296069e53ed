"""Role values the host tests expect, from the same group data the deploy uses (group_data/<group>.py)."""

import runpy
from pathlib import Path

_GROUP_DATA = Path(__file__).resolve().parents[2] / "group_data"


def group_data(group: str | None) -> dict:
    """A group's data as pyinfra sees it: group_data/all.py overlaid by group_data/<group>.py (None: all.py only)."""
    values = runpy.run_path(str(_GROUP_DATA / "all.py"))
    if group:
        values.update(runpy.run_path(str(_GROUP_DATA / f"{group}.py")))
    return {key: value for key, value in values.items() if not key.startswith("_")}


def in_container(host) -> bool:
    """The deploy's own branch rule: on a host where `systemd-detect-virt --container` names a container (the host
    snapshot's `container`), what a container cannot do (swapon, vm.* sysctls) is configured, not applied; tests
    check the configuration there and say so."""
    return host.run("systemd-detect-virt --container").stdout.strip() not in ("", "none")
