"""A Hetzner Storage Box stand-in: an SFTP-only, chrooted account on the bridge address, port 23, key auth only.

Like a Storage Box (STORAGEBOX_FACTS, with their sources; tests/test_storagebox_standin.py checks the config):
SFTP on port 23 with an OpenSSH-format key (ed25519 allowed) in the account's own .ssh/authorized_keys, no shell,
no forwarding, the account sees only its own directory and relative paths start in its home. restic talks SFTP
to it for real (BACKUP_REPOSITORY=sftp://<user>@10.213.0.1:23/...).

It is Debian's sshd (openssh-server, fetched with `apt-get download` into the cache and unpacked there, never
installed, so the machine gets no sshd of its own) with its own configuration, run by the lab as a daemon with a
PID file. sshd's ChrootDirectory must be root-owned with no writable parent (the lab lives under /var/tmp, 1777),
so the box's directory is bind-mounted at CHROOT under /run; the account is a system user made by `up` and
removed by `down`, like the mount.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tests.testbed import layout, procs

PORT = 23
USER = "mrstoragebox"
CHROOT = Path("/run/mindroom-testbed-storagebox")
HOME = "/home"  # inside the chroot: where the account's relative paths start
REPOSITORY_PATH = "mindroom-testbed"
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd is built with this privilege separation directory and user
PRIVSEP_USER = "sshd"  # made by openssh-server's postinst, which never runs here
STORAGEBOX_FACTS = {
    # docs.hetzner.com/robot/storage-box/backup-space-ssh-keys: port 23 (SFTP, SCP, rsync, Borg) takes keys in
    # OpenSSH format, RSA/ECDSA/ED25519; the keys are in the account's .ssh/authorized_keys.
    "port": 23,
    "key_types": ("ssh-rsa", "ecdsa-sha2-nistp256", "ssh-ed25519"),
    "authorized_keys": ".ssh/authorized_keys",
    # docs.hetzner.com/robot/storage-box/general: a (sub-)account has access to its own directory only.
    "chrooted": True,
}


def _dir(lab: Path) -> Path:
    return lab / "storagebox"


def sshd_binary(cache: Path = layout.CACHE) -> Path:
    """Debian's sshd, unpacked once into the cache from `apt-get download openssh-server`."""
    root = cache / "storagebox-openssh"
    sshd = root / "usr/sbin/sshd"
    if not sshd.exists():
        with tempfile.TemporaryDirectory() as scratch:
            procs.run("sh", "-c", f"cd {scratch} && apt-get download -q openssh-server")
            [deb] = Path(scratch).glob("openssh-server_*.deb")
            shutil.rmtree(root, ignore_errors=True)
            procs.run("dpkg-deb", "-x", str(deb), str(root))
    return sshd


def sshd_config(lab: Path, bridge_ip: str) -> str:
    directory = _dir(lab)
    return (
        f"ListenAddress {bridge_ip}:{PORT}\n"
        f"HostKey {directory / 'ssh_host_ed25519_key'}\n"
        "PidFile none\n"
        f"AllowUsers {USER}\n"
        "AuthenticationMethods publickey\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin no\n"
        "UsePAM no\n"
        f"AuthorizedKeysFile {CHROOT}{HOME}/.ssh/authorized_keys\n"
        f"ChrootDirectory {CHROOT}\n"
        f"ForceCommand internal-sftp -d {HOME}\n"
        "Subsystem sftp internal-sftp\n"
        "AllowTcpForwarding no\n"
        "AllowAgentForwarding no\n"
        "AllowStreamLocalForwarding no\n"
        "X11Forwarding no\n"
        "PermitTunnel no\n"
        "PermitTTY no\n"
        "PermitUserRC no\n"
    )


def _system_user(name: str, made: Path) -> tuple[int, int]:
    """A system user without a home, a shell or a password (`*`: no password matches, and unlike useradd's `!`
    sshd does not take it for a locked account); `made` records that the lab created it (down removes it then)."""
    if procs.run("getent", "passwd", name, check=False) == "":
        procs.run("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                  "/usr/sbin/nologin", "--password", "*", name)
        made.write_text(name)
    entry = procs.run("getent", "passwd", name).split(":")
    return int(entry[2]), int(entry[3])


def _mounted(path: Path) -> bool:
    return any(line.split()[1] == str(path) for line in Path("/proc/self/mounts").read_text().splitlines())


def start(lab: Path, bridge_ip: str) -> dict[str, str]:
    directory = _dir(lab)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    uid, gid = _system_user(USER, directory / "made-user-account")
    _system_user(PRIVSEP_USER, directory / "made-user-privsep")
    box = directory / "box"
    home = box / HOME.lstrip("/")
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    box.chmod(0o755)
    client_key = lab / "ssh" / "storagebox_ed25519"
    if not client_key.exists():
        procs.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "testbed-storagebox", "-f", str(client_key))
    authorized = home / ".ssh/authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    for path, mode in ((home, 0o700), (home / ".ssh", 0o700), (authorized, 0o600)):
        os.chown(path, uid, gid)
        path.chmod(mode)
    host_key = directory / "ssh_host_ed25519_key"
    if not host_key.exists():
        procs.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "testbed-storagebox-host", "-f", str(host_key))
    CHROOT.mkdir(mode=0o755, exist_ok=True)
    if not _mounted(CHROOT):
        procs.run("mount", "--bind", str(box), str(CHROOT))
    if not PRIVSEP_DIR.is_dir():
        PRIVSEP_DIR.mkdir(mode=0o755)
        (directory / "made-privsep-dir").touch()
    config = directory / "sshd_config"
    config.write_text(sshd_config(lab, bridge_ip))
    sshd = str(sshd_binary())
    procs.run(sshd, "-t", "-f", str(config))
    procs.spawn([sshd, "-D", "-e", "-f", str(config)], directory / "sshd.pid", directory / "sshd.log")
    procs.wait_for(lambda: procs.port_open(bridge_ip, PORT), 10, f"the storage box stand-in on {bridge_ip}:{PORT}")
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[{bridge_ip}]:{PORT} {' '.join(Path(f'{host_key}.pub').read_text().split()[:2])}\n")
    return {"BACKUP_REPOSITORY": f"sftp://{USER}@{bridge_ip}:{PORT}/{REPOSITORY_PATH}",
            "BACKUP_SSH_KEY_PATH": str(client_key), "BACKUP_SSH_KNOWN_HOSTS_FILE": str(known_hosts)}


def repository_dir(lab: Path) -> Path:
    """Where the hosts' repositories are, seen from the machine (<BACKUP_REPOSITORY>/<server name>)."""
    return _dir(lab) / "box" / HOME.lstrip("/") / REPOSITORY_PATH


def stop(lab: Path) -> None:
    procs.stop(_dir(lab) / "sshd.pid")
    if _mounted(CHROOT):
        procs.run("umount", str(CHROOT))
    if CHROOT.is_dir():
        CHROOT.rmdir()
    if (_dir(lab) / "made-privsep-dir").exists():
        PRIVSEP_DIR.rmdir()
        (_dir(lab) / "made-privsep-dir").unlink()
    for made in sorted(_dir(lab).glob("made-user-*")):
        if procs.run("getent", "passwd", made.read_text(), check=False):
            procs.run("userdel", made.read_text())
        made.unlink()
