"""Monitoring: node_exporter on every host, Prometheus + Alertmanager + blackbox_exporter on the platform host.

- node_exporter (every host) listens on the host's private address only; ufw admits its port from the platform's
  private IP only (tasks/base.py). Its textfile collector reads NODE_EXPORTER_TEXTFILE_DIR, where the backup job
  writes BACKUP_METRICS_FILE and the platform writes its containers' state (mindroom-service-metrics.timer).
- Prometheus, Alertmanager and blackbox_exporter listen on the platform host's loopback only (the operator
  reaches them through an SSH tunnel, README); Alertmanager's cluster port is switched off.
- Each daemon's listen address and flags live in Debian's /etc/default/<package> (ARGS), written before the
  package is installed, so no daemon ever starts listening elsewhere. Configurations are checked by the
  daemon's own tool (promtool, amtool, blackbox --config.check) before they replace the live file; a changed
  configuration reloads, changed flags restart.
- Alertmanager reads the webhook URL and the SMTP password from 0600 files (url_file, smtp_auth_password_file):
  its configuration holds no secret, and the deploy never prints them (ops.secret_file).
"""

from __future__ import annotations

import logging

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import systemd

from tasks import ops, snapshot
from tasks.inventory_hosts import dokku_hosts

logger = logging.getLogger("pyinfra")
NODE_EXPORTER = "prometheus-node-exporter"
SERVER_UNITS = ("prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter")
PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
RULES_DIR = "/etc/prometheus/rules"
ALERTMANAGER_CONFIG = "/etc/prometheus/alertmanager.yml"
BLACKBOX_CONFIG = "/etc/prometheus/blackbox.yml"
PROBE_CA = "/etc/prometheus/probe-ca.pem"
SECRETS_DIR = "/etc/prometheus/alertmanager-secrets"  # prometheus:prometheus 0700, files 0600
WEBHOOK_URL_FILE = f"{SECRETS_DIR}/webhook-url"
SMTP_PASSWORD_FILE = f"{SECRETS_DIR}/smtp-password"
SERVICE_METRICS = "mindroom-service-metrics"
SERVICE_METRICS_SCRIPT = f"/usr/local/sbin/{SERVICE_METRICS}"
SERVICE_METRICS_INTERVAL = "60s"


def _template(name: str, dest: str, mode: str = "644", **data):
    return ops.template(name=f"Render {dest}", src=f"templates/monitoring/{name}", dest=dest, mode=mode, **data)


def _defaults(unit: str, args: list[str]):
    """/etc/default/<unit>: the ARGS Debian's unit passes to the daemon."""
    return _template("default.j2", f"/etc/default/{unit}", unit=unit, args=args)


@deploy("Monitoring: node exporter")
def node_exporter():
    data = host.data
    defaults = _defaults(NODE_EXPORTER, [
        f"--web.listen-address={data.private_ip}:{data.node_exporter_port}",
        f"--collector.textfile.directory={data.node_exporter_textfile_dir}",
    ])
    drop_in = _template("node-exporter-mindroom.conf.j2", f"/etc/systemd/system/{NODE_EXPORTER}.service.d/mindroom.conf")
    ops.on_change(name="Reload systemd for node_exporter's drop-in", changes=[drop_in],
                  operation=systemd.daemon_reload)
    ops.packages(name="Install node_exporter", packages=[NODE_EXPORTER])
    ops.services(name="Run node_exporter", units=[NODE_EXPORTER])
    ops.on_change(name="Restart node_exporter", changes=[defaults, drop_in], operation=systemd.service,
                  service=NODE_EXPORTER, restarted=True)


def scrape_targets(data, name: str, dokku: list) -> list[dict]:
    """Every host's node_exporter at its private address: the platform (`name`, host data `data`) first, then
    the Dokku hosts."""
    members = [(name, data), *((member.name, member.data) for member in dokku)]
    return [{"name": member, "role": member_data.role,
             "address": f"{member_data.private_ip}:{data.node_exporter_port}"} for member, member_data in members]


def probes(data, dokku: list) -> list[dict]:
    """blackbox_exporter's jobs: the platform's names over HTTPS at its public address, each service on
    loopback (/health where it has one), each Dokku server's HTTP endpoint."""
    public = f"https://{data.public_ipv4}/"
    return [
        {"job": "platform-https", "module": "platform_https", "hostname": True,
         "comment": "every platform name over HTTPS (status, certificate and its expiry)",
         "targets": [{"target": public, "labels": {"name": name}} for name in data.platform_hostnames]},
        {"job": "platform-services", "module": "service_http", "hostname": False,
         "comment": "each platform service on its host port",
         "targets": [{"target": f"http://127.0.0.1:{service.host_port}{service.health_path or '/'}",
                      "labels": {"service": service.name}} for service in data.platform_services]},
        {"job": "dokku-http", "module": "dokku_http", "hostname": False,
         "comment": "each Dokku server's nginx at its public address",
         "targets": [{"target": f"{member.data.public_ipv4}:{member.data.http_port}",
                      "labels": {"host": member.name}} for member in dokku]},
    ]


def server_args(data) -> dict[str, list[str]]:
    """Each daemon's flags (Debian's ARGS): loopback listeners, Prometheus' retention bounds."""
    monitoring = data.monitoring
    return {
        "prometheus": [
            f"--config.file={PROMETHEUS_CONFIG}",
            f"--web.listen-address=127.0.0.1:{data.prometheus_port}",
            f"--storage.tsdb.retention.time={monitoring.retention_time}",
            f"--storage.tsdb.retention.size={monitoring.retention_size}",
        ],
        "prometheus-alertmanager": [
            f"--config.file={ALERTMANAGER_CONFIG}",
            f"--web.listen-address=127.0.0.1:{data.alertmanager_port}",
            "--cluster.listen-address=",  # one Alertmanager: no gossip port (0.0.0.0:9094 by default)
        ],
        "prometheus-blackbox-exporter": [
            f"--config.file={BLACKBOX_CONFIG}",
            f"--web.listen-address=127.0.0.1:{data.blackbox_exporter_port}",
        ],
    }


def config_contexts(data, name: str, dokku: list) -> dict[str, dict]:
    """What each configuration template is rendered with (the platform host `name` with host data `data`)."""
    monitoring = data.monitoring
    local = "127.0.0.1"
    return {
        "mindroom-rules.yml.j2": dict(
            monitoring=monitoring, mount_regex="|".join(data.monitored_mount_points),
            probe_failure_for=data.probe_failure_for, restart_limit=data.platform_restart_limit,
            restart_window=data.platform_restart_window, backup_metrics=data.backup_metrics,
            backup_metrics_file=data.backup_metrics_file),
        "prometheus.yml.j2": dict(
            monitoring=monitoring, environment=data.environment, rules_glob=f"{RULES_DIR}/*.yml",
            nodes=scrape_targets(data, name, dokku), probes=probes(data, dokku),
            prometheus=f"{local}:{data.prometheus_port}", alertmanager=f"{local}:{data.alertmanager_port}",
            blackbox=f"{local}:{data.blackbox_exporter_port}"),
        "blackbox.yml.j2": dict(ca_file=PROBE_CA if monitoring.probe_ca_bundle else ""),
        "alertmanager.yml.j2": dict(
            monitoring=monitoring, email_to=monitoring.email_to,
            webhook_url_file=WEBHOOK_URL_FILE if data.alert_secrets["webhook_url"] else "",
            smtp_password_file=SMTP_PASSWORD_FILE if data.alert_secrets["smtp_password"] else ""),
    }


@deploy("Monitoring: Prometheus, Alertmanager, blackbox_exporter")
def server():
    data = host.data
    monitoring = data.monitoring
    contexts = config_contexts(data, host.name, dokku_hosts())
    defaults = {unit: _defaults(unit, args) for unit, args in server_args(data).items()}
    ops.packages(name="Install Prometheus, Alertmanager, blackbox_exporter", packages=list(SERVER_UNITS))

    ops.directory(name=f"Create {RULES_DIR}", path=RULES_DIR)
    rules = _template("mindroom-rules.yml.j2", f"{RULES_DIR}/mindroom.yml", validate="promtool check rules {path}",
                      **contexts["mindroom-rules.yml.j2"])
    prometheus = _template("prometheus.yml.j2", PROMETHEUS_CONFIG, validate="promtool check config {path}",
                           **contexts["prometheus.yml.j2"])
    if monitoring.probe_ca_bundle:
        probe_ca = ops.put(name=f"Upload the probes' CA to {PROBE_CA}", src=monitoring.probe_ca_bundle, dest=PROBE_CA,
                           mode="644")
    else:
        probe_ca = ops.absent(name=f"Remove {PROBE_CA}", path=PROBE_CA)
    blackbox = _template("blackbox.yml.j2", BLACKBOX_CONFIG,
                         validate="prometheus-blackbox-exporter --config.check --config.file={path}",
                         **contexts["blackbox.yml.j2"])
    alertmanager = [*alert_secrets(), _template("alertmanager.yml.j2", ALERTMANAGER_CONFIG,
                                                validate="amtool check-config {path}",
                                                **contexts["alertmanager.yml.j2"])]
    metrics_units = service_metrics()

    ops.services(name="Run Prometheus, Alertmanager, blackbox_exporter", units=list(SERVER_UNITS))
    for unit, changed in (("prometheus", [rules, prometheus]), ("prometheus-alertmanager", alertmanager),
                          ("prometheus-blackbox-exporter", [blackbox, probe_ca])):
        ops.on_change(name=f"Restart {unit} (new flags)", changes=[defaults[unit]], operation=systemd.service,
                      service=unit, restarted=True)
        ops.on_change(name=f"Reload {unit}", changes=changed, operation=systemd.service, service=unit, reloaded=True)
    ops.services(name=f"Run {SERVICE_METRICS}.timer", units=[f"{SERVICE_METRICS}.timer"])
    ops.on_change(name=f"Restart {SERVICE_METRICS}.timer", changes=metrics_units, operation=systemd.service,
                  service=f"{SERVICE_METRICS}.timer", restarted=True)


def alert_secrets() -> list:
    """The webhook URL and the SMTP password in 0600 files of Alertmanager's user; removed when unset."""
    data = host.data
    ops.directory(name=f"Create {SECRETS_DIR}", path=SECRETS_DIR, mode="700", user="prometheus", group="prometheus")
    written = []
    for path, value in ((WEBHOOK_URL_FILE, data.alert_secrets["webhook_url"]),
                        (SMTP_PASSWORD_FILE, data.alert_secrets["smtp_password"])):
        if value:
            written.append(ops.secret_file(name=f"Write {path}", dest=path, content=value, mode="600",
                                           user="prometheus", group="prometheus"))
        else:
            written.append(ops.absent(name=f"Remove {path}", path=path))
    receiver = data.alert_secrets["webhook_url"] or data.monitoring.email_to
    if not receiver and snapshot.once(("no receiver", host.name)):
        logger.warning(f"[{host.name}] monitoring: neither ALERT_WEBHOOK_URL nor ALERT_EMAIL_TO is set; alerts are "
                       "only visible in Alertmanager (SSH tunnel, README)")
    return written


def service_metrics() -> list:
    """The platform containers' state for the textfile collector, every SERVICE_METRICS_INTERVAL."""
    data = host.data
    units = [
        _template(f"{SERVICE_METRICS}.j2", SERVICE_METRICS_SCRIPT, mode="755", project=data.platform_compose_project,
                  textfile_dir=data.node_exporter_textfile_dir),
        _template(f"{SERVICE_METRICS}.service.j2", f"/etc/systemd/system/{SERVICE_METRICS}.service",
                  script=SERVICE_METRICS_SCRIPT),
        _template(f"{SERVICE_METRICS}.timer.j2", f"/etc/systemd/system/{SERVICE_METRICS}.timer",
                  interval=SERVICE_METRICS_INTERVAL),
    ]
    ops.on_change(name=f"Reload systemd for {SERVICE_METRICS}", changes=units[1:], operation=systemd.daemon_reload)
    return units
