"""The Dokku stand-in's apt repository, built by tests.testbed.aptrepo and served over HTTP on the bridge.

The settings it returns (DOKKU_APT_REPO_URL, DOKKU_APT_KEY_URL, DOKKU_APT_KEY_SHA256 of the key it serves,
DOKKU_APT_SUITE) replace packagecloud's; the deploy adds the repository exactly as in production. Guests fetch it DIRECT (see the guest image).
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path

from tests.testbed import layout, procs


def start(lab: Path, bridge_ip: str, dokku_versions: list[str]) -> dict[str, str]:
    aptrepo = importlib.import_module("tests.testbed.aptrepo")  # the Dokku stand-in's builder
    repo = lab / "aptrepo"
    aptrepo.build(repo, dokku_versions, layout.SUITE)
    procs.spawn([sys.executable, "-m", "http.server", "--bind", bridge_ip, "--directory", str(repo),
                 str(layout.APT_REPO_PORT)], lab / "aptrepo.pid", lab / "logs/aptrepo.log")
    procs.wait_for(lambda: procs.port_open(bridge_ip, layout.APT_REPO_PORT), 10, "the apt repository's web server")
    url = f"http://{bridge_ip}:{layout.APT_REPO_PORT}/"
    return {"DOKKU_APT_REPO_URL": url, "DOKKU_APT_KEY_URL": f"{url}gpgkey",
            "DOKKU_APT_KEY_SHA256": hashlib.sha256((repo / "gpgkey").read_bytes()).hexdigest(),
            "DOKKU_APT_SUITE": layout.SUITE}


def stop(lab: Path) -> None:
    procs.stop(lab / "aptrepo.pid")
