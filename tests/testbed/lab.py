"""`up` and `down`: the whole lab, in order, and its removal (also after a crash).

up: guest image (cached) -> bridges -> lxcfs -> apt proxy -> SSH keys -> stand-ins (Dokku apt repo, Pebble,
registry, the fake Stripe API, the Storage Box, the Object Storage) -> the fake Hetzner API with the testbed's
hooks -> .env.testbed. Every step is idempotent.
down: the API first (no hook may start a guest while we remove them), then guests, loop devices,
stand-ins, bridges, anything still mounted or running from LAB, LAB itself and .env.testbed.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

from tests.testbed import (aptproxy, aptserve, cloud, envfile, guest_image, guests, layout, lxcfs, network, procs,
                           volumes)

REQUIRED_TOOLS = ("systemd-nspawn", "debootstrap", "zstd", "ip", "losetup", "lxcfs", "ssh-keygen", "setsid")
# Stand-ins with the shape start(lab, bridge_ip) -> settings / stop(lab), in start order.
STANDINS = ("tests.testbed.pebble", "tests.testbed.registry", "tests.testbed.webhook", "tests.testbed.stripeapi",
            "tests.testbed.storagebox", "tests.testbed.objectstorage")


def check_host() -> None:
    if os.geteuid() != 0:
        raise procs.LabError("the testbed needs root (network namespaces, nspawn, loop devices)")
    missing = [tool for tool in REQUIRED_TOOLS if not shutil.which(tool)]
    if not Path("/usr/sbin/apt-cacher-ng").exists():
        missing.append("apt-cacher-ng")
    if missing:
        raise procs.LabError(f"missing host tools: {', '.join(missing)} "
                             "(as root, ./dev rehearse and ./dev test install them)")


def ssh_keys(lab: Path) -> None:
    keys = lab / "ssh"
    keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, comment in (("admin_ed25519", "testbed-admin"), ("dokku_provisioner", "testbed-dokku-provisioner")):
        if not (keys / name).exists():
            procs.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(keys / name))


def _standins() -> list:
    modules = []
    for name in STANDINS:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            print(f"testbed: WARNING: stand-in {name} is not available; its settings are missing", file=sys.stderr)
    return modules


def up(lab: Path = layout.LAB, cache: Path = layout.CACHE, dokku_servers: int = 1,
       env_file: Path = layout.ENV_FILE) -> dict[str, str]:
    check_host()
    lab.mkdir(parents=True, exist_ok=True)
    guest_image.extract_base(lab, guest_image.ensure_image(cache))
    network.bridges_up()
    lxcfs.start(lab)
    aptproxy.start(lab, layout.BRIDGE_IP, cache / "apt-cacher-ng")
    ssh_keys(lab)
    generated = envfile.generated_values(lab)
    settings = {**envfile.base_settings(lab, dokku_servers), **generated}
    try:
        version = _dokku_version()
        settings.update(aptserve.start(lab, layout.BRIDGE_IP, [version, layout.next_dokku_version(version)]))
    except ModuleNotFoundError as error:
        if error.name != "tests.testbed.aptrepo":
            raise
        print("testbed: WARNING: tests.testbed.aptrepo is not available; no Dokku apt repository", file=sys.stderr)
    for module in _standins():
        settings.update(module.start(lab, layout.BRIDGE_IP))
    settings.update(cloud.start(lab, generated["HCLOUD_TOKEN"]))
    envfile.write(env_file, settings)
    return settings


def _dokku_version() -> str:
    import settings as project_settings

    return project_settings.load_settings({"DOMAIN": layout.TEST_DOMAIN}).dokku_version


def _mounts_under(lab: Path) -> list[str]:
    prefix = str(lab) + "/"
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def down(lab: Path = layout.LAB, env_file: Path = layout.ENV_FILE) -> list[str]:
    """Remove everything up made; returns the problems met (empty when all is gone)."""
    problems: list[str] = []

    def attempt(what: str, action, *args) -> None:
        try:
            action(*args)
        except Exception as error:  # keep going: everything that can be removed must be
            problems.append(f"{what}: {error}")

    attempt("fake API", cloud.stop, lab)
    attempt("guests", guests.delete_all, lab)
    attempt("loop devices", volumes.detach_all, lab)
    for module in reversed(_standins()):
        attempt(module.__name__, module.stop, lab)
    attempt("apt repository", aptserve.stop, lab)
    attempt("apt proxy", aptproxy.stop, lab)
    attempt("lxcfs", lxcfs.stop, lab)
    attempt("bridges", network.bridges_down)
    if lab.exists():
        for pidfile in [*lab.glob("*.pid"), *lab.glob("guests/*/*.pid")]:
            attempt(f"process of {pidfile}", procs.stop, pidfile)
        for point in _mounts_under(lab):
            attempt(f"mount {point}", procs.run, "umount", "--lazy", point)
        attempt("loop devices", volumes.detach_all, lab)
        remaining = _mounts_under(lab)
        if remaining:
            problems.append(f"still mounted, {lab} kept: {', '.join(remaining)}")
        else:
            attempt(f"removing {lab}", shutil.rmtree, lab)
    env_file.unlink(missing_ok=True)
    return problems
