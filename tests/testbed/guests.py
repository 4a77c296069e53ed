"""Guests: one systemd-nspawn container per cloud server, booted with systemd as PID 1 and sshd.

Each guest has LAB/guests/<server id>/ with state.json (name, address octet, keys, private IP, volumes),
an overlayfs root over the shared image (upper/, work/, root/), real directories bind-mounted at
/var/lib/docker and /var/lib/containerd (overlay2 cannot nest on an overlay root), console.log, and the PID
file of its supervisor: `python -m tests.testbed.guests supervise LAB ID`, which runs systemd-nspawn and
boots it again when the guest reboots (nspawn exits 133), so `reboot` inside a guest works as on a server.

Docker-capable profile: cgroup v2 inside, CAP_NET_ADMIN, CAP_IPC_LOCK, CAP_BPF, CAP_PERFMON, the keyring and
bpf system calls, a writable /proc/sys/net. Never CAP_SYS_TIME (a guest could set the host's clock).

Volumes: an attached volume appears in the guest as the block device /dev/disk/by-id/scsi-0HC_Volume_<id>
plus /dev/loopN (so blkid and mount UUID=... find it). At boot nspawn binds both nodes; attaching to a
running guest creates the same two device nodes in the guest's /dev through /proc/<guest init>/root, so no
restart is needed. On a real server the by-id entry is a udev symlink; here it is the device node itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

from settings import HCLOUD_VOLUME_DEVICE_PREFIX
from tests.testbed import layout, network, volumes
from tests.testbed.procs import LabError, locked, read_pid, run, spawn, stop, wait_for, write_pidfile

REBOOT_EXIT_CODE = 133
BOOT_TIMEOUT = 90
CAPABILITIES = "CAP_NET_ADMIN,CAP_IPC_LOCK,CAP_BPF,CAP_PERFMON"
NSPAWN_ENV = {"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1", "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}


# -- state -------------------------------------------------------------------------------------------
def guest_dir(lab: Path, server_id: int) -> Path:
    return lab / "guests" / str(server_id)


def load(lab: Path, server_id: int) -> dict:
    path = guest_dir(lab, server_id) / "state.json"
    if not path.exists():
        raise LabError(f"server {server_id} has no guest in {lab}")
    return json.loads(path.read_text())


def save(lab: Path, state: dict) -> None:
    path = guest_dir(lab, state["id"]) / "state.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=1))
    temporary.replace(path)


def all_ids(lab: Path) -> list[int]:
    root = lab / "guests"
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.exists() else []


def _allocate(lab: Path, server_id: int, name: str, public_keys: list[str]) -> dict:
    """Reserve an address octet and write the guest's state (under the lab lock)."""
    with locked(lab / ".guests.lock"):
        try:
            return load(lab, server_id)
        except LabError:
            pass
        used = {load(lab, other)["octet"] for other in all_ids(lab)}
        free = [o for o in range(layout.FIRST_GUEST_OCTET, layout.LAST_GUEST_OCTET + 1) if o not in used]
        if not free:
            raise LabError("no free guest address left on the lab bridge")
        octet = free[0]
        state = {"id": server_id, "name": name, "octet": octet, "ipv4": f"{layout.PUBLIC_PREFIX}.{octet}",
                 "ipv6": f"{layout.GUEST_IPV6_PREFIX}{octet:x}", "public_keys": public_keys,
                 "private_ip": None, "volumes": {}}
        guest_dir(lab, server_id).mkdir(parents=True)
        save(lab, state)
        return state


# -- root filesystem ---------------------------------------------------------------------------------
def _mount_root(lab: Path, state: dict) -> Path:
    here = guest_dir(lab, state["id"])
    root = here / "root"
    for sub in ("upper", "work", "root", "docker", "containerd"):
        (here / sub).mkdir(exist_ok=True)
    if not os.path.ismount(root):
        run("mount", "-t", "overlay", "overlay", "-o",
            f"lowerdir={lab / 'base'},upperdir={here / 'upper'},workdir={here / 'work'}", str(root))
    (root / "etc/hostname").write_text(state["name"] + "\n")
    (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {state['name']}\n"
                                    "::1 localhost ip6-localhost ip6-loopback\n")
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    if not keys.exists():  # what the cloud puts there at creation; later changes belong to the deploy
        keys.write_text("".join(key.strip() + "\n" for key in state["public_keys"]))
        keys.chmod(0o600)
    return root


def _unmount_root(lab: Path, server_id: int) -> None:
    root = guest_dir(lab, server_id) / "root"
    for _ in range(5):
        if not os.path.ismount(root):
            return
        if subprocess.run(["umount", str(root)], capture_output=True).returncode != 0:
            subprocess.run(["sleep", "0.5"])
    if os.path.ismount(root):
        run("umount", "--lazy", str(root))


# -- boot and stop -------------------------------------------------------------------------------------
def _volume_binds(lab: Path, state: dict) -> list[str]:
    binds = []
    for volume_id in state["volumes"]:
        loop = volumes.device(lab, int(volume_id))
        binds += [f"--bind={loop}", f"--bind={loop}:{HCLOUD_VOLUME_DEVICE_PREFIX}{volume_id}"]
    return binds


# -- cgroups: each guest its own ---------------------------------------------------------------------
# The host has no systemd to give nspawn a scope, and --keep-unit keeps nspawn in the cgroup it starts in: with
# every guest started from the same cgroup, each nspawn put its guest at the same path (/payload), so the guests'
# systemds shared one cgroup tree and a unit of the same name in two guests (mindroom-backup.service) shared one
# cgroup: one guest's systemd removed it under the other's ("Failed to spawn executor: No such file or
# directory"). Each guest's nspawn therefore starts in a cgroup of its own.
CGROUP_PARENT = "mindroom-testbed"


def _cgroup2_root() -> Path:
    """Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[fields.index("-") + 1] == "cgroup2":
            return Path(fields[4])
    raise LabError("no cgroup v2 hierarchy is mounted (nspawn's unified hierarchy needs one)")


def guest_cgroup(server_id: int) -> Path:
    return _cgroup2_root() / CGROUP_PARENT / str(server_id)


def _enter_cgroup(path: Path):
    """A preexec_fn: the child process moves itself into `path` (writing 0 to cgroup.procs moves the writer)."""
    def enter():
        (path / "cgroup.procs").write_text("0")
    return enter


def remove_cgroups(path: Path, timeout: float = 10) -> None:
    """Remove a cgroup and the ones below it, deepest first (rmdir is how a cgroup is removed), waiting for the
    processes of a guest just stopped to be gone from them."""
    def removed() -> bool:
        for below, _, _ in os.walk(path, topdown=False):
            try:
                os.rmdir(below)
            except OSError:
                return False
        return not path.exists()
    wait_for(removed, timeout, f"the processes in cgroup {path} to end, to remove it", interval=0.2)


def nspawn_argv(lab: Path, state: dict) -> list[str]:
    here = guest_dir(lab, state["id"])
    return [
        "systemd-nspawn", "--boot", f"--directory={here / 'root'}", f"--machine={state['name']}",
        # the host has no systemd as PID 1 / no D-Bus: don't register with machined, stay in our cgroup
        "--register=no", "--keep-unit",
        f"--network-namespace-path={network.netns_path(state['octet'])}",
        "--resolv-conf=off", "--timezone=off", "--console=read-only",
        f"--bind-ro={lab / 'lxcfs'}:/var/lib/lxcfs",
        f"--capability={CAPABILITIES}", "--system-call-filter=@keyring", "--system-call-filter=bpf",
        f"--bind={here / 'docker'}:/var/lib/docker", f"--bind={here / 'containerd'}:/var/lib/containerd",
        *_volume_binds(lab, state),
    ]


def supervise(lab: Path, server_id: int) -> int:
    """Run the guest until it powers off; boot it again whenever it reboots. SIGTERM = clean poweroff."""
    here = guest_dir(lab, server_id)
    stopping = False
    child: subprocess.Popen | None = None

    def terminate(signum, frame):
        nonlocal stopping
        stopping = True
        if child and child.poll() is None:
            child.send_signal(signal.SIGTERM)  # nspawn powers the guest off cleanly

    signal.signal(signal.SIGTERM, terminate)
    env = {**os.environ, **NSPAWN_ENV}
    cgroup = guest_cgroup(server_id)
    cgroup.mkdir(parents=True, exist_ok=True)
    with open(here / "console.log", "ab") as console:
        while True:
            child = subprocess.Popen(nspawn_argv(lab, load(lab, server_id)), env=env, stdin=subprocess.DEVNULL,
                                     stdout=console, stderr=console, preexec_fn=_enter_cgroup(cgroup))
            write_pidfile(here / "nspawn.pid", child.pid)
            code = child.wait()
            if stopping or code != REBOOT_EXIT_CODE:
                (here / "nspawn.pid").unlink(missing_ok=True)
                return code


def init_pid(lab: Path, server_id: int) -> int | None:
    """The host PID of the guest's systemd (the nspawn process's child), if it runs."""
    nspawn = read_pid(guest_dir(lab, server_id) / "nspawn.pid")
    if not nspawn:
        return None
    children = Path(f"/proc/{nspawn}/task/{nspawn}/children").read_text().split()
    return int(children[0]) if children else None


def _ssh_open(ipv4: str) -> bool:
    try:
        with socket.create_connection((ipv4, 22), timeout=1) as connection:
            return connection.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def boot(lab: Path, server_id: int, wait: bool = True) -> None:
    state = load(lab, server_id)
    network.guest_up(state["octet"])
    _mount_root(lab, state)
    here = guest_dir(lab, server_id)
    spawn([sys.executable, "-m", "tests.testbed.guests", "supervise", str(lab), str(server_id)],
          here / "supervisor.pid", here / "supervisor.log", cwd=layout.REPO_ROOT)
    if wait:
        wait_for(lambda: _ssh_open(state["ipv4"]) or _check_alive(lab, server_id), BOOT_TIMEOUT,
                 f"sshd on {state['name']} ({state['ipv4']}); see {here / 'console.log'}", interval=0.2)


def _check_alive(lab: Path, server_id: int) -> bool:
    if not read_pid(guest_dir(lab, server_id) / "supervisor.pid"):
        raise LabError(f"guest of server {server_id} exited during boot; see {guest_dir(lab, server_id) / 'console.log'}")
    return False


def shutdown(lab: Path, server_id: int) -> None:
    """Power the guest off (clean shutdown, then kill); its disk and addresses stay."""
    stop(guest_dir(lab, server_id) / "supervisor.pid", timeout=30)
    stop(guest_dir(lab, server_id) / "nspawn.pid", timeout=5)


def reboot(lab: Path, server_id: int) -> None:
    """Ask the guest's systemd to reboot (ctrl-alt-del = reboot.target), like an ACPI reboot."""
    pid = init_pid(lab, server_id)
    if pid:
        os.kill(pid, signal.SIGINT)
    else:
        boot(lab, server_id)


# -- lifecycle used by the cloud hooks -------------------------------------------------------------
def create(lab: Path, server_id: int, name: str, public_keys: list[str]) -> dict:
    """Boot a guest for a new server; returns its addresses once sshd answers."""
    state = _allocate(lab, server_id, name, public_keys)
    boot(lab, server_id)
    return {"ipv4": state["ipv4"], "ipv6": state["ipv6"]}


def delete(lab: Path, server_id: int) -> None:
    try:
        state = load(lab, server_id)
    except LabError:
        return
    shutdown(lab, server_id)
    remove_cgroups(guest_cgroup(server_id))
    network.guest_down(state["octet"])
    _unmount_root(lab, server_id)
    shutil.rmtree(guest_dir(lab, server_id))


def set_private_ip(lab: Path, server_id: int, ip: str, present: bool) -> None:
    state = load(lab, server_id)
    network.guest_up(state["octet"])
    network.private_address(state["octet"], ip, present)
    state["private_ip"] = ip if present else None
    save(lab, state)


def _device_nodes(loop: str, volume_id: int) -> list[str]:
    return [loop, f"{HCLOUD_VOLUME_DEVICE_PREFIX}{volume_id}"]


def attach_volume(lab: Path, server_id: int, volume_id: int) -> None:
    state = load(lab, server_id)
    state["volumes"][str(volume_id)] = True
    save(lab, state)
    loop = volumes.device(lab, volume_id, timeout=60)
    pid = init_pid(lab, server_id)
    if not pid:
        return  # nspawn binds it at the next boot
    rdev = os.stat(loop).st_rdev
    for node in _device_nodes(loop, volume_id):
        path = Path(f"/proc/{pid}/root{node}")
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.mknod(path, 0o660 | stat.S_IFBLK, rdev)
            os.chmod(path, 0o660)


def _mounts_of(pid: int, device: str) -> list[str]:
    """Mount points in the guest of the block device "major:minor", deepest first."""
    targets = [line.split()[4] for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
               if line.split()[2] == device]
    return sorted(targets, key=len, reverse=True)


def detach_volume(lab: Path, server_id: int, volume_id: int) -> None:
    state = load(lab, server_id)
    state["volumes"].pop(str(volume_id), None)
    save(lab, state)
    pid = init_pid(lab, server_id)
    if pid:  # like pulling the disk: unmount what uses it inside the guest, then remove its nodes
        loop = volumes.device(lab, volume_id)
        enter = ["nsenter", f"--target={pid}", "--mount"]
        rdev = os.stat(loop).st_rdev
        for target in _mounts_of(pid, f"{os.major(rdev)}:{os.minor(rdev)}"):
            subprocess.run([*enter, "umount", target], capture_output=True)
        for node in _device_nodes(loop, volume_id):
            path = Path(f"/proc/{pid}/root{node}")
            if path.is_block_device():
                subprocess.run([*enter, "umount", node], capture_output=True)  # bound there at boot
                path.unlink(missing_ok=True)


def delete_all(lab: Path) -> None:
    """Remove every guest of the lab, then any namespace, veth or mount left behind by a crash."""
    for server_id in all_ids(lab):
        try:
            delete(lab, server_id)
        except Exception as error:  # keep going: down must remove everything it can
            print(f"testbed: removing guest {server_id}: {error}", file=sys.stderr)
    for octet in network.leftover_octets():
        network.guest_down(octet)
    remove_cgroups(_cgroup2_root() / CGROUP_PARENT)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "supervise":
        sys.exit(supervise(Path(sys.argv[2]), int(sys.argv[3])))
    sys.exit("usage: python -m tests.testbed.guests supervise LAB SERVER_ID")
