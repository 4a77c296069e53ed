"""Dokku: the package from Dokku's apt repo at DOKKU_VERSION (held), its debconf answers, global settings,
plugins, the dokku-deploy user and Dokku's ssh-keys.

Dokku's state is compared through the host snapshot (tasks/snapshot.py), which reads Dokku's own files;
commands run only for what differs.
`ssh_key(key_name=..., public_key=...)` adds or replaces one of Dokku's ssh-keys by name and fingerprint; the platform
tasks reuse it for the platform host's generated key.
"""

from __future__ import annotations

import base64
import hashlib
import shlex

from pyinfra import host
from pyinfra.api import OperationError, deploy
from pyinfra.operations import server

from tasks import ops, snapshot
from tasks.snapshot import snapshot_operation

DOKKU = "/usr/bin/dokku"
KEYRING = "/etc/apt/keyrings/dokku.asc"
PRESEED = "/var/lib/mindroom-infra/dokku.preseed"
NO_KEY_FILE = "/nonexistent/dokku-initial-key"  # dokku/key_file: under Debian's never-existing /nonexistent
# Where the deploy records, per plugin, the tag whose `dokku plugin:install`/`plugin:update` finished: Dokku marks
# a plugin enabled (plugins/enabled/NAME) and pinned (.plugin_committish) before its install trigger runs.
PLUGIN_MARKERS = "/var/lib/mindroom-infra/dokku-plugins"


def sha256_fingerprint(public_key: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key line, as `dokku ssh-keys:list` shows it."""
    try:
        blob = base64.b64decode(public_key.split()[1], validate=True)
    except (IndexError, ValueError):
        raise OperationError(f"not an OpenSSH public key: {public_key[:40]!r}") from None
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@snapshot_operation(lambda **_: {"dokku": True})
def ssh_key(key_name: str, public_key: str):
    """Dokku's ssh-key `key_name` is `public_key`: added when missing, replaced when its SHA256 fingerprint differs."""
    wanted = sha256_fingerprint(public_key)
    current = snapshot.read()["dokku"].get("ssh_keys", {}).get(key_name)
    if current == wanted:
        host.noop(f"dokku ssh-key {key_name} is {wanted}")
        return
    if current:
        yield f"dokku ssh-keys:remove {shlex.quote(key_name)}"
    yield f"echo {shlex.quote(public_key.strip())} | dokku ssh-keys:add {shlex.quote(key_name)}"


def _plugin_commands(name: str, url: str, tag: str, state: dict | None) -> list[str]:
    """What brings plugin `name` to `tag`, enabled, with its install finished (nothing when it is)."""
    if state and state["enabled"] and state["committish"] == tag and state["finished"] == tag:
        return []
    if not state:
        command = f"dokku plugin:install {shlex.quote(url)} --committish {shlex.quote(tag)} --name {shlex.quote(name)}"
    else:  # an older tag, or an install or update that did not finish: update re-runs the update triggers
        enable = "" if state["enabled"] else f"dokku plugin:enable {shlex.quote(name)} && "
        command = f"{enable}dokku plugin:update {shlex.quote(name)} {shlex.quote(tag)}"
    marker = f"{PLUGIN_MARKERS}/{name}"
    return [f"{command} && mkdir -p {PLUGIN_MARKERS} && printf %s {shlex.quote(tag)} > {shlex.quote(marker)}"]


@snapshot_operation(lambda **_: {"dokku": True})
def global_settings(domain: str, plugins: dict, properties: dict[str, str], renew_cron: bool = True):
    """Global domain, plugins ({name: (git URL, release tag)}: installed at that tag, or updated to it), global
    plugin properties and the letsencrypt renewal job, compared with Dokku's state in the host snapshot."""
    dokku = snapshot.read()["dokku"]
    if not dokku:
        raise OperationError("dokku is not installed")
    commands = []
    if dokku["vhosts"] != [domain]:
        commands.append(f"dokku domains:set-global {shlex.quote(domain)}")
    for name, (url, tag) in plugins.items():
        commands += _plugin_commands(name, url, tag, dokku["plugins"].get(name))
    for key, value in properties.items():
        if dokku["properties"].get(key) != value:
            plugin, _, prop = key.partition("/")
            commands.append(f"dokku {plugin}:set --global {shlex.quote(prop)} {shlex.quote(value)}")
    # the plugin's own test (fn-letsencrypt-is-autorenew-enabled): the marker `cron-job --add` creates; the crontab
    # line takes one of two forms (the plugin's fallback, or Dokku's cron plugin's once it rewrites the crontab)
    if renew_cron and not dokku["autorenew"]:
        commands.append("dokku letsencrypt:cron-job --add")
    if not commands:
        host.noop("dokku's global settings, plugins and renewal job are in place")
    yield from commands


@deploy("Dokku: install")
def install():
    preseed = ops.template(name=f"Upload {PRESEED}", src="templates/dokku/dokku.preseed.j2", dest=PRESEED, mode="600",
                           domain=host.data.domain, key_file=NO_KEY_FILE)
    server.shell(name="Preset dokku's debconf answers", commands=[f"debconf-set-selections {PRESEED}"],
                 _if=preseed.did_change)
    ops.download(name=f"Download Dokku's apt key to {KEYRING}", url=host.data.dokku_apt_key_url, dest=KEYRING)
    ops.template(
        name="Upload /etc/apt/sources.list.d/dokku.sources", src="templates/dokku/dokku.sources.j2",
        dest="/etc/apt/sources.list.d/dokku.sources", mode="644",
        url=host.data.dokku_apt_repo_url, suite=host.data.dokku_apt_suite, keyring=KEYRING,
    )
    package = ops.packages(name=f"Install dokku {host.data.dokku_version} (held)",
                           packages=[f"dokku={host.data.dokku_version}", *host.data.dokku_packages], hold=["dokku"])
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
    # No supplementary groups: docker is root (mount / into a container) and sudo's %sudo rule allows everything;
    # the sudoers drop-in lets it run dokku as root, nothing else.
    ops.user(name=f"Create {user} (no groups: it may run dokku only) with the provisioner key", user=user,
             groups=[], public_keys=[host.data.provisioner_public_key])
    ops.template(
        name=f"Upload /etc/sudoers.d/{user} (checked with visudo -cf)", src="templates/dokku/dokku-deploy.j2",
        dest=f"/etc/sudoers.d/{user}", mode="440", validate="visudo -cf {path}", user_name=user, dokku=DOKKU,
    )
    ssh_key(name=f"Authorize the provisioner key in Dokku ({host.data.provisioner_key_name})",
            key_name=host.data.provisioner_key_name, public_key=host.data.provisioner_public_key)
