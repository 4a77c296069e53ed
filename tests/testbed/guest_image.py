"""The guest image: a debootstrapped Debian trixie rootfs, made into a testbed host once and cached.

Built with debootstrap from the host's own Debian mirror (about a minute), packed as a zstd tarball in
CACHE and extracted once per lab as the read-only lower layer every guest's overlayfs shares.
What the image changes compared with a Hetzner debian-13 image, and why:
- apt goes through the lab's apt-cacher-ng on the bridge (guests have no other way out); the lab's own
  apt repository on the bridge address is fetched DIRECT (apt-cacher-ng refuses it).
- an empty machine-id and no SSH host keys, so every guest makes its own at first boot.
- /proc/uptime comes from lxcfs (the guest's own boot time), so pyinfra's server.reboot sees the reboot.
- `mindroom-testbed-volumes.service` mounts the ext4 volumes listed in /etc/fstab at boot: inside a
  container there is no udev and systemd's fstab generator skips block devices, which a real server
  mounts by itself. The deploy's fstab line is the production one; only the image makes up for this.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.testbed import layout
from tests.testbed.procs import LabError, locked, run

IMAGE_VERSION = 1  # bump when the build or the customisation below changes
PACKAGES = ("openssh-server", "python3", "systemd", "systemd-sysv", "dbus", "iproute2", "sudo",
            "ca-certificates", "e2fsprogs", "procps")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"

_APT_PROXY = f"""// mindroom testbed: guests reach apt only through the lab's caching proxy on the bridge.
Acquire::http::Proxy "http://{layout.BRIDGE_IP}:{layout.APT_PROXY_PORT}";
// the lab's own repositories (the Dokku stand-in) are fetched directly
Acquire::http::Proxy::{layout.BRIDGE_IP} "DIRECT";
Acquire::Check-Valid-Until "false";
"""
_SSH_HOST_KEYS = """[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""
_UPTIME_MOUNT = """[Unit]
Description=mindroom testbed: this guest's own /proc/uptime (lxcfs)
DefaultDependencies=no
ConditionPathExists=/var/lib/lxcfs/proc/uptime

[Mount]
What=/var/lib/lxcfs/proc/uptime
Where=/proc/uptime
Type=none
Options=bind
"""
_VOLUMES_SERVICE = """[Unit]
Description=mindroom testbed: mount ext4 volumes from /etc/fstab (no udev in a container)
DefaultDependencies=no
After=local-fs-pre.target
Before=local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/mount -a -t ext4

[Install]
WantedBy=local-fs.target
"""


def mirrors() -> tuple[str, str]:
    """The Debian and security mirror URLs the host itself uses (what the guests' proxy fetches from)."""
    uris = []
    for path in (Path("/etc/apt/sources.list.d/debian.sources"),):
        if path.exists():
            uris += [line.split()[1] for line in path.read_text().splitlines() if line.startswith("URIs:")]
    main = next((uri for uri in uris if not uri.rstrip("/").endswith("-security")), DEFAULT_MIRROR)
    security = next((uri for uri in uris if uri.rstrip("/").endswith("-security")), DEFAULT_SECURITY_MIRROR)
    return main.rstrip("/"), security.rstrip("/")


def sources(main: str, security: str, suite: str = layout.SUITE) -> str:
    return (f"Types: deb\nURIs: {main}\nSuites: {suite} {suite}-updates\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
            f"Types: deb\nURIs: {security}\nSuites: {suite}-security\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")


def image_path(cache: Path = layout.CACHE) -> Path:
    return cache / f"{layout.SUITE}-guest-v{IMAGE_VERSION}.tar.zst"


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _enable(root: Path, unit: str, target: str) -> None:
    wants = root / "etc/systemd/system" / f"{target}.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / unit
    link.unlink(missing_ok=True)
    link.symlink_to(f"../{unit}")


def customize(root: Path, main: str, security: str) -> None:
    """Turn a debootstrapped rootfs into the testbed's guest image (see the module docstring)."""
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    _write(root, "etc/apt/sources.list.d/debian.sources", sources(main, security))
    _write(root, "etc/apt/apt.conf.d/00mindroom-testbed-proxy", _APT_PROXY)
    _write(root, "etc/resolv.conf", "# mindroom testbed: no DNS; apt uses the proxy on the bridge\n")
    _write(root, "etc/machine-id", "")
    dbus_id = root / "var/lib/dbus/machine-id"
    dbus_id.parent.mkdir(parents=True, exist_ok=True)
    dbus_id.unlink(missing_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    _write(root, "etc/systemd/system/ssh.service.d/hostkeys.conf", _SSH_HOST_KEYS)
    (root / "etc/hostname").unlink(missing_ok=True)
    _write(root, "etc/systemd/system/proc-uptime.mount", _UPTIME_MOUNT)
    _enable(root, "proc-uptime.mount", "sysinit.target")
    _write(root, "etc/systemd/system/mindroom-testbed-volumes.service", _VOLUMES_SERVICE)
    _enable(root, "mindroom-testbed-volumes.service", "local-fs.target")
    _write(root, "etc/mindroom-testbed-image", f"mindroom testbed guest image v{IMAGE_VERSION} ({layout.SUITE})\n")
    for leftover in [*(root / "var/cache/apt/archives").glob("*.deb"), *(root / "var/lib/apt/lists").glob("*_*")]:
        leftover.unlink()


def ensure_image(cache: Path = layout.CACHE) -> Path:
    """Return the cached image tarball, building it first if it is missing (debootstrap, about a minute)."""
    target = image_path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    with locked(cache / ".image.lock"):
        if target.is_file() and target.stat().st_size > 0:
            return target
        main, security = mirrors()
        root = cache / f"build-{layout.SUITE}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        print(f"testbed: building the {layout.SUITE} guest image from {main} (about a minute, cached after)")
        run("debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", layout.SUITE, str(root), main)
        customize(root, main, security)
        partial = target.with_suffix(".partial")
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "--xattrs", "--acls", "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        subprocess.run(["zstd", "-T0", "-3", "-q", "-f", "-o", str(partial)], stdin=tar.stdout, check=True)
        if tar.wait() != 0:
            raise LabError(f"packing the guest image from {root} failed")
        partial.rename(target)
        shutil.rmtree(root)
        return target


def extract_base(lab: Path, tarball: Path) -> Path:
    """Extract the image once per lab as the shared read-only lower layer of every guest's root."""
    base = lab / "base"
    with locked(lab / ".base.lock"):
        marker = lab / "base.complete"
        if marker.exists() and marker.read_text() == tarball.name:
            return base
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        run("tar", "-C", str(base), "--numeric-owner", "--xattrs", "--acls", "-I", "zstd", "-xf", str(tarball))
        marker.write_text(tarball.name)
    return base
