"""The fake Stripe API (tests/fakestripe) as a daemon on loopback, accepting only the lab's test-mode key, with
the three prices the platform sells. bootstrap's apply makes the webhook endpoint in it, so the platform gets
a real signing secret through the real code path (SECRETS_DIR -> /opt/platform/.env)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.fakestripe.seed import ensure_prices
from tests.testbed import envfile, layout, procs


def _dir(lab: Path) -> Path:
    return lab / "stripe"


def api_base() -> str:
    return f"http://{layout.FAKESTRIPE_LISTEN}"


def start(lab: Path, bridge_ip: str) -> dict[str, str]:
    directory = _dir(lab)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)  # the state holds the endpoint's signing secret
    key = envfile.generated_values(lab)["STRIPE_SECRET_KEY"]
    env = {**os.environ, "PYTHONPATH": str(layout.REPO_ROOT)}
    procs.spawn([sys.executable, "-m", "tests.fakestripe", "--listen", layout.FAKESTRIPE_LISTEN,
                 "--state", str(directory / "state.json"), "--key", key],
                directory / "fakestripe.pid", directory / "fakestripe.log", env=env, cwd=layout.REPO_ROOT)
    host, port = layout.FAKESTRIPE_LISTEN.split(":")
    procs.wait_for(lambda: procs.port_open(host, int(port)), 20, "the fake Stripe API")
    return {"STRIPE_API_BASE": api_base(), **ensure_prices(api_base(), key)}


def webhook_secrets(lab: Path) -> list[str]:
    """The signing secrets of the endpoints in the fake account (what Stripe would sign events with)."""
    state = _dir(lab) / "state.json"
    endpoints = json.loads(state.read_text())["webhook_endpoints"] if state.is_file() else {}
    return [endpoint["secret"] for endpoint in endpoints.values()]


def stop(lab: Path) -> None:
    procs.stop(_dir(lab) / "fakestripe.pid")
