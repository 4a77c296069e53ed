"""tasks/monitoring.py: node_exporter on every host's private address (ufw: from the platform's private IP only),
Prometheus, Alertmanager and blackbox_exporter on the platform's loopback, nothing of it reachable from outside;
every scrape target up, every probe succeeding, every rule file and configuration accepted by its own checker."""

import json
import re
import socket
import time

import pytest
import testinfra

from settings import NODE_EXPORTER_PORT, load_settings
from tasks import monitoring
from tests.hosts import live
from tests.hosts.roles import group_data

testinfra_hosts = live.hosts("dokku") + live.hosts("platform")
SETTINGS = load_settings()
MONITORING = SETTINGS.monitoring()
PLATFORM = group_data("platform")
LOOPBACK_PORTS = [PLATFORM["prometheus_port"], PLATFORM["alertmanager_port"], PLATFORM["blackbox_exporter_port"]]
ALERTMANAGER_CLUSTER_PORT = 9094  # Alertmanager's gossip default, switched off
# Prometheus scrapes every MONITORING_SCRAPE_INTERVAL: right after a deploy the first scrape may still be due.
SETTLE_SECONDS = 90


@pytest.fixture(scope="module")
def platform(request):
    """The platform host, for the checks that run there once (not once per host)."""
    return testinfra.get_host(live.hosts("platform")[0], ssh_config=request.config.option.ssh_config)


def _listening(host, port: int) -> list[str]:
    return sorted(line.split()[3] for line in host.check_output(f"ss -ltnH 'sport = :{port}'").splitlines())


def _api(platform, path: str) -> dict:
    return json.loads(platform.check_output(f"curl -sf 'http://127.0.0.1:{PLATFORM['prometheus_port']}{path}'"))


def _settled(check, what: str):
    """check() until it returns a true value, for at most SETTLE_SECONDS; fail naming what it last saw."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        ok, seen = check()
        if ok:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what} after {SETTLE_SECONDS}s: {seen}")
        time.sleep(3)


def test_node_exporter_listens_on_the_private_address_only(host, host_data):
    assert host.service("prometheus-node-exporter").is_running
    assert host.service("prometheus-node-exporter").is_enabled
    assert _listening(host, NODE_EXPORTER_PORT) == [f"{host_data['private_ip']}:{NODE_EXPORTER_PORT}"]


def test_ufw_admits_node_exporter_from_the_platform_only(host):
    rules = [rule for rule in host.check_output("ufw show added").splitlines() if f"port {NODE_EXPORTER_PORT}" in rule]
    assert rules == [f"ufw allow from {SETTINGS.platform_private_ip} to any port {NODE_EXPORTER_PORT} proto tcp"]


def test_nothing_of_it_answers_on_the_public_address(host, host_data):
    """From here (outside the hosts, as anyone on the internet): the exporter and the monitoring ports are closed."""
    ports = [NODE_EXPORTER_PORT] + (LOOPBACK_PORTS + [ALERTMANAGER_CLUSTER_PORT] if host_data["role"] == "platform"
                                    else [])
    answered = []
    for port in ports:
        try:
            socket.create_connection((host_data["public_ipv4"], port), timeout=1.5).close()
            answered.append(port)
        except OSError:
            pass
    assert answered == []


@pytest.mark.parametrize("dokku", live.hosts("dokku")[:1])
def test_another_host_cannot_scrape_the_platform(request, dokku):
    """ufw on the platform drops node_exporter's port from any other private address (here: a Dokku host's)."""
    other = testinfra.get_host(dokku, ssh_config=request.config.option.ssh_config)
    url = f"http://{SETTINGS.platform_private_ip}:{NODE_EXPORTER_PORT}/metrics"
    assert other.run(f"curl -s -m 3 -o /dev/null {url}").rc != 0


def test_monitoring_daemons_listen_on_loopback_only(platform):
    for unit in monitoring.SERVER_UNITS:
        assert platform.service(unit).is_running and platform.service(unit).is_enabled, unit
    for port in LOOPBACK_PORTS:
        assert _listening(platform, port) == [f"127.0.0.1:{port}"], port
    assert _listening(platform, ALERTMANAGER_CLUSTER_PORT) == []


def test_every_target_is_up(platform):
    def check():
        targets = _api(platform, "/api/v1/targets?state=active")["data"]["activeTargets"]
        down = [(target["labels"]["job"], target["labels"]["instance"], target["lastError"]) for target in targets
                if target["health"] != "up"]
        nodes = {target["labels"].get("host") for target in targets if target["labels"]["job"] == "node"}
        return not down and nodes == {name for members in live.groups.values() for name, _ in members}, down or nodes
    _settled(check, "targets not up (job, instance, error)")


def test_every_probe_succeeds(platform):
    def check():
        results = _api(platform, "/api/v1/query?query=probe_success")["data"]["result"]
        failing = [(sample["metric"]["job"], sample["metric"]["instance"]) for sample in results
                   if sample["value"][1] != "1"]
        jobs = {sample["metric"]["job"] for sample in results}
        return not failing and jobs == {"platform-https", "platform-services", "dokku-http"}, failing or jobs
    _settled(check, "probes failing (job, target)")


def test_certificate_expiry_is_seen_for_every_name(platform):
    def check():
        results = _api(platform, "/api/v1/query?query=probe_ssl_earliest_cert_expiry")["data"]["result"]
        names = {sample["metric"].get("name") for sample in results}
        return names == set(SETTINGS.platform_hostnames()), names
    _settled(check, "names with a certificate expiry")


def test_platform_containers_reach_the_textfile_collector(platform):
    def check():
        results = _api(platform, "/api/v1/query?query=mindroom_platform_service_running")["data"]["result"]
        running = {sample["metric"]["service"]: sample["value"][1] for sample in results}
        return set(running.values()) == {"1"} and len(running) == len(PLATFORM["platform_services"]), running
    _settled(check, "platform services seen running through node_exporter")


def test_rule_files_pass_promtool(platform):
    files = platform.check_output(f"ls {monitoring.RULES_DIR}/*.yml").split()
    assert files
    for path in files:
        result = platform.run(f"promtool check rules {path}")
        assert result.rc == 0, result.stdout + result.stderr
    assert platform.run(f"promtool check config {monitoring.PROMETHEUS_CONFIG}").rc == 0


def _rules(platform) -> dict:
    return {rule["name"]: rule for group in _api(platform, "/api/v1/rules")["data"]["groups"] for rule in group["rules"]}


def test_rules_are_loaded_with_the_settings_thresholds(platform):
    rules = _rules(platform)
    assert f"> {MONITORING.disk_percent}" in rules["DiskAlmostFull"]["query"]
    assert PLATFORM["backup_metrics"]["last_success"] in rules["BackupStale"]["query"]

    def check():
        health = {name: rule["health"] for name, rule in _rules(platform).items()}
        return set(health.values()) == {"ok"}, health
    _settled(check, "rules evaluated without errors")


def _bytes(size: str) -> int:
    """Prometheus' sizes are powers of two whether written GB (the setting) or GiB (its flags API)."""
    number, unit = re.fullmatch(r"([0-9]+)([KMGTPE]?)i?B", size).groups()
    return int(number) * 1024 ** " KMGTPE".index(unit or " ")


def test_retention_is_bounded_by_the_settings(platform):
    flags = _api(platform, "/api/v1/status/flags")["data"]
    assert flags["storage.tsdb.retention.time"] == MONITORING.retention_time
    assert _bytes(flags["storage.tsdb.retention.size"]) == _bytes(MONITORING.retention_size)


def test_alertmanager_config_is_valid_and_holds_no_secret(platform):
    assert platform.run(f"amtool check-config {monitoring.ALERTMANAGER_CONFIG}").rc == 0
    text = platform.file(monitoring.ALERTMANAGER_CONFIG).content_string
    secrets = [value for value in (MONITORING.webhook_url, MONITORING.smtp_password) if value]
    assert not any(value in text for value in secrets), "a secret is in the configuration"  # (never shown)
    for path, value in ((monitoring.WEBHOOK_URL_FILE, MONITORING.webhook_url),
                        (monitoring.SMTP_PASSWORD_FILE, MONITORING.smtp_password)):
        secret = platform.file(path)
        if value:
            assert path in text
            assert (secret.user, secret.group, secret.mode) == ("prometheus", "prometheus", 0o600), path
        else:
            assert not secret.exists, f"{path} is left over though its setting is unset"
    assert platform.run(f"curl -sf http://127.0.0.1:{PLATFORM['alertmanager_port']}/api/v2/status").rc == 0
