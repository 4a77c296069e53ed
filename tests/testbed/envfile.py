"""`.env.testbed`: every setting the project needs to run against the lab, written by `up` (mode 0600).

The user's `.env` is never read or touched: commands run with ENV_FILE=.env.testbed. Dummy service secrets
and the API token are random per lab (kept in LAB/generated.env so `up` stays idempotent), which lets the
tests prove that no secret leaks into logs or world-readable files.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from dotenv import dotenv_values

from tests.testbed import layout

HEADER = ("# Written by `python -m tests.testbed up` for the local testbed; removed by `down`. Do not edit.\n"
          "# Use it with: ENV_FILE=.env.testbed python bootstrap.py apply --yes\n")
# Name -> prefix of the random value. The Stripe key is a test-mode key (bootstrap checks its shape and mode);
# the webhook's signing secret is not here: apply gets it from the fake Stripe API.
GENERATED = {"HCLOUD_TOKEN": "testbed-hcloud-token-", "SUPABASE_SERVICE_KEY": "testbed-supabase-service-key-",
             "STRIPE_SECRET_KEY": "sk_test_testbed"}


def generated_values(lab: Path) -> dict[str, str]:
    """Random dummy secrets, made once per lab."""
    path = lab / "generated.env"
    values = {k: v or "" for k, v in dotenv_values(path).items()} if path.exists() else {}
    missing = [name for name in GENERATED if not values.get(name)]
    if missing:
        values.update({name: f"{GENERATED[name]}{secrets.token_hex(12)}" for name in missing})
        write(path, values, header="# random per-lab values of the testbed\n")
    return values


def base_settings(lab: Path, dokku_servers: int = 1) -> dict[str, str]:
    """The lab's settings that do not come from a stand-in."""
    keys = lab / "ssh"
    return {
        "ENVIRONMENT": "testbed",
        "DOMAIN": layout.TEST_DOMAIN,
        "ADMIN_IPS": f"{layout.BRIDGE_IP}/32",
        "DOKKU_SERVERS": str(dokku_servers),
        "DOKKU_VOLUME_SIZE": str(layout.VOLUME_SIZE_GB),
        "PLATFORM_VOLUME_SIZE": str(layout.VOLUME_SIZE_GB),
        "SSH_PUBLIC_KEY_PATH": str(keys / "admin_ed25519.pub"),
        "SSH_PRIVATE_KEY_PATH": str(keys / "admin_ed25519"),
        "DOKKU_PROVISIONER_KEY_PATH": str(keys / "dokku_provisioner.pub"),
        "SSH_STRICT_HOST_KEY_CHECKING": "no",
        "SSH_KNOWN_HOSTS_FILE": "/dev/null",
        "LETSENCRYPT_EMAIL": f"admin@{layout.TEST_DOMAIN}",
        "SUPABASE_URL": f"http://{layout.BRIDGE_IP}:54321",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_testbed",
    }


def render(values: dict[str, str], header: str = HEADER) -> str:
    lines = []
    for name, value in values.items():
        if any(c in value for c in "\n\"'"):
            raise ValueError(f"{name}: the testbed writes no values containing quotes or newlines")
        lines.append(f"{name}={value}" if value and not any(c in value for c in " #") else f'{name}="{value}"')
    return header + "\n".join(lines) + "\n"


def write(path: Path, values: dict[str, str], header: str = HEADER) -> None:
    """Write a dotenv file readable by its owner only (it holds the lab's secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(render(values, header))
    os.chmod(temporary, 0o600)
    temporary.replace(path)
