"""One Dokku server's upgrade in `python maintain.py upgrade`'s roll (maintain.py holds the lock, picks the server
and asks every server the DokkuRelease fact to know which need one).

The order is Dokku's own upgrade procedure (docs/getting-started/upgrading at v0.38.27): stop every app, upgrade
the package, rebuild the apps. The package's prerm cleans up (`dokku cleanup` removes the stopped containers), so
the apps come back through `ps:rebuild`, not `ps:start`. Only the apps that ran are rebuilt: Dokku's
`ps:rebuild --all` would also start an app that was stopped on purpose (a suspended customer instance); such an
app is deployed again by its next `ps:start`.
"""

from __future__ import annotations

import shlex
import time

from pyinfra import host, logger
from pyinfra.api import FactBase, OperationError, deploy
from pyinfra.operations import python, server

from tasks import dokku

APPS_TIMEOUT_SECONDS = 300
_stopped_at: dict[str, float] = {}


class DokkuRelease(FactBase):
    """{"version": what `dokku version` says ("" without Dokku), "plugins": {name: the committish plugn pinned},
    "apps": [apps with a running container (the docker-local scheduler's com.dokku.app-name label)]}."""

    def command(self):
        return ("command -v dokku >/dev/null && dokku version | sed -n 's/^dokku version /version=/p'; "
                "for f in /var/lib/dokku/plugins/available/*/.plugin_committish; do [ -f \"$f\" ] || continue; "
                "p=${f%/.plugin_committish}; echo \"plugin=${p##*/} $(cat \"$f\")\"; done; "
                "docker container ls --filter label=com.dokku.app-name "
                "--format 'app={{.Label \"com.dokku.app-name\"}}' 2>/dev/null | sort -u; true")

    def process(self, output):
        found = {"version": "", "plugins": {}, "apps": []}
        for line in output:
            key, _, value = line.partition("=")
            if key == "version":
                found["version"] = value.strip()
            elif key == "plugin":
                name, _, committish = value.partition(" ")
                found["plugins"][name] = committish.strip()
            elif key == "app" and value:
                found["apps"].append(value)
        return found


def _problems(version: str, apps: list[str]) -> list[str]:
    now = host.get_fact(DokkuRelease)
    return ([f"dokku version is {now['version'] or 'missing'}, not {version}"] if now["version"] != version else []) \
        + [f"app {name} does not run" for name in apps if name not in now["apps"]]


def _note_stop() -> None:
    _stopped_at[host.name] = time.monotonic()


def _check(version: str, apps: list[str], seconds: float) -> None:
    """`dokku version` is `version` and every app of `apps` runs (waiting up to `seconds` for them to start);
    says how long the apps were stopped."""
    deadline = time.monotonic() + seconds
    while problems := _problems(version, apps):
        if time.monotonic() > deadline or problems[0].startswith("dokku version"):
            raise OperationError(f"after the upgrade: {'; '.join(problems)}")
        time.sleep(2)
    logger.info(f"    [{host.name}]  {len(apps)} apps run again; they were stopped for "
                f"{time.monotonic() - _stopped_at[host.name]:.1f} s")


@deploy("Dokku: upgrade this server, then check it")
def upgrade_and_check():
    """Stop every app, upgrade the held dokku package to DOKKU_VERSION, update the plugins to their tags, rebuild
    and start the apps that ran; done when `dokku version` is DOKKU_VERSION and every app that ran before runs again."""
    before = host.get_fact(DokkuRelease)
    version = host.data.dokku_version
    if before["version"] != version:  # before any app stops: a version the repository lacks fails here
        missing = shlex.quote(f"dokku {version} is not in the apt repository (DOKKU_APT_REPO_URL)")
        server.shell(name=f"Check dokku {version} is in the apt repository", commands=[
            "DEBIAN_FRONTEND=noninteractive apt-get update -q",
            f"apt-cache madison dokku | cut -d '|' -f 2 | tr -d ' ' | grep -qxF {shlex.quote(version)} "
            f"|| {{ echo {missing} >&2; exit 1; }}"])
    python.call(name="Note when the apps stop", function=_note_stop)
    server.shell(name="Stop every app (dokku ps:stop --all)", commands=["dokku ps:stop --all"])
    dokku.upgrade_package(name=f"Upgrade dokku to {version} (unhold, install, hold)", version=version)
    dokku.settings_and_plugins(upgrade=True)
    if before["apps"]:  # not --all: an app stopped on purpose (a suspended instance) stays stopped
        server.shell(name=f"Rebuild and start the {len(before['apps'])} apps that ran (dokku ps:rebuild APP)",
                     commands=[f"dokku ps:rebuild {shlex.quote(app)}" for app in before["apps"]])
    python.call(name=f"Check dokku version is {version} and {len(before['apps'])} apps run again", function=_check,
                version=version, apps=before["apps"], seconds=APPS_TIMEOUT_SECONDS)
