"""Where pyinfra prints host data (`debug-inventory`, `--debug`), no secret setting may appear; loading the
group data writes nothing (the admin password is made by the platform's nginx task only)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECRETS = {
    "HCLOUD_TOKEN": "hidden-hcloud-token-0001",
    "SUPABASE_SERVICE_KEY": "hidden-supabase-key-0002",
    "STRIPE_SECRET_KEY": "hidden-stripe-key-0003",
    "STRIPE_WEBHOOK_SECRET": "hidden-webhook-secret-0004",
    "REGISTRY_TOKEN": "hidden-registry-token-0005",
    "SMTP_PASSWORD": "hidden-smtp-password-0006",
    "ALERT_WEBHOOK_URL": "https://hooks.example.org/hidden-hook-token-0007",
}


def _server(name: str, role: str, number: int) -> dict:
    return {"name": name, "role": role, "id": number, "ipv4": f"192.0.2.{number}", "ipv6": "2001:db8::1",
            "private_ip": f"10.0.1.{number}",
            "volume": {"id": number, "name": f"{name}-data", "size": 10, "device": f"/dev/disk/by-id/scsi-0HC_Volume_{number}"}}


def _debug_inventory(tmp_path, **overrides: str) -> subprocess.CompletedProcess:
    """`pyinfra inventory.py debug-inventory` (it loads every group's data) with the settings plus overrides."""
    (tmp_path / "admin.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG0= admin\n")
    (tmp_path / "provisioner.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG1= provisioner\n")
    (tmp_path / "outputs.json").write_text(json.dumps({"environment": "production", "servers": [
        _server("mindroom-production-dokku-1", "dokku", 10),
        _server("mindroom-production-platform", "platform", 20)]}))
    settings = {
        "DOMAIN": "example.org", "ADMIN_IPS": "203.0.113.7/32", "SSH_PUBLIC_KEY_PATH": "admin.pub",
        "DOKKU_PROVISIONER_KEY_PATH": "provisioner.pub", "OUTPUTS_FILE": "outputs.json", "SECRETS_DIR": "secrets",
        "SUPABASE_URL": "https://db.example.org", "STRIPE_PUBLISHABLE_KEY": "pk_test", "STRIPE_PRICE_STARTER": "p1",
        "STRIPE_PRICE_PROFESSIONAL": "p2", "STRIPE_PRICE_ENTERPRISE": "p3", "REGISTRY": "registry.example.org/mr",
        "REGISTRY_USER": "deployer", "LETSENCRYPT_EMAIL": "ops@example.org", "DOKKU_APT_KEY_SHA256": "0" * 64,
        "ALERT_EMAIL_TO": "ops@example.org", "SMTP_HOST": "smtp.example.org", **SECRETS, **overrides,
    }
    (tmp_path / "test.env").write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    return subprocess.run(
        [str(Path(sys.executable).parent / "pyinfra"), "inventory.py", "debug-inventory"], cwd=REPO,
        env={"ENV_FILE": str(tmp_path / "test.env"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=60)


def test_debug_inventory_hides_secrets(tmp_path):
    result = _debug_inventory(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-2000:]
    assert '"platform_env": "<secret values: ' in output  # the platform's group data was loaded and printed
    assert '"alert_secrets": "<secret values: webhook_url, smtp_password>"' in output
    assert [name for name, value in SECRETS.items() if value in output] == []
    assert not (tmp_path / "secrets").exists()


@pytest.mark.parametrize("overrides, message", [
    ({"SSH_PRIVATE_KEY_PATH": "provisioner"}, "SSH_PRIVATE_KEY_PATH='{tmp}/provisioner' is not one of the admin keys"),
    ({"DOKKU_PROVISIONER_KEY_PATH": "admin.pub"}, "DOKKU_PROVISIONER_KEY_PATH must be another key than "
                                                  "SSH_PUBLIC_KEY_PATH"),
], ids=["login key not an admin key", "provisioner key is an admin key"])
def test_group_data_refuses_access_settings_with_one_line(tmp_path, overrides, message):
    """Before any host is touched: a deploy that would remove its own login key from root's authorized_keys, or
    make the provisioner's key root's."""
    result = _debug_inventory(tmp_path, **overrides)
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert result.returncode != 0 and "Traceback" not in output
    assert len(errors) == 1 and errors[0].startswith(f"error: {message.format(tmp=tmp_path)}"), output[-2000:]
