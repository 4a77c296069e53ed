"""Dokku: the package from Dokku's apt repo at DOKKU_VERSION (held), its debconf answers, global settings,
plugins, the dokku-deploy user and Dokku's ssh-keys.

All Dokku state is compared through one fact (DokkuState); commands run only for what differs.
`ssh_key(key_name=..., public_key=...)` adds or replaces one of Dokku's ssh-keys by name and fingerprint; the platform
tasks reuse it for the platform host's generated key.
"""

from __future__ import annotations

import base64
import hashlib
import shlex

from pyinfra import host
from pyinfra.api import OperationError, deploy, operation
from pyinfra.operations import apt, files, server
from pyinfra.operations.util import any_changed

from tasks import ops
from tasks.facts import DokkuState

DOKKU = "/usr/bin/dokku"
KEYRING = "/etc/apt/keyrings/dokku.asc"
PRESEED = "/var/lib/mindroom-infra/dokku.preseed"
RENEW_JOB = "letsencrypt:auto-renew"


def fingerprint(public_key: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key line, as `dokku ssh-keys:list` shows it."""
    try:
        blob = base64.b64decode(public_key.split()[1], validate=True)
    except (IndexError, ValueError):
        raise OperationError(f"not an OpenSSH public key: {public_key[:40]!r}") from None
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@operation()
def ssh_key(key_name: str, public_key: str):
    """Dokku's ssh-key `key_name` is `public_key`: added when missing, replaced when its fingerprint differs."""
    wanted = fingerprint(public_key)
    current = host.get_fact(DokkuState).get("ssh_keys", {}).get(key_name)
    if current == wanted:
        host.noop(f"dokku ssh-key {key_name} is {wanted}")
        return
    if current:
        yield f"dokku ssh-keys:remove {shlex.quote(key_name)}"
    yield f"echo {shlex.quote(public_key.strip())} | dokku ssh-keys:add {shlex.quote(key_name)}"


@operation()
def global_settings(domain: str, plugins: dict[str, str], properties: dict[str, str], renew_cron: bool = True):
    """Global domain, plugins (installed only when missing), global plugin properties and the
    letsencrypt renewal cron job, compared with one read of Dokku's state."""
    dokku = host.get_fact(DokkuState)
    if not dokku:
        raise OperationError("dokku is not installed")
    did = False
    if dokku["global_domains"] != [domain]:
        yield f"dokku domains:set-global {shlex.quote(domain)}"
        did = True
    for plugin, url in plugins.items():
        if plugin not in dokku["plugins"]:
            yield f"dokku plugin:install {shlex.quote(url)} --name {shlex.quote(plugin)}"
            did = True
    for key, value in properties.items():
        if dokku["properties"].get(key) != value:
            plugin, _, prop = key.partition("/")
            yield f"dokku {plugin}:set --global {shlex.quote(prop)} {shlex.quote(value)}"
            did = True
    if renew_cron and not any(RENEW_JOB in line for line in dokku["cron"]):
        yield "dokku letsencrypt:cron-job --add"
        did = True
    if not did:
        host.noop("dokku's global settings, plugins and renewal job are in place")


@deploy("Dokku: install")
def install():
    preseed = files.template(
        name=f"Upload {PRESEED}", src="templates/dokku/dokku.preseed.j2", dest=PRESEED, mode="600",
        domain=host.data.domain,
    )
    server.shell(name="Preset dokku's debconf answers", commands=[f"debconf-set-selections {PRESEED}"],
                 _if=preseed.did_change)
    key = files.download(name=f"Download Dokku's apt key to {KEYRING}", src=host.data.dokku_apt_key_url,
                         dest=KEYRING, mode="644")
    source = files.template(
        name="Upload /etc/apt/sources.list.d/dokku.sources", src="templates/dokku/dokku.sources.j2",
        dest="/etc/apt/sources.list.d/dokku.sources", mode="644",
        url=host.data.dokku_apt_repo_url, suite=host.data.dokku_apt_suite, keyring=KEYRING,
    )
    apt.update(name="Update apt lists for Dokku's repo", _if=any_changed(key, source))
    package = apt.packages(name=f"Install dokku {host.data.dokku_version}",
                           packages=[f"dokku={host.data.dokku_version}", *host.data.dokku_packages],
                           allow_downgrades=True)
    ops.apt_hold(name="Hold dokku at its version", packages=["dokku"])
    server.shell(name="Install Dokku's core plugin dependencies", commands=["dokku plugin:install-dependencies --core"],
                 _if=package.did_change)
    mount_point = host.data.mount_point
    ops.move_onto(name=f"Keep /home/dokku on the volume ({mount_point}/dokku-home)", src="/home/dokku",
                  dest=f"{mount_point}/dokku-home", link=True, owner="dokku")
    ops.move_onto(name=f"Keep Dokku's service data on the volume ({mount_point}/dokku-services)",
                  src="/var/lib/dokku/services", dest=f"{mount_point}/dokku-services", link=True, owner="dokku")


@deploy("Dokku: configure")
def configure():
    global_settings(name="Set Dokku's global domain, plugins, properties and renewal job", domain=host.data.domain,
             plugins=host.data.dokku_plugins, properties=host.data.dokku_global_properties)
    user = host.data.deploy_user
    server.user(name=f"Create {user} (groups docker, sudo) with the provisioner key", user=user,
                groups=["docker", "sudo"], shell="/bin/bash", create_home=True,
                public_keys=[host.data.provisioner_public_key])
    ops.validated_template(
        name=f"Upload /etc/sudoers.d/{user} (checked with visudo -cf)", src="templates/dokku/dokku-deploy.j2",
        dest=f"/etc/sudoers.d/{user}", mode="440", validate="visudo -cf {path}", user_name=user, dokku=DOKKU,
    )
    ssh_key(name=f"Authorize the provisioner key in Dokku ({host.data.provisioner_key_name})",
            key_name=host.data.provisioner_key_name, public_key=host.data.provisioner_public_key)
