"""Offline checks of the monitoring stack (tasks/monitoring.py): the settings' validation, and the configurations
rendered from the real group data (the hosts check them again with promtool and amtool, tests/hosts)."""

import runpy
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from jinja2 import FileSystemLoader
from pyinfra.api.util import get_template

from settings import BACKUP_METRICS, SettingsError, load_settings
from tasks import monitoring

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates/monitoring"
WEBHOOK = "https://hooks.example.org/services/T000/B000/hidden-hook-token"
SMTP_PASSWORD = "hidden-smtp-password"


@pytest.fixture
def platform_data(tmp_path, monkeypatch):
    """The platform's host data as pyinfra builds it (group_data/all.py, then platform.py), with alerts going to
    a webhook and two addresses."""
    key = tmp_path / "admin"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    environment = {
        "ENV_FILE": str(env_file), "DOMAIN": "example.org", "ADMIN_IPS": "203.0.113.7/32",
        "SSH_PUBLIC_KEY_PATH": f"{key}.pub", "DOKKU_PROVISIONER_KEY_PATH": f"{key}.pub",
        "SECRETS_DIR": str(tmp_path / "secrets"), "HCLOUD_TOKEN": "t", "SUPABASE_URL": "https://db.example.org",
        "SUPABASE_SERVICE_KEY": "s", "STRIPE_SECRET_KEY": "s", "STRIPE_PUBLISHABLE_KEY": "p",
        "STRIPE_WEBHOOK_SECRET": "w", "STRIPE_PRICE_STARTER": "1", "STRIPE_PRICE_PROFESSIONAL": "2",
        "STRIPE_PRICE_ENTERPRISE": "3", "REGISTRY": "registry.example.org", "REGISTRY_USER": "u",
        "REGISTRY_TOKEN": "r", "LETSENCRYPT_EMAIL": "ops@example.org", "DOKKU_APT_KEY_SHA256": "0" * 64, "ALERT_WEBHOOK_URL": WEBHOOK,
        "ALERT_EMAIL_TO": "ops@example.org, oncall@example.org", "SMTP_HOST": "smtp.example.org",
        "SMTP_USER": "alerts@example.org", "SMTP_PASSWORD": SMTP_PASSWORD, "ALERT_DISK_PERCENT": "80",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    values = runpy.run_path(str(ROOT / "group_data/all.py"))
    values.update(runpy.run_path(str(ROOT / "group_data/platform.py")))
    values.update(role="platform", private_ip="10.0.1.20", public_ipv4="192.0.2.20")
    return SimpleNamespace(**{key: value for key, value in values.items() if not key.startswith("__")})


def _dokku(number: int):
    return SimpleNamespace(name=f"mindroom-production-dokku-{number}",
                           data=SimpleNamespace(role="dokku", private_ip=f"10.0.1.{9 + number}",
                                                public_ipv4=f"192.0.2.{number}", http_port=80))


def _rendered(data) -> dict[str, str]:
    contexts = monitoring.config_contexts(data, "mindroom-production-platform", [_dokku(1), _dokku(2)])
    loader = FileSystemLoader(str(TEMPLATES))
    return {name: get_template(str(TEMPLATES / name), jinja_env_kwargs={"loader": loader}).render(context)
            for name, context in contexts.items()}


def test_prometheus_scrapes_every_host_over_the_private_network(platform_data):
    config = yaml.safe_load(_rendered(platform_data)["prometheus.yml.j2"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    nodes = [(group["targets"], group["labels"]["host"]) for group in jobs["node"]["static_configs"]]
    assert nodes == [(["10.0.1.20:9100"], "mindroom-production-platform"),
                     (["10.0.1.10:9100"], "mindroom-production-dokku-1"),
                     (["10.0.1.11:9100"], "mindroom-production-dokku-2")]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    assert config["rule_files"] == [f"{monitoring.RULES_DIR}/*.yml"]


def test_probes_cover_names_services_and_dokku_servers(platform_data):
    config = yaml.safe_load(_rendered(platform_data)["prometheus.yml.j2"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    https = jobs["platform-https"]
    assert [group["labels"]["name"] for group in https["static_configs"]] == platform_data.platform_hostnames
    assert {tuple(group["targets"]) for group in https["static_configs"]} == {("https://192.0.2.20/",)}
    # the name goes to blackbox_exporter's `hostname` parameter (Host header and TLS server name)
    assert {"source_labels": ["name"], "target_label": "__param_hostname"} in https["relabel_configs"]
    services = [group["targets"][0] for group in jobs["platform-services"]["static_configs"]]
    assert "http://127.0.0.1:3002/health" in services and "http://127.0.0.1:3000/" in services
    assert [group["targets"] for group in jobs["dokku-http"]["static_configs"]] == [["192.0.2.1:80"], ["192.0.2.2:80"]]
    for job in ("platform-https", "platform-services", "dokku-http"):
        assert jobs[job]["relabel_configs"][-1] == {"target_label": "__address__", "replacement": "127.0.0.1:9115"}


def test_rules_carry_the_thresholds_of_the_settings(platform_data):
    groups = yaml.safe_load(_rendered(platform_data)["mindroom-rules.yml.j2"])["groups"]
    rules = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    assert set(rules) == {"HostDown", "DiskAlmostFull", "MemoryPressure", "PlatformServiceDown",
                          "PlatformServiceUnhealthy", "PlatformServiceRestarting", "PlatformNameUnreachable",
                          "CertificateExpiring", "DokkuHTTPDown", "MonitoringComponentDown", "BackupStale",
                          "BackupRestoreTestFailed"}
    assert rules["HostDown"]["for"] == "2m"
    assert rules["DiskAlmostFull"]["expr"].endswith("> 80")  # ALERT_DISK_PERCENT=80
    assert 'mountpoint=~"/|/mnt/dokku-data|/mnt/platform-data"' in rules["DiskAlmostFull"]["expr"]
    assert "< 14 * 86400" in rules["CertificateExpiring"]["expr"]
    assert rules["BackupStale"]["expr"] == f"time() - {BACKUP_METRICS['last_success']} > 26 * 3600"
    assert rules["BackupRestoreTestFailed"]["expr"] == f"{BACKUP_METRICS['restore_test_success']} == 0"
    # Prometheus' own template language survives jinja
    assert "{{ $labels.host }} is down" in rules["HostDown"]["annotations"]["summary"]


def test_alertmanager_config_holds_no_secret(platform_data):
    text = _rendered(platform_data)["alertmanager.yml.j2"]
    assert WEBHOOK not in text and SMTP_PASSWORD not in text
    config = yaml.safe_load(text)
    [receiver] = config["receivers"]
    assert receiver["webhook_configs"] == [{"url_file": monitoring.WEBHOOK_URL_FILE, "send_resolved": True}]
    assert [mail["to"] for mail in receiver["email_configs"]] == ["ops@example.org", "oncall@example.org"]
    assert all(mail["send_resolved"] for mail in receiver["email_configs"])
    assert config["global"]["smtp_auth_password_file"] == monitoring.SMTP_PASSWORD_FILE
    assert config["global"]["smtp_smarthost"] == "smtp.example.org:587"
    assert (config["route"]["group_wait"], config["route"]["repeat_interval"]) == ("30s", "4h")


def test_secrets_are_host_data_secrets_only(platform_data):
    assert platform_data.monitoring.webhook_url == "" and platform_data.monitoring.smtp_password == ""
    assert platform_data.alert_secrets["webhook_url"] == WEBHOOK
    assert WEBHOOK not in repr(platform_data.alert_secrets) and SMTP_PASSWORD not in repr(platform_data.alert_secrets)


def test_daemons_listen_on_loopback_and_retention_is_bounded(platform_data):
    args = monitoring.server_args(platform_data)
    listen = {unit: next(arg for arg in flags if arg.startswith("--web.listen-address=")) for unit, flags in args.items()}
    assert all(value.startswith("--web.listen-address=127.0.0.1:") for value in listen.values())
    assert "--cluster.listen-address=" in args["prometheus-alertmanager"]
    assert {"--storage.tsdb.retention.time=30d", "--storage.tsdb.retention.size=4GB"} <= set(args["prometheus"])


@pytest.mark.parametrize("name, value, message", [
    ("ALERT_WEBHOOK_URL", "https://hooks.example.org/x y", "ALERT_WEBHOOK_URL is invalid"),
    ("ALERT_WEBHOOK_URL", "http://hooks.example.org/token", "ALERT_WEBHOOK_URL is invalid"),  # plain http: public
    ("ALERT_WEBHOOK_URL", "ftp://hooks.example.org/x", "ALERT_WEBHOOK_URL is invalid"),
    ("ALERT_EMAIL_TO", "ops@example.org,not-an-address", "ALERT_EMAIL_TO='not-an-address' is invalid"),
    ("ALERT_DISK_PERCENT", "100", "ALERT_DISK_PERCENT=100 is out of range"),
    ("ALERT_HOST_DOWN_FOR", "2 minutes", "ALERT_HOST_DOWN_FOR='2 minutes' is invalid"),
    ("PROMETHEUS_RETENTION_SIZE", "4G", "PROMETHEUS_RETENTION_SIZE='4G' is invalid"),
    ("SMTP_HOST", "smtp.example.org;x", "SMTP_HOST="),
    ("SMTP_FROM", "alerts@example.org'", "SMTP_FROM="),
    ("SMTP_PASSWORD", "two\nlines", "SMTP_PASSWORD contains the control character"),
    ("PROBE_CA_BUNDLE", "/nonexistent/ca.pem", "PROBE_CA_BUNDLE="),
])
def test_bad_monitoring_settings_stop_with_one_line(tmp_path, name, value, message):
    extra = {"ALERT_EMAIL_TO": "ops@example.org", "SMTP_HOST": "smtp.example.org"} if name.startswith("SMTP") else {}
    with pytest.raises(SettingsError) as error:
        load_settings({"DOMAIN": "example.org", **extra, name: value}, cwd=tmp_path)
    assert str(error.value).startswith(message) and "\n" not in str(error.value).strip()
    if name == "ALERT_WEBHOOK_URL":
        assert value not in str(error.value)  # the URL may hold a token


def test_email_needs_an_smtp_server(tmp_path):
    with pytest.raises(SettingsError, match="SMTP_HOST is required with ALERT_EMAIL_TO"):
        load_settings({"DOMAIN": "example.org", "ALERT_EMAIL_TO": "ops@example.org"}, cwd=tmp_path)


def test_a_local_receiver_may_be_plain_http(tmp_path):
    url = "http://10.213.0.1:8099/alerts/token"
    assert load_settings({"DOMAIN": "example.org", "ALERT_WEBHOOK_URL": url}, cwd=tmp_path).monitoring().webhook_url == url
