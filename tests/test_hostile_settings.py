"""Hostile and careless settings (issue 9): every setting fed values that try to break out of where they land.
Each is refused with one line naming the setting, or is provably inert in the exact file or command it reaches.
The landing places are checked on their own too (values handed to them directly, past the settings), so one
layer failing is not enough to inject.

Facts relied on, from upstream source:
- compose-go v1.20.2 (Debian 13's docker-compose 2.26.1 vendors compose-go v1), dotenv/parser.go,
  extractVarValue: a single-quoted value is the text up to the next quote not preceded by a backslash, taken
  literally (no `$` expansion, no escapes). template/template.go: `$$` is a literal `$` in compose.yaml, any
  other `$` is interpolated from the .env file.
- YAML 1.2 (what compose's go-yaml v3 reads): a JSON string is a double-quoted scalar, one line whatever it holds.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from pyinfra.api import FileUploadCommand, OperationError
from pyinfra.context import ctx_host, ctx_state

import admin_password
import settings as settings_module
from settings import DOTENV_NAMES, KNOWN_SETTINGS, PLATFORM_SERVICES, SettingsError, load_settings
from tasks import ops, platform, snapshot
from tests.fakecloud.harness import Harness
from tests.test_bootstrap_faults import started  # noqa: F401 - the fake cloud fixture
from tests.test_host_ops import FakeHost, fake_state

ROOT = Path(__file__).resolve().parent.parent
PWNED = "/tmp/mindroom-hostile-pwned"
HOSTILE = {
    "newline": "\n    privileged: true",
    "cr": "\rserver = https://evil.example/",
    "single-quote": "x'y",
    "double-quote": 'x"y',
    "command-substitution": f"$(touch {PWNED})",
    "backticks": f"`touch {PWNED}`",
    "semicolon": f";touch {PWNED}",
    "hash": "#comment",
    "dollar-variable": "$HCLOUD_TOKEN",
    "backslash": "x\\",
    "dot-dot": "/../../etc/passwd",
    "scope-id": f"%$(touch {PWNED})",
    "unicode": "é١٠",
    "bidi-override": "a\u202eb",
    "nul": "a\x00b",
    "ten-thousand": "a" * 10_000,
}
# Free text that lands in /opt/platform/.env only: accepted values must be inert there.
FREE_TEXT = set(DOTENV_NAMES) - {"SUPABASE_URL", "REGISTRY", "REGISTRY_USER", "LETSENCRYPT_EMAIL"}
# Secrets written as they are into a 0600 file on a host (tasks/monitoring.py, tasks/backup.py: ops.secret_file
# over SFTP; restic reads the password file as it is).
SECRET_FILES = {"SMTP_PASSWORD": lambda loaded: loaded.monitoring().smtp_password,
                "BACKUP_PASSWORD": lambda loaded: loaded.backup().password,
                # shell-quoted into /etc/mindroom-backup/s3.env (test_backup.py sources it in bash)
                "BACKUP_S3_SECRET_ACCESS_KEY": lambda loaded: loaded.backup().s3_secret_access_key}
# Local paths read by bootstrap/pyinfra on the operator's machine: they never reach a host.
LOCAL_PATHS = {"SSH_PUBLIC_KEY_PATH": "ssh_public_key_path", "SSH_PRIVATE_KEY_PATH": "ssh_private_key_path",
               "SSH_EXTRA_PUBLIC_KEY_PATHS": "ssh_extra_public_key_paths",
               "DOKKU_PROVISIONER_KEY_PATH": "dokku_provisioner_key_path", "OUTPUTS_FILE": "outputs_file",
               "SECRETS_DIR": "secrets_dir", "SSH_KNOWN_HOSTS_FILE": "ssh_known_hosts_file", "ENV_FILE": "env_file_name"}


def full_settings(tmp_path: Path) -> dict[str, str]:
    """A valid value for every known setting (so each check runs)."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (tmp_path / "empty.env").write_text("")
    (tmp_path / "storagebox.known_hosts").write_text("[u1.your-storagebox.de]:23 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\n")
    armour = "OPENSSH PRIVATE KEY"
    (tmp_path / "storagebox_key").write_text(f"-----BEGIN {armour}-----\nb3Bl\n-----END {armour}-----\n")
    values = {
        "ENV_FILE": str(tmp_path / "empty.env"), "HCLOUD_TOKEN": "a" * 64, "HCLOUD_ENDPOINT": "https://api.hetzner.cloud/v1",
        "HCLOUD_POLL_INTERVAL": "1", "HCLOUD_RETRY_BACKOFF": "1", "HCLOUD_TIMEOUT": "30", "ENVIRONMENT": "staging",
        "DOMAIN": "mindroom.test", "LOCATION": "nbg1", "SERVER_IMAGE": "debian-13", "DOKKU_SERVER_TYPE": "cpx31",
        "PLATFORM_SERVER_TYPE": "cpx21", "DOKKU_SERVERS": "2", "DOKKU_VOLUME_SIZE": "200", "PLATFORM_VOLUME_SIZE": "50",
        "ENABLE_BACKUPS": "true", "ADMIN_IPS": "203.0.113.7/32", "SSH_PUBLIC_KEY_PATH": "admin.pub",
        "SSH_PRIVATE_KEY_PATH": "admin", "SSH_EXTRA_PUBLIC_KEY_PATHS": "extra.pub",
        "DOKKU_PROVISIONER_KEY_PATH": "provisioner.pub", "DNS_ZONE": "mindroom.test",
        "MATRIX_FEDERATION": "false", "OUTPUTS_FILE": "outputs.json", "SECRETS_DIR": "secrets",
        "SSH_STRICT_HOST_KEY_CHECKING": "yes", "SSH_KNOWN_HOSTS_FILE": "known_hosts", "DOKKU_VERSION": "0.36.4",
        "DOKKU_APT_REPO_URL": "https://packagecloud.io/dokku/dokku/debian/",
        "DOKKU_APT_KEY_URL": "https://packagecloud.io/dokku/dokku/gpgkey", "DOKKU_APT_SUITE": "bookworm",
        "DOKKU_APT_KEY_SHA256": "0123456789abcdef" * 4,
        "LETSENCRYPT_EMAIL": "ops@mindroom.test", "LETSENCRYPT_STAGING": "false",
        "ACME_SERVER": "https://acme-v02.api.letsencrypt.org/directory", "ACME_CA_BUNDLE": str(ca),
        "SERVICE_IMAGE_TAG": "2026.12.1", "REGISTRY_CA_CERT": str(ca), "SUPABASE_URL": "https://db.mindroom.test",
        "SUPABASE_SERVICE_KEY": "service-key", "STRIPE_SECRET_KEY": "sk_test_1", "STRIPE_PUBLISHABLE_KEY": "pk_test_1",
        "STRIPE_WEBHOOK_SECRET": "whsec_1", "STRIPE_PRICE_STARTER": "price_1", "STRIPE_PRICE_PROFESSIONAL": "price_2",
        "STRIPE_PRICE_ENTERPRISE": "price_3", "REGISTRY": "ghcr.io/mindroom", "REGISTRY_USER": "deployer",
        "REGISTRY_TOKEN": "registry-token",
        "ALERT_WEBHOOK_URL": "https://hooks.mindroom.test/services/T0/B0/token", "ALERT_EMAIL_TO": "ops@mindroom.test",
        "SMTP_HOST": "smtp.mindroom.test", "SMTP_PORT": "587", "SMTP_FROM": "alerts@mindroom.test",
        "SMTP_USER": "alerts@mindroom.test", "SMTP_PASSWORD": "smtp-password", "SMTP_REQUIRE_TLS": "true",
        "ALERT_DISK_PERCENT": "85", "ALERT_MEMORY_PERCENT": "90", "ALERT_CERTIFICATE_DAYS": "14",
        "ALERT_BACKUP_MAX_AGE_HOURS": "26", "ALERT_HOST_DOWN_FOR": "2m", "ALERT_GROUP_WAIT": "30s",
        "ALERT_GROUP_INTERVAL": "5m", "ALERT_REPEAT_INTERVAL": "4h", "MONITORING_SCRAPE_INTERVAL": "15s",
        "PROMETHEUS_RETENTION_TIME": "30d", "PROMETHEUS_RETENTION_SIZE": "4GB", "PROBE_CA_BUNDLE": str(ca),
        "STRIPE_API_BASE": "https://api.stripe.com", "STRIPE_ALLOW_MODE_MISMATCH": "false", "STRIPE_RETRY_BACKOFF": "1",
        "BACKUP_REPOSITORY": "sftp://u1@u1.your-storagebox.de:23/mindroom", "BACKUP_PASSWORD": "backup-password",
        "BACKUP_SSH_KEY_PATH": str(tmp_path / "storagebox_key"),
        "BACKUP_SSH_KNOWN_HOSTS_FILE": str(tmp_path / "storagebox.known_hosts"),
        "BACKUP_S3_ACCESS_KEY_ID": "AKIA0123456789", "BACKUP_S3_SECRET_ACCESS_KEY": "s3-secret-access-key",
        "BACKUP_TIME": "03:00", "BACKUP_RANDOMIZED_DELAY": "1h", "BACKUP_KEEP_DAILY": "7", "BACKUP_KEEP_WEEKLY": "4",
        "BACKUP_KEEP_MONTHLY": "6", "BACKUP_HEALTHCHECK_URL": "https://hc-ping.com/0123-4567",
        "BACKUP_CA_CERT": "",  # s3 only (test_an_s3_repository_with_its_endpoints_ca_is_taken)
    }
    assert set(values) == KNOWN_SETTINGS, "a known setting has no valid value here"
    return values


def compose_single_quoted(line: str) -> tuple[str, str]:
    """KEY and value of a `KEY='value'` line read as compose-go v1.20.2's extractVarValue reads a single-quoted
    value: up to the first quote not escaped by a backslash, literally."""
    key, _, rest = line.partition("=")
    assert rest.startswith("'")
    escaped = False
    for index, char in enumerate(rest[1:], 1):
        if char == "'" and not escaped:
            return key, rest[1:index] + ("" if index == len(rest) - 1 else "<TRAILING>")
        escaped = char == "\\" and not escaped
    return key, "<UNTERMINATED>"


def _render_dotenv(name: str, value: str) -> list[str]:
    return [line for line in platform.dotenv({name: value}).splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("case", HOSTILE)
@pytest.mark.parametrize("name", sorted(KNOWN_SETTINGS))
def test_every_setting_refuses_or_neutralises_hostile_values(tmp_path, name, case):
    base = full_settings(tmp_path)
    for value in (HOSTILE[case], base[name] + HOSTILE[case]):
        try:
            loaded = load_settings({**base, name: value}, cwd=tmp_path)
        except SettingsError as error:
            message = str(error)
            assert name in message and "\n" not in message and len(message) < 400, message
            if name in settings_module._SECRET_NAMES and len(value) > 8:
                assert value not in message, "a secret value is never shown"
            continue
        stripped = value.strip()
        if name in FREE_TEXT:
            [line] = _render_dotenv(name, stripped)
            assert compose_single_quoted(line) == (name, stripped), f"{name}={value!r} is not literal in .env"
        elif name in SECRET_FILES:
            assert SECRET_FILES[name](loaded) == stripped, f"{name} is not literal in its file"
        elif name in LOCAL_PATHS:
            found = getattr(loaded, LOCAL_PATHS[name])
            last = found[-1] if isinstance(found, tuple) else found  # SSH_EXTRA_PUBLIC_KEY_PATHS: a list of paths
            assert str(Path(last)).endswith(str(Path(stripped))), "a local path"
        else:
            pytest.fail(f"{name}={value[:60]!r} was accepted; it must be refused")


def test_known_settings_are_documented_and_cover_what_the_testbed_writes(tmp_path):
    documented = {line.lstrip("# ").split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
                  if "=" in line and line.lstrip("# ").split("=", 1)[0].isupper()}
    assert KNOWN_SETTINGS == documented
    from tests.testbed import envfile
    assert set(envfile.base_settings(tmp_path)) <= KNOWN_SETTINGS
    assert set(envfile.GENERATED) <= KNOWN_SETTINGS
    standins = "".join((ROOT / "tests/testbed" / f"{module}.py").read_text()
                       for module in ("aptserve", "cloud", "pebble", "registry", "webhook", "storagebox"))
    returned = {word.strip('"') for line in standins.splitlines() if line.strip().startswith("return {")
                for word in line.replace(":", " ").split() if word.startswith('"') and word.strip('"').isupper()}
    assert returned and returned <= KNOWN_SETTINGS


def test_settings_get_refuses_a_name_that_is_not_registered(tmp_path):
    with pytest.raises(KeyError, match="KNOWN_SETTINGS"):
        load_settings(full_settings(tmp_path), cwd=tmp_path).get("DOKKU_SERVER")


def test_unknown_key_in_the_env_file_warns_with_the_nearest_known_one(tmp_path, capsys):
    env_file = tmp_path / "typo.env"
    env_file.write_text("DOMAIN=mindroom.test\nDOKKU_SERVER=3\nCOMPLETELY_UNRELATED_THING=1\n")
    settings = load_settings({"ENV_FILE": str(env_file)}, cwd=tmp_path)
    assert settings.dokku_servers == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["warning: typo.env: unknown setting DOKKU_SERVER is ignored; did you mean DOKKU_SERVERS?",
                     "warning: typo.env: unknown setting COMPLETELY_UNRELATED_THING is ignored; see .env.example"]
    load_settings({"ENV_FILE": str(env_file)}, cwd=tmp_path)
    assert capsys.readouterr().err == "", "warned once per process"


# -- item 1: scope ids never reach a host or Hetzner ---------------------------------------------------------
@pytest.fixture
def run():
    """Commands of an operation (uploads as FileUploadCommand) against a snapshot."""
    def run_operation(operation, snap, **args):
        with ctx_host.use(FakeHost()), ctx_state.use(fake_state()):
            snapshot.ask(**operation.asks(**args))
            snapshot.answer(snap)
            return list(operation._inner(**args))
    return run_operation


def test_ufw_quotes_every_value_so_a_hostile_source_stays_one_argument(tmp_path, run):
    source = f"fe80::1%$(touch {PWNED})"
    snap = {"ufw": {"installed": True, "enabled": True, "live": True, "rules": [
        ["allow", "tcp", "22", "0.0.0.0/0", "0.0.0.0/0", "`touch x`;", "in"]],
        "policies": {"INPUT": "DROP", "OUTPUT": "ACCEPT"}}}
    commands = [str(c) for c in run(ops.ufw_firewall, snap, rules=[("allow", "tcp", "22", source)])]
    assert commands == [f"ufw allow proto tcp from '{source}' to any port 22",
                        "ufw delete allow proto tcp from '`touch x`;' to any port 22"]
    # Run them in a real shell with ufw as a stand-in that prints its arguments: nothing is executed.
    marker = tmp_path / "argv"
    script = f'ufw() {{ printf "%s\\n" "$@" >> {shlex.quote(str(marker))}; }}\n' + "\n".join(commands)
    subprocess.run(["sh", "-c", script], check=True, cwd=tmp_path)
    assert not Path(PWNED).exists() and not (tmp_path / "x").exists()
    assert source in marker.read_text().splitlines()


def test_scoped_admin_ip_is_refused_before_any_request(tmp_path, started):  # noqa: F811
    fake = started()
    h = Harness(tmp_path, fake)
    result = h.run("plan", ADMIN_IPS=f"203.0.113.7/32,fe80::1%$(touch {PWNED})/128")
    assert result.code == 1 and result.requests == [] and len(result.err.splitlines()) == 1
    assert "ADMIN_IPS entry" in result.err and "scope id" in result.err
    assert not Path(PWNED).exists()


def test_bootstrap_sends_hetzner_exactly_the_validated_networks(tmp_path, started):  # noqa: F811
    fake = started()
    h = Harness(tmp_path, fake, ADMIN_IPS="203.0.113.7/32,2001:db8:1::/48")
    assert h.run("apply", "--yes").code == 0
    sources = {tuple(rule["source_ips"]) for firewall in fake.resources("firewalls") for rule in firewall["rules"]
               if rule["port"] == "22"}
    assert sources == {("203.0.113.7/32", "2001:db8:1::/48")}


# -- item 2: the landing places escape on their own --------------------------------------------------------
@pytest.fixture
def rendered(run):
    """The exact content ops.template uploads."""
    def render(template: str, **data) -> str:
        [*_, upload] = run(ops.template, {"files": {"/x": None}}, src=f"templates/{template}", dest="/x", mode="600", **data)
        assert isinstance(upload, FileUploadCommand)
        return upload.src.getvalue().decode()
    return render


def _compose(rendered, registry: str, tag: str) -> str:
    return rendered("platform/compose.yaml.j2", services=PLATFORM_SERVICES, registry=registry, tag=tag,
                     service_env={service.name: ["HCLOUD_TOKEN"] for service in PLATFORM_SERVICES},
                     healthcheck="wget -q -O /dev/null http://127.0.0.1:{port}{path}", project="platform",
                     network="platform", data_dir="/mnt/platform-data", key_path="/opt/platform/dokku-ssh-key",
                     known_hosts_path="/opt/platform/dokku-known-hosts", key_mount="/run/secrets/dokku-ssh-key",
                     known_hosts_mount="/run/secrets/dokku-known-hosts", dokku_host="10.0.1.10", dokku_user="dokku")


@pytest.mark.parametrize("case", ["single-quote", "double-quote", "command-substitution", "backticks", "hash",
                                  "dollar-variable", "backslash", "unicode", "ten-thousand"])
def test_compose_yaml_holds_any_registry_or_tag_as_one_literal_string(rendered, case):
    hostile = HOSTILE[case]
    plain = _compose(rendered, "registry.example.org", "latest").splitlines()
    lines = _compose(rendered, "registry.example.org" + hostile, "latest" + hostile).splitlines()
    assert len(lines) == len(plain), "no value adds a line"
    images = [line.split("image: ", 1)[1] for line in lines if line.startswith("    image: ")]
    assert [json.loads(image) for image in images] == [
        f"registry.example.org{hostile}/{service.name}:latest{hostile}".replace("$", "$$")
        for service in PLATFORM_SERVICES]


@pytest.mark.parametrize("template, data", [
    ("platform/compose.yaml.j2", {"services": PLATFORM_SERVICES, "tag": "latest\n    privileged: true"}),
    ("tls/cli.ini.j2", {"server": "https://acme.example/\nserver = https://evil.example/", "email": "a@b.c"}),
    ("tls/cli.ini.j2", {"server": "https://acme.example/", "email": "a@b.c\rserver = https://evil.example/"}),
    ("dokku/dokku.sources.j2", {"url": "https://packagecloud.io/dokku/\nTrusted: yes", "suite": "bookworm",
                                "keyring": "/etc/apt/keyrings/dokku.asc"}),
    ("dokku/dokku.preseed.j2", {"domain": "mindroom.test\ndokku dokku/web_config boolean true"}),
    ("tls/certbot-ca.conf.j2", {"ca_bundle": "/x\u2028ExecStartPre=/bin/sh"}),
])
def test_templates_refuse_a_value_that_would_add_a_line(rendered, template, data):
    with pytest.raises(OperationError, match="control character"):
        rendered(template, **data)


def test_the_health_check_curl_config_holds_any_url_literally(tmp_path):
    """curl's config syntax (curl 7.88 docs, --config): a quoted parameter takes \\ and \\" as escapes. A file://
    URL whose path holds quotes, backslashes and shell syntax is read by curl from exactly that path."""
    name = "a\"b\\c'$(id>pwned)`id>pwned`;d"  # no space: curl refuses one in a URL
    (tmp_path / name).write_text("the ping\n")
    config = tmp_path / "healthcheck.curl"
    config.write_text(ops.render("templates/backup/healthcheck.curl.j2", url=f"file://{tmp_path}/{name}"))
    done = subprocess.run(["curl", "-fsS", "-K", str(config)], capture_output=True, text=True, timeout=30,
                          cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "the ping\n"), done.stderr
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("template, data", [
    ("backup/healthcheck.curl.j2", {"url": "https://hc-ping.com/x\noutput = /etc/cron.d/x"}),
    ("backup/s3.env.j2", {"shell_quote": shlex.quote, "access_key_id": "AKIA\rX=1",
                          "secret_access_key": "secret-key-0001"}),
])
def test_secret_templates_refuse_a_value_that_would_add_a_line(template, data):
    """ops.render (secret files: no diff, never shown) checks its values as ops.template does."""
    with pytest.raises(OperationError, match="control character") as error:
        ops.render(f"templates/{template}", **data)
    assert all(value not in str(error.value) for value in data.values() if isinstance(value, str))


@pytest.mark.parametrize("value", ["x'y", "x\\", "a\rb", "a\nB=c"])
def test_dotenv_refuses_what_single_quotes_cannot_hold(value):
    with pytest.raises(OperationError, match="STRIPE_SECRET_KEY"):
        platform.dotenv({"STRIPE_SECRET_KEY": value})


def test_dotenv_keeps_dollars_and_shell_syntax_literal():
    value = f'$HCLOUD_TOKEN ${{X:-y}} $(touch {PWNED}) `id` ; # "q" é'
    [line] = _render_dotenv("STRIPE_SECRET_KEY", value)
    assert compose_single_quoted(line) == ("STRIPE_SECRET_KEY", value)


def test_compose_go_facts_recorded_here_hold_for_the_parser_model():
    """The model above follows compose-go: a backslash before the closing quote escapes it (so `x\\` cannot be
    single-quoted), a doubled backslash does not."""
    assert compose_single_quoted("K='x\\'")[1] == "<UNTERMINATED>"
    assert compose_single_quoted("K='x\\\\'")[1] == "x\\\\"
    assert compose_single_quoted("K='a'b'")[1].endswith("<TRAILING>")


def test_registry_with_a_namespace_logs_in_and_trusts_by_host():
    auth = json.loads(platform.registry_auth("ghcr.io/mindroom", "u", "t"))
    assert list(auth["auths"]) == ["ghcr.io"]
    assert platform.registry_host("10.213.0.1:5000") == "10.213.0.1:5000"


# -- item 3: ADMIN_IPS, not the whole world ------------------------------------------------------------------
@pytest.mark.parametrize("admin_ips, message", [
    ("198.51.100.77/24", "198.51.100.77/24 has host bits set: write 198.51.100.77/32 for that address or "
                         "198.51.100.0/24 for its network"),
    ("2001:db8::7/48", "write 2001:db8::7/128 for that address or 2001:db8::/48"),
    ("0.0.0.0/1,128.0.0.0/1", "0.0.0.0/1 overlaps 127.0.0.0/8 (loopback)"),
    ("128.0.0.0/1", "128.0.0.0/1 overlaps 169.254.0.0/16 (link-local)"),
    ("224.0.0.0/3", "224.0.0.0/3 overlaps 224.0.0.0/4 (multicast)"),
    ("::/1,8000::/1", "::/1 overlaps ::1/128 (loopback)"),
    ("8000::/1", "8000::/1 overlaps fe80::/10 (link-local)"),
    ("2000::/3", "opens SSH to"),
    ("127.0.0.1/32", "loopback"),
    ("::1", "loopback"),
    ("224.0.0.1/32", "multicast"),
    ("ff02::1/128", "multicast"),
    ("169.254.1.1/32", "link-local"),
    ("fe80::1/128", "link-local"),
    ("0.0.0.0/32", "unspecified"),
    ("255.255.255.255/32", "reserved or broadcast"),
    ("::ffff:203.0.113.7/128", "IPv4-mapped"),
    ("100::1/128", "not IPv6 unicast"),
    ("203.0.113.7/32,203.0.113.7/32", "203.0.113.7/32 and 203.0.113.7/32 overlap"),
    ("203.0.113.0/24, 203.0.113.7/32", "203.0.113.0/24 and 203.0.113.7/32 overlap"),
    ("198.18.0.0/15", "opens SSH to 131072 IPv4 addresses; at most 65536 (one /16)"),
    ("198.51.0.0/16,203.0.113.0/24", "opens SSH to 65792 IPv4 addresses"),
    ("2001:db8::/47", "at most 1208925819614629174706176 (one /48)"),
    ("203.0.113.7/255.255.255.255", "is not a CIDR"),
    ("２０３.0.113.7/32", "is not a CIDR"),
])
def test_admin_ips_refused(tmp_path, admin_ips, message):
    with pytest.raises(SettingsError) as error:
        load_settings({**full_settings(tmp_path), "ADMIN_IPS": admin_ips}, cwd=tmp_path)
    assert "ADMIN_IPS" in str(error.value) and message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("admin_ips, networks", [
    ("203.0.113.7", ["203.0.113.7/32"]),
    ("198.51.0.0/16", ["198.51.0.0/16"]),
    ("10.213.0.1/32, 2001:db8:1::/48", ["10.213.0.1/32", "2001:db8:1::/48"]),
    ("fd00:1::/48", ["fd00:1::/48"]),
])
def test_admin_ips_accepted(tmp_path, admin_ips, networks):
    assert load_settings({**full_settings(tmp_path), "ADMIN_IPS": admin_ips}, cwd=tmp_path).admin_ips == networks


# -- item 4: strict parsing ----------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, message", [
    ({"DOKKU_SERVERS": "1_0"}, "DOKKU_SERVERS='1_0' is not a whole number"),
    ({"DOKKU_SERVERS": "١٠"}, "DOKKU_SERVERS='١٠' is not a whole number"),
    ({"DOKKU_VOLUME_SIZE": "1e3"}, "DOKKU_VOLUME_SIZE='1e3' is not a whole number"),
    ({"HCLOUD_TIMEOUT": "nan"}, "HCLOUD_TIMEOUT='nan' is not a number"),
    ({"HCLOUD_POLL_INTERVAL": "0"}, "HCLOUD_POLL_INTERVAL=0 is out of range; allowed: 1 to 60"),
    ({"HCLOUD_RETRY_BACKOFF": "0"}, "HCLOUD_RETRY_BACKOFF=0 is out of range; allowed: 0.5 to 60"),
    ({"HCLOUD_ENDPOINT": "http://api.hetzner.cloud/v1"}, "HCLOUD_ENDPOINT='http://api.hetzner.cloud/v1' is not https"),
    ({"HCLOUD_ENDPOINT": "   "}, "HCLOUD_ENDPOINT is set but empty"),
    ({"HCLOUD_ENDPOINT": "https://user@api.hetzner.cloud/v1"}, "HCLOUD_ENDPOINT="),
    ({"DOKKU_APT_KEY_URL": "http://packagecloud.io/dokku/dokku/gpgkey"}, "plain http only to a local address"),
    ({"DOKKU_APT_KEY_SHA256": "ABCDEF" + "0" * 58}, "DOKKU_APT_KEY_SHA256='ABCDEF"),
    ({"DOKKU_APT_KEY_SHA256": "0" * 63}, "allowed: 64 lowercase hex digits"),
    ({"ACME_SERVER": "http://127.0.0.1:14000/dir"}, "ACME_SERVER='http://127.0.0.1:14000/dir' is not https"),
    ({"BACKUP_RANDOMIZED_DELAY": "999999w"}, "BACKUP_RANDOMIZED_DELAY=999999w is too long"),
    ({"BACKUP_RANDOMIZED_DELAY": "121m"}, "must follow that day's backup; allowed: a duration such as 30m or 1h, at most 2h"),
    ({"BACKUP_RANDOMIZED_DELAY": "0s"}, "BACKUP_RANDOMIZED_DELAY='0s' is invalid"),
    ({"BACKUP_RANDOMIZED_DELAY": "-1h"}, "BACKUP_RANDOMIZED_DELAY='-1h' is invalid"),
    ({"BACKUP_REPOSITORY": "sftp://u1@-oProxyCommand/x"}, "BACKUP_REPOSITORY='sftp://u1@-oProxyCommand/x' is invalid"),
    ({"BACKUP_REPOSITORY": "sftp://u1@.box/x"}, "BACKUP_REPOSITORY='sftp://u1@.box/x' is invalid"),
    ({"BACKUP_REPOSITORY": "sftp://u1@box:0/x"}, "has port 0; allowed: 1 to 65535"),
    # the s3 endpoint's host and port as strict as the sftp host's
    ({"BACKUP_REPOSITORY": "s3:https://-x/bucket"}, "BACKUP_REPOSITORY='s3:https://-x/bucket' is invalid"),
    ({"BACKUP_REPOSITORY": "s3:https://./bucket"}, "BACKUP_REPOSITORY='s3:https://./bucket' is invalid"),
    ({"BACKUP_REPOSITORY": "s3:https://.fsn1.your-objectstorage.com/bucket"}, "is invalid; allowed: sftp://"),
    ({"BACKUP_REPOSITORY": "s3:https://fsn1-.your-objectstorage.com/bucket"}, "is invalid; allowed: sftp://"),
    ({"BACKUP_REPOSITORY": "s3:https://a..b/bucket"}, "BACKUP_REPOSITORY='s3:https://a..b/bucket' is invalid"),
    ({"BACKUP_REPOSITORY": "s3:https://" + "a" * 64 + ".example/bucket"}, "is invalid; allowed: sftp://"),
    ({"BACKUP_REPOSITORY": "s3:https://fsn1.your-objectstorage.com:99999/bucket"},
     "has port 99999; allowed: 1 to 65535"),
    ({"BACKUP_REPOSITORY": "s3:https://fsn1.your-objectstorage.com:0/bucket"}, "has port 0; allowed: 1 to 65535"),
    ({"BACKUP_REPOSITORY": "s3:https://fsn1.your-objectstorage.com:/bucket"}, "is invalid; allowed: sftp://"),
    ({"BACKUP_REPOSITORY": "s3:http://fsn1.your-objectstorage.com/bucket"}, "is invalid; allowed: sftp://"),
    ({"BACKUP_REPOSITORY": "s3:https://fsn1.your-objectstorage.com/bucket-"}, "is invalid; allowed: sftp://"),
    ({"BACKUP_REPOSITORY": "s3:https://fsn1.your-objectstorage.com/-o/x"}, "is invalid; allowed: sftp://"),
    ({"BACKUP_REPOSITORY": "s3:https://user@fsn1.your-objectstorage.com/bucket"}, "is invalid; allowed: sftp://"),
    ({"BACKUP_CA_CERT": "storagebox_key"}, "BACKUP_CA_CERT='storagebox_key' holds no PEM certificate"),
    ({"BACKUP_CA_CERT": "ca.pem"}, "BACKUP_CA_CERT is for an s3 BACKUP_REPOSITORY only"),
    ({"BACKUP_KEEP_DAILY": "0"}, "BACKUP_KEEP_DAILY=0 is out of range; allowed: 1 to 1000"),
    ({"BACKUP_KEEP_WEEKLY": "-1"}, "BACKUP_KEEP_WEEKLY='-1' is not a whole number"),
    ({"BACKUP_KEEP_MONTHLY": "99999999999"}, "BACKUP_KEEP_MONTHLY='99999999999' is not a whole number"),
    ({"BACKUP_TIME": "24:00"}, "BACKUP_TIME='24:00' is invalid; allowed: HH:MM in UTC"),
    ({"DOKKU_VERSION": "1" * 5000 + ".0.0"}, "DOKKU_VERSION='1111"),
    ({"DOKKU_VERSION": "0.38.27-1"}, "DOKKU_VERSION='0.38.27-1' is invalid; allowed: a version such as 0.38.27"),
])
def test_strict_parsing(tmp_path, overrides, message):
    with pytest.raises(SettingsError) as error:
        load_settings({**full_settings(tmp_path), **overrides}, cwd=tmp_path)
    assert message in str(error.value)


@pytest.mark.parametrize("name, url, tag, message", [
    ("postgres", "https://github.com/dokku/dokku-postgres.git", "--help", "settings.DOKKU_PLUGINS['postgres'] tag='--help'"),
    ("postgres", "https://github.com/dokku/dokku-postgres.git", "1.48.0 && id", "tag='1.48.0 && id' is invalid"),
    ("postgres", "https://github.com/dokku/dokku-postgres.git", "", "tag='' is invalid"),
    ("postgres", "https://github.com/dokku/dokku-postgres.git", "a" * 65, "tag='aaaa"),
    ("../x", "https://github.com/dokku/dokku-postgres.git", "1.48.0", "settings.DOKKU_PLUGINS['../x']='../x' is invalid"),
    ("postgres", "http://github.com/dokku/dokku-postgres.git", "1.48.0", "URL='http://github.com/"),
    ("postgres", "https://github.com/dokku/$(id).git", "1.48.0", "URL='https://github.com/dokku/$(id).git' has "),
])
def test_dokku_plugins_that_would_break_the_plugin_commands_stop_every_command(tmp_path, monkeypatch, name, url, tag,
                                                                                message):
    monkeypatch.setattr(settings_module, "DOKKU_PLUGINS", {**settings_module.DOKKU_PLUGINS, name: (url, tag)})
    with pytest.raises(SettingsError) as error:
        load_settings(full_settings(tmp_path), cwd=tmp_path)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("delay", ["2h", "120m", "7200s", "30s"])
def test_a_randomized_delay_up_to_two_hours_is_taken_as_it_is(tmp_path, delay):
    assert load_settings({**full_settings(tmp_path), "BACKUP_RANDOMIZED_DELAY": delay},
                         cwd=tmp_path).backup().randomized_delay == delay


@pytest.mark.parametrize("repository", [
    "s3:https://fsn1.your-objectstorage.com/mindroom-backups/mindroom", "s3:https://nbg1.your-objectstorage.com/abc",
    "s3:https://10.213.0.1:9443/mindroom-testbed/backups", "s3:https://s3.example:65535/b.c-d/x/y_z",
    "s3:https://fsn1.your-objectstorage.com:443/bucket",
])
def test_an_s3_repository_with_its_endpoints_ca_is_taken(tmp_path, repository):
    backup = load_settings({**full_settings(tmp_path), "BACKUP_REPOSITORY": repository, "BACKUP_CA_CERT": "ca.pem"},
                           cwd=tmp_path).backup()
    assert (backup.kind, backup.repository, backup.ca_cert) == ("s3", repository, str(tmp_path / "ca.pem"))


@pytest.mark.parametrize("repository, known_host", [
    ("sftp://u1@box:23/x", "[box]:23"), ("sftp://u1@10.213.0.1:23/mindroom", "[10.213.0.1]:23"),
    ("sftp://u123456@U123456.your-storagebox.de:23/mindroom", "[u123456.your-storagebox.de]:23"),
    ("sftp://u1@box/x", "box"), ("sftp://u1@box:22/x", "other,box"), ("sftp://u1@box:0023/x", "[box]:23"),
])
def test_an_sftp_repository_on_a_host_name_or_address_is_taken(tmp_path, repository, known_host):
    (tmp_path / "box.known_hosts").write_text(f"{known_host} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\n")
    assert load_settings({**full_settings(tmp_path), "BACKUP_REPOSITORY": repository,
                          "BACKUP_SSH_KNOWN_HOSTS_FILE": str(tmp_path / "box.known_hosts")},
                         cwd=tmp_path).backup().repository == repository


@pytest.mark.parametrize("repository, known_host, wanted", [
    ("sftp://u1@box:23/x", "box", "[box]:23"), ("sftp://u1@box/x", "[box]:23", "box"),
    ("sftp://u1@box:23/x", "[other]:23", "[box]:23"), ("sftp://u1@box:23/x", "[box]:2323", "[box]:23"),
])
def test_a_known_hosts_file_without_the_repositorys_host_is_refused(tmp_path, repository, known_host, wanted):
    (tmp_path / "box.known_hosts").write_text(f"{known_host} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\n")
    with pytest.raises(SettingsError) as error:
        load_settings({**full_settings(tmp_path), "BACKUP_REPOSITORY": repository,
                       "BACKUP_SSH_KNOWN_HOSTS_FILE": str(tmp_path / "box.known_hosts")}, cwd=tmp_path)
    assert str(error.value).endswith(f"box.known_hosts' has no key for {wanted}, the host of BACKUP_REPOSITORY; "
                                     f"allowed: its key as `ssh-keyscan -p {wanted.rpartition(':')[2] if ':' in wanted else 22} box` "
                                     "prints it"), error.value


def test_the_fake_cloud_on_loopback_may_be_plain_http_and_polled_fast(tmp_path):
    settings = load_settings({**full_settings(tmp_path), "HCLOUD_ENDPOINT": "http://127.0.0.1:8088/v1",
                              "HCLOUD_POLL_INTERVAL": "0.005", "DOKKU_APT_KEY_URL": "http://10.213.0.1:8089/gpgkey"},
                             cwd=tmp_path)
    assert (settings.hcloud_endpoint, settings.hcloud_poll_interval) == ("http://127.0.0.1:8088/v1", 0.005)


# -- item 12: one line, no traceback -------------------------------------------------------------------------
def _one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("--> Loading")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert all(fragment in lines[0] for fragment in fragments), lines[0]


@pytest.mark.parametrize("argv, fragment", [
    (["backup.py", "restore", "h", "--snapshot", "$(touch /tmp/x)"], "argument --snapshot: '$(touch /tmp/x)' is not a "
                                                                     "snapshot ID (8 to 64 hex digits"),
    (["backup.py", "restore", "h", "--snapshot", "ab12cd34\n--overwrite"], "argument --snapshot: 'ab12cd34\\n--overwrite'"),
    (["backup.py", "restore", "h", "--snapshot", "../../etc"], "is not a snapshot ID"),
    (["backup.py", "restore", "h", "--snapshot", ""], "is not a snapshot ID"),
    (["backup.py", "restore", "h", "--snapshot", "a" * 65], "is not a snapshot ID"),
    (["backup.py", "restore"], "backup.py restore: error: the following arguments are required: HOST"),
    (["backup.py", "forget"], "backup.py: error: argument command: invalid choice: 'forget'"),
    (["maintain.py", "reboot", "--lock-wait", "-5"], "maintain.py reboot: error: argument --lock-wait: '-5' is not"),
    (["maintain.py", "upgrade", "--lock-wait", "1e9"], "argument --lock-wait: '1e9' is not a number of seconds"),
    (["maintain.py", "upgrade", "--force"], "maintain.py: error: unrecognized arguments: --force"),
    (["maintain.py"], "maintain.py: error: the following arguments are required: command"),
])
def test_command_line_errors_of_backup_and_maintain_are_one_line(argv, fragment):
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"]}, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert fragment in line and line.endswith("--help)"), line


def test_unwritable_outputs_file_is_refused_before_anything_is_created(tmp_path, started):  # noqa: F811
    fake = started()
    h = Harness(tmp_path, fake)
    (tmp_path / "a-file").write_text("")
    for outputs_file in (str(tmp_path / "a-file/outputs.json"), str(tmp_path)):
        result = h.run("apply", "--yes", OUTPUTS_FILE=outputs_file)
        assert result.code == 1 and result.mutations == [] and result.requests == []
        assert result.err.startswith("error: OUTPUTS_FILE=") and "cannot be written" in result.err
        assert len(result.err.splitlines()) == 1


@pytest.mark.parametrize("token", ["tökén", "t\u20acken", "two words"])
def test_hcloud_token_outside_printable_ascii(tmp_path, started, token):  # noqa: F811
    result = Harness(tmp_path, started()).run("plan", HCLOUD_TOKEN=token)
    assert result.code == 1 and result.requests == [] and len(result.err.splitlines()) == 1
    assert "HCLOUD_TOKEN has characters outside printable ASCII" in result.err and token not in result.err


@pytest.mark.parametrize("blob", ["AAAA=A", "AAAAC3NzaC1yc2EAAAADAQAB", "!!!!", "AAAAC3NzaC1lZDI1NTE5"[:-1]])
def test_public_key_whose_blob_is_not_a_key(tmp_path, started, blob):  # noqa: F811
    h = Harness(tmp_path, started())
    (tmp_path / "bad.pub").write_text(f"ssh-ed25519 {blob} me@laptop\n")
    result = h.run("plan", SSH_PUBLIC_KEY_PATH=str(tmp_path / "bad.pub"))
    assert result.code == 1 and result.requests == [] and len(result.err.splitlines()) == 1
    assert "SSH_PUBLIC_KEY_PATH=" in result.err


def test_env_file_that_is_not_utf8(tmp_path):
    (tmp_path / "latin1.env").write_bytes("DOMAIN=mindroom.test\nSTRIPE_SECRET_KEY=s\xe9cret\n".encode("latin-1"))
    with pytest.raises(SettingsError, match=r"ENV_FILE=.*latin1.env' is not UTF-8 \(byte 40\)"):
        load_settings({"ENV_FILE": "latin1.env"}, cwd=tmp_path)


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "cannot be read as JSON"),
    ('{"servers": [{"name": "mindroom-staging-platform", "role": "platform"}]}', "lacks servers with name"),
    ('{"servers": [{"name": "x", "role": "platform", "ipv4": "1.2.3.4\\"", "private_ip": "10.0.1.20"}]}',
     "lacks servers with name"),
    ('["servers"]', "lacks servers"),
    ('{"environment": "production", "servers": []}', "lists no server; run `python bootstrap.py apply`"),
])
def test_inventory_with_a_bad_outputs_file(tmp_path, content, fragment):
    (tmp_path / "outputs.json").write_text(content)
    (tmp_path / "test.env").write_text("DOMAIN=mindroom.test\nOUTPUTS_FILE=outputs.json\n")
    done = subprocess.run([sys.executable, "-c", "import inventory"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "ENV_FILE": str(tmp_path / "test.env")})
    _one_line_error(done, "error: OUTPUTS_FILE=", fragment)


@pytest.mark.parametrize("name", ["ACME_CA_BUNDLE", "REGISTRY_CA_CERT"])
def test_missing_or_wrong_ca_file_is_refused_at_load(tmp_path, name):
    base = full_settings(tmp_path)
    with pytest.raises(SettingsError, match=f"{name}='missing.pem' cannot be read"):
        load_settings({**base, name: "missing.pem"}, cwd=tmp_path)
    # a private key (PKCS#8 PEM), made at run time, where a certificate belongs
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-m", "PKCS8", "-N", "", "-f", str(tmp_path / "key.pem")],
                   check=True)
    with pytest.raises(SettingsError, match=f"{name}='key.pem' holds no PEM certificate"):
        load_settings({**base, name: "key.pem"}, cwd=tmp_path)


def test_admin_password_cli_errors_are_one_line(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (tmp_path / "test.env").write_text(f"DOMAIN=mindroom.test\nSECRETS_DIR={secrets}\n")
    env = {**os.environ, "ENV_FILE": str(tmp_path / "test.env")}
    (secrets / "admin-password").write_text("é" * 40 + "\n")
    done = subprocess.run([sys.executable, "admin_password.py", "show"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    _one_line_error(done, "is 80 bytes; bcrypt takes at most 72")
    (secrets / "admin-password").write_text("fine-password\n")
    (secrets / "admin-password.bcrypt").write_text("garbage\n")
    done = subprocess.run([sys.executable, "admin_password.py", "show"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    _one_line_error(done, "admin-password.bcrypt is not a bcrypt hash")


# -- item 13: SECRETS_DIR ------------------------------------------------------------------------------------
def test_secrets_dir_that_is_a_file_or_not_private_is_refused_and_left_alone(tmp_path):
    base = full_settings(tmp_path)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SettingsError, match="SECRETS_DIR=.*a-file' is not a directory"):
        load_settings({**base, "SECRETS_DIR": "a-file"}, cwd=tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(SettingsError, match=r"SECRETS_DIR=.*shared' is not private \(mode 1777"):
        load_settings({**base, "SECRETS_DIR": str(shared)}, cwd=tmp_path)
    with pytest.raises(SettingsError, match="is not private"):
        admin_password.admin_credentials(shared)
    assert shared.stat().st_mode & 0o7777 == 0o1777 and list(shared.iterdir()) == []


def test_secrets_dir_the_project_creates_is_private(tmp_path):
    admin_password.admin_credentials(tmp_path / "new" / "secrets")
    assert (tmp_path / "new" / "secrets").stat().st_mode & 0o777 == 0o700


def test_a_garbage_hash_is_never_deployed_even_when_newer_than_the_password(tmp_path):
    secrets = tmp_path / "secrets"
    admin_password.admin_credentials(secrets)
    (secrets / admin_password.HASH_FILE).write_text("$2b$12$" + "x" * 10 + "\n")  # newer than the password file
    with pytest.raises(SettingsError, match="is not a bcrypt hash"):
        admin_password.admin_credentials(secrets)



def test_nginx_apply_script_holds_the_domain_in_one_quoted_assignment(rendered):
    domain = f"x$(touch {PWNED})`id`;y"
    script = rendered("nginx/mindroom-nginx-apply.j2", domain=domain, config_dir="/etc/nginx/mindroom")
    assert script.count(domain) == 1
    [assignment] = [line for line in script.splitlines() if line.startswith("domain=")]
    assert shlex.split(assignment) == [f"domain={domain}"]
