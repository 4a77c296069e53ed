"""Who may log in as root, and the platform's SSH key for Dokku.

- platform_key() (platform host): an ed25519 key at /opt/platform/dokku-ssh-key, generated once (only when the
  file is missing, never regenerated), and /opt/platform/dokku-known-hosts with every Dokku host's SSH host key
  under its private IP, so the provisioner connects with strict host key checking over the private network.
- root_access() (every host): root's authorized_keys holds exactly the admin keys (host data admin_public_keys:
  SSH_PUBLIC_KEY_PATH and SSH_EXTRA_PUBLIC_KEY_PATHS) and, on a Dokku host, the platform's public key restricted
  with from="<platform private IP>", which also goes into Dokku's ssh-keys (tasks/dokku.py's helper) as
  "platform". Any other line goes: keys added by hand, and the provisioner key an older bootstrap gave the Dokku
  servers at creation (it may run dokku only: dokku-deploy and Dokku's ssh-keys, tasks/dokku.py). The new file
  replaces the old one only after ssh-keygen parsed every line, in one rename; group_data/all.py refuses admin
  keys that lack the key the deploy logs in with, so a run never removes its own way in.

Cross-host data and order: each side reads the other's public keys from the other host's snapshot
(tasks/snapshot.py, `on=`), asked at prepare time so that host's own single read answers them, and read at
execution time: the key exists by then on every run, the first included, with no special first-run path.
pyinfra orders operations as a graph of each host's sequence, not strictly by line, so an operation of a Dokku
host is only ordered after the platform's key generation if the two sequences meet: root_access() is therefore
called for every host (deploy.py). Declared at the same place on every host, it is one shared node that comes
after the key generation.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, deploy

from tasks import dokku, inventory_hosts, ops, snapshot
from tasks.inventory_hosts import dokku_hosts
from tasks.platform import platform_directory
from tasks.snapshot import snapshot_operation

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"
ROOT_AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"


@snapshot_operation(lambda path, **_: {"paths": [path]})
def ed25519_key(path: str, comment: str):
    """Generate an ed25519 key pair at path unless the private key exists (it is never regenerated). Asked as a
    path (exists or not), so no digest of the private key is ever read. Custom: pyinfra has no operation that
    generates a key."""
    if snapshot.read()["paths"].get(path, "missing") != "missing":
        host.noop(f"{path} exists")
        return
    yield StringCommand("ssh-keygen", "-q", "-t", "ed25519", "-N", "''", "-C", QuoteString(comment), "-f",
                        QuoteString(path))
    yield StringCommand("chmod", "600", QuoteString(path))


def _first_line(on, path: str) -> str | None:
    lines = snapshot.read(on=on)["contents"].get(path)
    return lines[0].strip() if lines else None


@snapshot_operation(lambda path, **_: {"files": [path]})
def known_hosts(path: str, dokku_hosts: list):
    """path lists every Dokku host's SSH host key under its private IP (read from the Dokku hosts' snapshots)."""
    keys = [(dokku_host.data.private_ip, _first_line(dokku_host, HOST_KEY)) for dokku_host in dokku_hosts]
    rendered = ops.render("templates/platform/dokku-known-hosts.j2", known_hosts=[k for k in keys if k[1]])
    yield from ops.write(path, rendered.encode(), "644")


@deploy("Keys: platform key")
def platform_key():
    data = host.data
    platform_directory()
    ed25519_key(name=f"Generate the platform key {data.platform_key_path} (once)", path=data.platform_key_path,
                comment=data.platform_key_comment)
    hosts = dokku_hosts()
    for dokku_host in hosts:
        snapshot.ask(on=dokku_host, contents=[HOST_KEY])
    known_hosts(name=f"Render {data.platform_known_hosts_path}", path=data.platform_known_hosts_path,
                dokku_hosts=hosts)


@snapshot_operation(lambda **_: {"files": [ROOT_AUTHORIZED_KEYS], "dokku": "dokku" in host.groups})
def root_authorized_keys(admin_keys: list[str], platform_host=None):
    """root's authorized_keys is exactly the admin keys and, on a Dokku host, the platform's public key (read now
    from the platform's snapshot) from the platform's private IP only; that key is in Dokku's ssh-keys too."""
    if not admin_keys:
        raise OperationError("no admin key for root's authorized_keys: it would lock everyone out")
    lines = [key.strip() for key in admin_keys]
    platform_key = _platform_public_key(platform_host) if platform_host and "dokku" in host.groups else None
    if platform_key:
        data = platform_host.data
        lines.append(f'from="{data.private_ip}" {platform_key} {data.platform_key_comment}')
    # every line must parse as a key, or the candidate is dropped and the live file stays
    parsed_all = f'test "$(ssh-keygen -l -f {{path}} | wc -l)" -eq {len(lines)}'
    yield from ops.write(ROOT_AUTHORIZED_KEYS, "".join(f"{line}\n" for line in lines).encode(), "600",
                         validate=parsed_all)
    if platform_key:
        yield from dokku.ssh_key._inner(key_name=platform_host.data.platform_dokku_key_name, public_key=platform_key)


def _platform_public_key(platform_host) -> str:
    data = platform_host.data
    public_key = _first_line(platform_host, f"{data.platform_key_path}.pub")
    if not public_key:
        raise OperationError(f"{platform_host.name} has no {data.platform_key_path}.pub; the platform key step "
                             "must run first")
    return " ".join(public_key.split()[:2])


@deploy("Keys: root's authorized_keys")
def root_access():
    """Call for every host (see the module's docstring)."""
    platform_host = inventory_hosts.platform_host()
    if platform_host is not None and "dokku" in host.groups:
        snapshot.ask(on=platform_host, contents=[f"{platform_host.data.platform_key_path}.pub"])
    root_authorized_keys(name="Write root's authorized_keys exactly: the admin keys (Dokku hosts: and the platform key)",
                         admin_keys=host.data.admin_public_keys, platform_host=platform_host)
