"""The settings module: defaults, derived names, and one-line errors for bad input."""

import pytest

from settings import SettingsError, load_settings, read_public_key

BASE = {"DOMAIN": "mindroom.chat", "ADMIN_IPS": "203.0.113.7/32"}


def load(tmp_path, **overrides):
    return load_settings({**BASE, **overrides}, cwd=tmp_path)


def test_defaults_follow_the_old_system(tmp_path):
    settings = load(tmp_path)
    assert (settings.location, settings.dokku_server_type, settings.platform_server_type) == ("nbg1", "cpx31", "cpx21")
    assert (settings.dokku_volume_size, settings.platform_volume_size, settings.dokku_servers) == (200, 50, 1)
    assert settings.server_image == "debian-13" and settings.enable_backups is True
    assert settings.environment == "production"


def test_names_and_labels_are_scoped_by_environment(tmp_path):
    staging = load(tmp_path, ENVIRONMENT="staging", DOKKU_SERVERS="3")
    production = load(tmp_path)
    assert staging.network_name != production.network_name
    assert staging.firewall_name("dokku") != production.firewall_name("dokku")
    assert staging.server_names("dokku") == [f"mindroom-staging-dokku-{n}" for n in (1, 2, 3)]
    assert staging.labels("dokku")["environment"] == "staging"
    assert "environment=staging" in staging.label_selector


def test_private_addresses(tmp_path):
    settings = load(tmp_path, DOKKU_SERVERS="3")
    ips = [settings.private_ip(name) for name in settings.server_names("dokku")]
    assert ips == ["10.0.1.10", "10.0.1.11", "10.0.1.12"]
    assert settings.private_ip(settings.server_names("platform")[0]) == "10.0.1.20"


def test_env_file_is_read_and_environment_wins(tmp_path):
    (tmp_path / "custom.env").write_text("DOMAIN=example.org\nLOCATION=fsn1\nADMIN_IPS=198.51.100.0/24\n")
    settings = load_settings({"ENV_FILE": "custom.env", "LOCATION": "hel1"}, cwd=tmp_path)
    assert settings.domain == "example.org" and settings.location == "hel1"
    assert settings.admin_ips == ["198.51.100.0/24"]


@pytest.mark.parametrize(
    "overrides, setting",
    [
        ({"ADMIN_IPS": "0.0.0.0/0"}, "ADMIN_IPS"),
        ({"ADMIN_IPS": "203.0.113.7/32,::/0"}, "ADMIN_IPS"),
        ({"ADMIN_IPS": "not-an-ip"}, "ADMIN_IPS"),
        ({"DOKKU_SERVERS": "0"}, "DOKKU_SERVERS"),
        ({"DOKKU_SERVERS": "many"}, "DOKKU_SERVERS"),
        ({"DOMAIN": "not a domain"}, "DOMAIN"),
        ({"DOMAIN": "localhost"}, "DOMAIN"),
        ({"DOMAIN": ""}, "DOMAIN"),
        ({"ENABLE_BACKUPS": "maybe"}, "ENABLE_BACKUPS"),
        ({"ENVIRONMENT": "Prod Env"}, "ENVIRONMENT"),
        ({"ENV_FILE": "missing.env"}, "ENV_FILE"),
        ({"DNS_ZONE": "other.org"}, "DNS_ZONE"),
    ],
)
def test_bad_input_names_the_setting_in_one_line(tmp_path, overrides, setting):
    with pytest.raises(SettingsError) as error:
        load(tmp_path, **overrides)
    assert setting in str(error.value) and "\n" not in str(error.value)


def test_missing_token_is_reported_when_asked_for(tmp_path):
    with pytest.raises(SettingsError, match="HCLOUD_TOKEN is required"):
        load(tmp_path).hcloud_token


def test_platform_secrets_are_required_by_name(tmp_path):
    with pytest.raises(SettingsError, match="SUPABASE_URL is required"):
        load(tmp_path).platform_secrets()


def test_public_key_validation(tmp_path, private_key_file):
    good = tmp_path / "good.pub"
    good.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG0= admin@example\n")
    assert read_public_key(good, "SSH_PUBLIC_KEY_PATH").startswith("ssh-ed25519 ")
    with pytest.raises(SettingsError, match="SSH_PUBLIC_KEY_PATH.*not an OpenSSH public key"):
        read_public_key(private_key_file, "SSH_PUBLIC_KEY_PATH")
    with pytest.raises(SettingsError, match="does not exist"):
        read_public_key(tmp_path / "nope.pub", "SSH_PUBLIC_KEY_PATH")
