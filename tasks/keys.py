"""The platform's SSH key for Dokku: generated on the platform host, authorized on every Dokku host.

- platform_key() (platform host): an ed25519 key at /opt/platform/dokku-ssh-key, generated once (only when the
  file is missing, never regenerated), and /opt/platform/dokku-known-hosts with every Dokku host's SSH host key
  under its private IP, so the provisioner connects with strict host key checking over the private network.
- authorize_platform_key() (each Dokku host): the public half in root's authorized_keys, restricted with
  from="<platform private IP>", and in Dokku's ssh-keys (tasks/dokku.py's helper) as "platform".

Cross-host data and order: when the key already exists at prepare time (every run but the first), its public
half is read as a fact from the platform host and the Dokku hosts get ordinary idempotent operations. On the
first run it does not exist yet: a python.call reads it from the platform host at execution time and runs the
same operations nested (pyinfra executes operations called in a callback at once). pyinfra orders operations
as a graph of each host's sequence, not strictly by line, so an operation of a Dokku host is only ordered after
the platform's key generation if the two sequences meet: authorize_platform_key() is therefore called for every
host (deploy.py), and that python.call, declared on every host but acting only on Dokku hosts, is one shared
node that comes after the platform's key generation.
"""

from __future__ import annotations

from pyinfra import host, inventory
from pyinfra.api import StringCommand, deploy, operation
from pyinfra.facts.files import File, FileContents
from pyinfra.operations import files, python, server

from tasks import dokku
from tasks.platform import TEMPLATES, platform_directory

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"


@operation()
def ed25519_key(path: str, comment: str):
    """Generate an ed25519 key pair at path unless the private key exists (it is never regenerated)."""
    if host.get_fact(File, path=path):
        host.noop(f"{path} exists")
        return
    yield StringCommand("ssh-keygen", "-q", "-t", "ed25519", "-N", "''", "-C", comment, "-f", path)
    yield StringCommand("chmod", "600", path)


def _platform_host():
    platform_hosts = inventory.get_group("platform", default=[])
    return platform_hosts[0] if platform_hosts else None


def _public_key(platform_host, path: str) -> str | None:
    lines = platform_host.get_fact(FileContents, path=f"{path}.pub")
    return lines[0].strip() if lines else None


@deploy("Keys: platform key")
def platform_key():
    data = host.data
    platform_directory()
    ed25519_key(name=f"Generate the platform key {data.platform_key_path} (once)", path=data.platform_key_path,
                comment=data.platform_key_comment)
    dokku_hosts = sorted(inventory.get_group("dokku", default=[]), key=lambda dokku_host: dokku_host.name)
    known_hosts = [(dokku_host.data.private_ip, dokku_host.get_fact(FileContents, path=HOST_KEY))
                   for dokku_host in dokku_hosts]
    files.template(
        name=f"Render {data.platform_known_hosts_path}", src=str(TEMPLATES / "platform/dokku-known-hosts.j2"),
        dest=data.platform_known_hosts_path, user="root", group="root", mode="644",
        known_hosts=[(ip, lines[0].strip()) for ip, lines in known_hosts if lines], create_remote_dir=False,
    )


def _authorize(public_key: str) -> None:
    data = _platform_host().data
    platform_ip = data.private_ip
    key_type, key_body = public_key.split()[:2]
    server.user_authorized_keys(
        name="Authorize the platform key for root (from the platform's private IP only)", user="root",
        public_keys=[f'from="{platform_ip}" {key_type} {key_body} {data.platform_key_comment}'],
    )
    dokku.ssh_key(name=f"Add the platform key to Dokku's ssh-keys as {data.platform_dokku_key_name}",
                  key_name=data.platform_dokku_key_name, public_key=f"{key_type} {key_body}")


def _authorize_at_execution(platform_host, path: str) -> None:
    public_key = _public_key(platform_host, path)
    if not public_key:
        raise RuntimeError(f"{platform_host.name} has no {path}.pub; the platform key step must run first")
    _authorize(public_key)


@deploy("Keys: authorize the platform key")
def authorize_platform_key():
    """Call for every host (see the module's docstring); only Dokku hosts change."""
    platform_host = _platform_host()
    if platform_host is None:
        return
    is_dokku = "dokku" in host.groups
    path = platform_host.data.platform_key_path
    public_key = _public_key(platform_host, path)
    if not public_key:
        python.call(name="Authorize the new platform key (read from the platform host now)",
                    function=_authorize_at_execution, platform_host=platform_host, path=path,
                    _if=lambda: is_dokku)
    elif is_dokku:
        _authorize(public_key)
