"""The fake Hetzner API as a daemon on loopback, with the testbed's hooks (see tests/testbed/cloudhooks.py)."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

from tests.testbed import layout, procs

HOOKS = "tests.testbed.cloudhooks:TestbedHooks"


def endpoint() -> str:
    return f"http://{layout.FAKECLOUD_LISTEN}/v1"


def start(lab: Path, token: str) -> dict[str, str]:
    here = lab / "cloud"
    here.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MINDROOM_TESTBED_LAB": str(lab), "PYTHONPATH": str(layout.REPO_ROOT)}
    procs.spawn([sys.executable, "-m", "tests.fakecloud", "--listen", layout.FAKECLOUD_LISTEN,
                 "--state", str(here / "state.json"), "--hooks", HOOKS],
                lab / "fakecloud.pid", lab / "logs/fakecloud.log", env=env, cwd=layout.REPO_ROOT)
    host, port = layout.FAKECLOUD_LISTEN.split(":")

    def listening():
        if not procs.read_pid(lab / "fakecloud.pid"):
            raise procs.LabError(f"the fake Hetzner API exited; see {lab / 'logs/fakecloud.log'}")
        return procs.port_open(host, int(port))

    procs.wait_for(listening, 20, "the fake Hetzner API")
    ensure_zone(token, layout.TEST_DOMAIN)
    return {"HCLOUD_ENDPOINT": endpoint(), "HCLOUD_TOKEN": token, "DNS_ZONE": layout.TEST_DOMAIN}


def _api(token: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(endpoint() + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def ensure_zone(token: str, zone: str) -> None:
    """The operator's DNS zone exists in the (fake) Hetzner DNS, so bootstrap creates the records in it."""
    if not _api(token, "GET", f"/zones?name={zone}")["zones"]:
        _api(token, "POST", "/zones", {"name": zone, "mode": "primary"})


def stop(lab: Path) -> None:
    procs.stop(lab / "fakecloud.pid")
