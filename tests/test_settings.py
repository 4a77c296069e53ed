"""The settings module: defaults, derived names, and one-line errors for bad input."""

import subprocess

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


def _keypair(path, passphrase: str = ""):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", path.name, "-f", str(path)],
                   check=True)
    return (path.parent / f"{path.name}.pub").read_text().strip()


def test_admin_keys_are_the_key_then_the_extra_ones_each_once(tmp_path):
    old, new = _keypair(tmp_path / "old"), _keypair(tmp_path / "new")
    settings = load(tmp_path, SSH_PUBLIC_KEY_PATH="old.pub", SSH_EXTRA_PUBLIC_KEY_PATHS=" new.pub , ")
    assert settings.admin_public_keys() == [("SSH_PUBLIC_KEY_PATH", old), ("SSH_EXTRA_PUBLIC_KEY_PATHS", new)]
    assert settings.connecting_public_key() == old  # SSH_PRIVATE_KEY_PATH defaults to the key's private half
    twice = load(tmp_path, SSH_PUBLIC_KEY_PATH="old.pub", SSH_EXTRA_PUBLIC_KEY_PATHS="new.pub,old.pub")
    with pytest.raises(SettingsError, match="SSH_EXTRA_PUBLIC_KEY_PATHS lists .*old.pub', the same key as "
                                            "SSH_PUBLIC_KEY_PATH; list each admin key once"):
        twice.admin_public_keys()


def test_the_key_the_deploy_logs_in_with_must_stay_an_admin_key(tmp_path):
    """root's authorized_keys holds exactly the admin keys: a deploy whose own key is not among them would
    lock itself out, so the settings refuse it (the rotation keeps the old key as an extra one meanwhile)."""
    _keypair(tmp_path / "old"), _keypair(tmp_path / "new")
    switched_too_early = load(tmp_path, SSH_PUBLIC_KEY_PATH="new.pub", SSH_PRIVATE_KEY_PATH="old")
    with pytest.raises(SettingsError, match=r"^SSH_PRIVATE_KEY_PATH=.*old' is not one of the admin keys .*lock itself "
                                            r"out; list it in SSH_EXTRA_PUBLIC_KEY_PATHS"):
        switched_too_early.connecting_public_key()
    kept = load(tmp_path, SSH_PUBLIC_KEY_PATH="new.pub", SSH_PRIVATE_KEY_PATH="old",
                SSH_EXTRA_PUBLIC_KEY_PATHS="old.pub")
    assert kept.connecting_public_key().split()[1] == (tmp_path / "old.pub").read_text().split()[1]


def test_the_login_key_is_read_from_the_private_key_when_its_pub_file_is_gone(tmp_path):
    """An OpenSSH private key carries its public key in a header that is never encrypted (openssh-portable
    PROTOCOL.key), so an encrypted key needs no passphrase for it."""
    public = _keypair(tmp_path / "admin", passphrase="correct horse")
    (tmp_path / "admin.pub").rename(tmp_path / "listed.pub")
    settings = load(tmp_path, SSH_PUBLIC_KEY_PATH="listed.pub", SSH_PRIVATE_KEY_PATH="admin")
    assert settings.connecting_public_key() == " ".join(public.split()[:2])
    # a private key in PEM format (not OpenSSH's), made at run time
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-m", "PEM", "-N", "", "-f", str(tmp_path / "pem")], check=True)
    (tmp_path / "pem.pub").unlink()
    for path, message in (("pem", "is not an OpenSSH private key whose public key can be read; put its public half "
                                  "beside it: ssh-keygen -y -f"), ("missing", "cannot be read and there is no")):
        with pytest.raises(SettingsError, match=f"^SSH_PRIVATE_KEY_PATH=.*{path}' {message}"):
            load(tmp_path, SSH_PUBLIC_KEY_PATH="listed.pub", SSH_PRIVATE_KEY_PATH=path).connecting_public_key()


def test_the_provisioner_key_is_never_an_admin_key(tmp_path):
    _keypair(tmp_path / "admin"), _keypair(tmp_path / "extra"), _keypair(tmp_path / "provisioner")
    settings = load(tmp_path, SSH_PUBLIC_KEY_PATH="admin.pub", SSH_EXTRA_PUBLIC_KEY_PATHS="extra.pub",
                    DOKKU_PROVISIONER_KEY_PATH="provisioner.pub")
    assert settings.provisioner_public_key().endswith(" provisioner")
    for admin in ("admin.pub", "extra.pub"):
        with pytest.raises(SettingsError, match="DOKKU_PROVISIONER_KEY_PATH must be another key than SSH_"):
            load(tmp_path, SSH_PUBLIC_KEY_PATH="admin.pub", SSH_EXTRA_PUBLIC_KEY_PATHS="extra.pub",
                 DOKKU_PROVISIONER_KEY_PATH=admin).provisioner_public_key()
