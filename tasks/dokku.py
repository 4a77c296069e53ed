"""Dokku: the package from Dokku's apt repo at DOKKU_VERSION (held), its debconf answers, global settings,
plugins, the dokku-deploy user and Dokku's ssh-keys.

Upgrades are not the deploy's: on a server that runs another Dokku version, or a plugin finished at another tag,
the deploy leaves them alone and names the server at the end of the run; `python maintain.py upgrade` applies them
one server at a time, its apps stopped meanwhile (tasks/upgrade.py, `upgrade=True` below).

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
from pyinfra.operations import apt, server

from tasks import ops, report, snapshot
from tasks.snapshot import snapshot_operation

DOKKU = "/usr/bin/dokku"
KEYRING = "/etc/apt/keyrings/dokku.asc"
PRESEED = "/var/lib/mindroom-infra/dokku.preseed"
NO_KEY_FILE = "/nonexistent/dokku-initial-key"  # dokku/key_file: under Debian's never-existing /nonexistent
# Where the deploy records, per plugin, the tag whose `dokku plugin:install`/`plugin:update` finished: Dokku marks
# a plugin enabled (plugins/enabled/NAME) and pinned (.plugin_committish) before its install trigger runs.
PLUGIN_MARKERS = "/var/lib/mindroom-infra/dokku-plugins"
UPGRADE_COMMAND = "python maintain.py upgrade"
_left: dict[str, dict[str, tuple[str, str]]] = {}  # per host, what the deploy left for the upgrade: {what: (now, wanted)}


def sha256_fingerprint(public_key: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key line, as `dokku ssh-keys:list` shows it."""
    try:
        blob = base64.b64decode(public_key.split()[1], validate=True)
    except (IndexError, ValueError):
        raise OperationError(f"not an OpenSSH public key: {public_key[:40]!r}") from None
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@snapshot_operation(lambda **_: {"dokku": True})
def ssh_key(key_name: str, public_key: str):
    """Dokku's ssh-key `key_name` is `public_key`: added when missing, replaced when its SHA256 fingerprint differs.
    Custom, as every Dokku step: pyinfra has no Dokku operations."""
    wanted = sha256_fingerprint(public_key)
    current = snapshot.read()["dokku"].get("ssh_keys", {}).get(key_name)
    if current == wanted:
        host.noop(f"dokku ssh-key {key_name} is {wanted}")
        return
    if current:
        yield f"dokku ssh-keys:remove {shlex.quote(key_name)}"
    yield f"echo {shlex.quote(public_key.strip())} | dokku ssh-keys:add {shlex.quote(key_name)}"


def _left_for_the_upgrade(what: str, now: str, wanted: str) -> None:
    _left.setdefault(host.name, {})[what] = (now, wanted)


def _upgrade_lines() -> list[str]:
    return [f"DOKKU UPGRADE PENDING on {name}: " + ", ".join(f"{what} {now} runs, {wanted} is configured"
                                                            for what, (now, wanted) in left.items())
            + f"; the deploy left it alone: run `{UPGRADE_COMMAND}` (one server at a time, its apps stopped meanwhile)"
            for name, left in sorted(_left.items())]


def _plugin_commands(name: str, url: str, tag: str, state: dict | None, upgrade: bool) -> list[str]:
    """What brings plugin `name` to `tag`, enabled, with its install finished (nothing when it is). A plugin
    whose install finished at another tag is updated only by the upgrade; the deploy leaves it and reports it."""
    if state and state["enabled"] and state["committish"] == tag and state["finished"] == tag:
        return []
    if state and state["enabled"] and state["committish"] == state["finished"] != "" and not upgrade:
        _left_for_the_upgrade(f"plugin {name}", state["finished"], tag)
        host.noop(f"dokku plugin {name} is at {state['finished']}, {tag} waits for `{UPGRADE_COMMAND}`")
        return []
    if not state:
        command = f"dokku plugin:install {shlex.quote(url)} --committish {shlex.quote(tag)} --name {shlex.quote(name)}"
    else:  # an older tag (the upgrade), or an install or update that did not finish: update re-runs the update triggers
        enable = "" if state["enabled"] else f"dokku plugin:enable {shlex.quote(name)} && "
        command = f"{enable}dokku plugin:update {shlex.quote(name)} {shlex.quote(tag)}"
    marker = f"{PLUGIN_MARKERS}/{name}"
    return [f"{command} && mkdir -p {PLUGIN_MARKERS} && printf %s {shlex.quote(tag)} > {shlex.quote(marker)}"]


@snapshot_operation(lambda **_: {"dokku": True})
def global_settings(domain: str, plugins: dict, properties: dict[str, str], renew_cron: bool = True,
                    upgrade: bool = False):
    """Global domain, plugins ({name: (git URL, release tag)}: installed at that tag; updated to it only with
    `upgrade`), global plugin properties and the letsencrypt renewal job, compared with Dokku's state in the host
    snapshot."""
    dokku = snapshot.read()["dokku"]
    if not dokku:
        raise OperationError("dokku is not installed")
    commands = []
    if dokku["vhosts"] != [domain]:
        commands.append(f"dokku domains:set-global {shlex.quote(domain)}")
    for name, (url, tag) in plugins.items():
        commands += _plugin_commands(name, url, tag, dokku["plugins"].get(name), upgrade)
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


@snapshot_operation(lambda **_: {})
def package(version: str, extra: list[str]):
    """dokku at `version` (held) and the `extra` packages. On a server that runs another Dokku version the package
    is left alone and the server named at the end of the run: an upgrade stops the apps (`maintain.py upgrade`)."""
    installed = snapshot.read()["packages"].get("dokku")
    spec = f"dokku={version}"
    if installed and installed != version:
        _left_for_the_upgrade("Dokku", installed, version)
        spec = "dokku"
    yield from ops.packages._inner(packages=[spec, *extra], hold=["dokku"])


@snapshot_operation(lambda **_: {})
def upgrade_package(version: str):
    """The held dokku package at `version`: unheld, installed by pyinfra's apt.packages, held again (its scripts
    run: prerm's cleanup, postinst's core plugin install triggers); nothing when it is there already. The holds
    are `apt-mark`: pyinfra has no operation for them."""
    snap = snapshot.read()
    if snap["packages"].get("dokku") == version and "dokku" in snap["held"]:
        host.noop(f"dokku {version} is installed and held")
        return
    yield "apt-mark unhold dokku"
    yield from apt.packages._inner(packages=[f"dokku={version}"], update=True, no_recommends=True)
    yield "apt-mark hold dokku"


@deploy("Dokku: install")
def install():
    preseed = ops.template(name=f"Upload {PRESEED}", src="templates/dokku/dokku.preseed.j2", dest=PRESEED, mode="600",
                           domain=host.data.domain, key_file=NO_KEY_FILE)
    ops.on_change(name="Preset dokku's debconf answers", changes=[preseed], operation=server.shell,
                  commands=[f"debconf-set-selections {PRESEED}"])
    ops.download(name=f"Download Dokku's apt key to {KEYRING} (pinned SHA-256)", url=host.data.dokku_apt_key_url,
                 dest=KEYRING, sha256=host.data.dokku_apt_key_sha256)
    ops.template(
        name="Upload /etc/apt/sources.list.d/dokku.sources", src="templates/dokku/dokku.sources.j2",
        dest="/etc/apt/sources.list.d/dokku.sources", mode="644",
        url=host.data.dokku_apt_repo_url, suite=host.data.dokku_apt_suite, keyring=KEYRING,
    )
    report.at_end("dokku-upgrade", _upgrade_lines)
    installed = package(name=f"Install dokku {host.data.dokku_version} (held)", version=host.data.dokku_version,
                        extra=host.data.dokku_packages)
    ops.on_change(name="Install Dokku's core plugin dependencies", changes=[installed], operation=server.shell,
                  commands=["dokku plugin:install-dependencies --core"])
    mount_point = host.data.mount_point
    ops.move_onto(name=f"Keep /home/dokku on the volume ({mount_point}/dokku-home)", src="/home/dokku",
                  dest=f"{mount_point}/dokku-home", link=True, owner="dokku")
    ops.move_onto(name=f"Keep Dokku's service data on the volume ({mount_point}/dokku-services)",
                  src="/var/lib/dokku/services", dest=f"{mount_point}/dokku-services", link=True, owner="dokku")


def settings_and_plugins(upgrade: bool = False):
    global_settings(name="Set Dokku's global domain, plugins, properties and renewal job"
                    + (" (plugins updated to their tags)" if upgrade else ""), domain=host.data.domain,
                    plugins=host.data.dokku_plugins, properties=host.data.dokku_global_properties, upgrade=upgrade)


@deploy("Dokku: configure")
def configure():
    settings_and_plugins()
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
