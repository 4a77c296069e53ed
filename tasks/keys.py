"""The platform's SSH key for Dokku: generated on the platform host, authorized on every Dokku host.

- platform_key() (platform host): an ed25519 key at /opt/platform/dokku-ssh-key, generated once (only when the
  file is missing, never regenerated), and /opt/platform/dokku-known-hosts with every Dokku host's SSH host key
  under its private IP, so the provisioner connects with strict host key checking over the private network.
- authorize_platform_key() (each Dokku host): the public half in root's authorized_keys, restricted with
  from="<platform private IP>", and in Dokku's ssh-keys (tasks/dokku.py's helper) as "platform".

Cross-host data and order: each side reads the other's public keys from the other host's snapshot
(tasks/snapshot.py, `on=`), asked at prepare time so that host's own single read answers them, and read at
execution time: the key exists by then on every run, the first included, with no special first-run path.
pyinfra orders operations as a graph of each host's sequence, not strictly by line, so an operation of a Dokku
host is only ordered after the platform's key generation if the two sequences meet: the authorizing operation
is therefore called for every host (deploy.py calls authorize_platform_key() everywhere). Declared at the same
place on every host, it is one shared node that comes after the key generation; it changes Dokku hosts only.
"""

from __future__ import annotations

from pyinfra import host, inventory
from pyinfra.api import OperationError, QuoteString, StringCommand, deploy

from tasks import dokku, ops, snapshot
from tasks.platform import TEMPLATES, dokku_hosts, platform_directory
from tasks.snapshot import snapshot_operation

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"
ROOT_AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"


@snapshot_operation(lambda path, **_: {"paths": [path]})
def ed25519_key(path: str, comment: str):
    """Generate an ed25519 key pair at path unless the private key exists (it is never regenerated). Asked as a
    path (exists or not), so no digest of the private key is ever read."""
    if snapshot.read()["paths"].get(path, "missing") != "missing":
        host.noop(f"{path} exists")
        return
    yield StringCommand("ssh-keygen", "-q", "-t", "ed25519", "-N", "''", "-C", QuoteString(comment), "-f",
                        QuoteString(path))
    yield StringCommand("chmod", "600", QuoteString(path))


def _platform_host():
    platform_hosts = inventory.get_group("platform", default=[])
    return platform_hosts[0] if platform_hosts else None


def _first_line(on, path: str) -> str | None:
    lines = snapshot.read(on=on)["contents"].get(path)
    return lines[0].strip() if lines else None


@snapshot_operation(lambda path, **_: {"files": [path]})
def known_hosts(path: str, dokku_hosts: list):
    """path lists every Dokku host's SSH host key under its private IP (read from the Dokku hosts' snapshots)."""
    keys = [(dokku_host.data.private_ip, _first_line(dokku_host, HOST_KEY)) for dokku_host in dokku_hosts]
    rendered = ops.render(str(TEMPLATES / "platform/dokku-known-hosts.j2"), known_hosts=[k for k in keys if k[1]])
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


@snapshot_operation(lambda **_: {})
def platform_key_authorized(platform_host):
    """On a Dokku host: the platform's public key (read now from the platform's snapshot) in root's
    authorized_keys from the platform's private IP only, and in Dokku's ssh-keys. Elsewhere: nothing."""
    if "dokku" not in host.groups:
        host.noop("not a Dokku host")
        return
    data = platform_host.data
    public_key = _first_line(platform_host, f"{data.platform_key_path}.pub")
    if not public_key:
        raise OperationError(f"{platform_host.name} has no {data.platform_key_path}.pub; the platform key step "
                             "must run first")
    key = " ".join(public_key.split()[:2])
    yield from ops.authorized_key._inner(path=ROOT_AUTHORIZED_KEYS, public_key=key,
                                         options=f'from="{data.private_ip}"', comment=data.platform_key_comment)
    yield from dokku.ssh_key._inner(key_name=data.platform_dokku_key_name, public_key=key)


@deploy("Keys: authorize the platform key")
def authorize_platform_key():
    """Call for every host (see the module's docstring); only Dokku hosts change."""
    platform_host = _platform_host()
    if platform_host is None:
        return
    if "dokku" in host.groups:
        snapshot.ask(on=platform_host, contents=[f"{platform_host.data.platform_key_path}.pub"])
        snapshot.ask(contents=[ROOT_AUTHORIZED_KEYS], dokku=True)
    platform_key_authorized(name="Authorize the platform key (root from the platform's private IP, Dokku's "
                                 "ssh-keys)", platform_host=platform_host)
