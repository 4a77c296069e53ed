"""The fleet's status for status.py: the facts it reads (one round trip per host) and the table's rows.

A row is (what, where, state, detail); state "FAIL" makes status.py exit non-zero, "--" is shown only.
"""

import json
import shlex
import time
from datetime import datetime, timezone

from pyinfra import host
from pyinfra.api import FactBase

from tasks.facts import Certificate
from tasks.tls import certificate_path


class PlatformStatus(FactBase):
    """Lines "service|container state|health|port HTTP status|/health body" for every service."""

    def command(self, project, services):
        checks = []
        for name, port, health in services:
            container = f"{project}-{name}-1"
            health_cmd = (f"curl -s -m 5 http://127.0.0.1:{port}{health} | head -c 40 | tr -d '\\n'" if health
                          else "echo -")
            checks.append(
                f"printf '%s|%s|%s|%s|%s\\n' {shlex.quote(name)} "
                f"\"$(docker inspect -f '{{{{.State.Status}}}}' {container} 2>/dev/null || echo missing)\" "
                f"\"$(docker inspect -f '{{{{if .State.Health}}}}{{{{.State.Health.Status}}}}{{{{else}}}}-{{{{end}}}}' "
                f"{container} 2>/dev/null || echo -)\" "
                f"\"$(curl -s -m 5 -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port}/ || true)\" "
                f"\"$({health_cmd} || true)\""
            )
        return "; ".join(checks)

    def process(self, output):
        return [line.split("|") for line in output]


class HostHealth(FactBase):
    """{"uptime": s, "load": [1, 5, 15], "cpus": n, "memory_percent": %, "disks": {mount: %}, "reboot": bool}."""

    def command(self, mounts):
        return ("echo uptime=$(cut -d' ' -f1 /proc/uptime); echo load=$(cut -d' ' -f1-3 /proc/loadavg); "
                "echo cpus=$(nproc); awk '/^MemTotal:/ {t=$2} /^MemAvailable:/ {a=$2} "
                "END {printf \"memory=%.0f\\n\", 100 * (1 - a / t)}' /proc/meminfo; "
                f"for m in {' '.join(map(shlex.quote, mounts))}; do mountpoint -q \"$m\" && "
                "df -P \"$m\" | awk -v m=\"$m\" 'NR == 2 {sub(\"%\", \"\", $5); print \"disk=\" m \" \" $5}'; done; "
                "test -f /run/reboot-required && echo reboot=yes; true")

    def process(self, output):
        health = {"disks": {}, "reboot": False}
        for line in output:
            key, _, value = line.partition("=")
            if key == "disk":
                mount, _, percent = value.rpartition(" ")
                health["disks"][mount] = int(percent)
            elif key == "load":
                health["load"] = [float(part) for part in value.split()]
            elif key == "reboot":
                health["reboot"] = True
            elif key in ("uptime", "cpus", "memory"):
                health[{"memory": "memory_percent"}.get(key, key)] = float(value)
        return health


class MonitoringStatus(FactBase):
    """Prometheus' scrape targets, Alertmanager's active alerts and the backup metrics, as the APIs answer."""

    def command(self, prometheus, alertmanager, backup_metrics):
        queries = {"backup_time": backup_metrics["last_success"], "restore_test": backup_metrics["restore_test_success"]}
        lines = [f"printf 'targets='; curl -sf -m 5 'http://{prometheus}/api/v1/targets?state=active' || printf null",
                 f"printf 'alerts='; curl -sf -m 5 'http://{alertmanager}/api/v2/alerts?active=true&silenced=false"
                 "&inhibited=false' || printf null"]
        lines += [f"printf '{key}='; curl -sf -m 5 'http://{prometheus}/api/v1/query?query={query}' || printf null"
                  for key, query in queries.items()]
        return "; echo; ".join(lines) + "; echo"

    def process(self, output):
        return {key: json.loads(value) for key, _, value in (line.partition("=") for line in output) if value}


def _age(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    return f"{days}d {rest // 3600}h" if days else f"{rest // 3600}h {rest % 3600 // 60}m"


def host_rows(name: str, health: dict, limits) -> list[tuple]:
    problems = []
    if health["memory_percent"] > limits.memory_percent:
        problems.append(f"memory over {limits.memory_percent}%")
    problems += [f"{mount} over {limits.disk_percent}%" for mount, percent in health["disks"].items()
                 if percent > limits.disk_percent]
    if health["reboot"]:
        problems.append("reboot required")
    disks = ", ".join(f"{mount} {percent}%" for mount, percent in health["disks"].items())
    detail = (f"up {_age(health['uptime'])}, load {health['load'][0]:.2f}/{int(health['cpus'])} cpus, memory "
              f"{health['memory_percent']:.0f}%, {disks}" + (f"; {', '.join(problems)}" if problems else ""))
    return [("host", name, "FAIL" if problems else "ok", detail)]


def platform_rows(data) -> list[tuple]:
    rows = []
    services = host.get_fact(PlatformStatus, project=data.platform_compose_project,
                             services=[(service.name, service.host_port, service.health_path)
                                       for service in data.platform_services])
    for service, (name, container, health, port_status, health_body) in zip(data.platform_services, services):
        ok = container == "running" and health in ("healthy", "-") and port_status == "200"
        rows.append(("service", name, "ok" if ok else "FAIL",
                     f"{container}, health {health}, :{service.host_port} {port_status or '---'}"
                     + (f", /health {health_body}" if service.health_path else "")))
    certificate = host.get_fact(Certificate, path=certificate_path(data.domain))
    if certificate:
        expires = datetime.strptime(certificate["not_after"], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=timezone.utc)
        days = (expires - datetime.now(timezone.utc)).days
        rows.append(("certificate", data.domain, "ok" if days >= data.monitoring.certificate_days else "FAIL",
                     f"{len(certificate['names'])} names, expires {expires:%Y-%m-%d} (in {days} days)"))
    else:
        rows.append(("certificate", data.domain, "FAIL", "none yet: TLS pending, nginx serves plain HTTP"))
    rows += monitoring_rows(data, host.get_fact(
        MonitoringStatus, prometheus=f"127.0.0.1:{data.prometheus_port}",
        alertmanager=f"127.0.0.1:{data.alertmanager_port}", backup_metrics=data.backup_metrics))
    return rows


def monitoring_rows(data, answers: dict) -> list[tuple]:
    if not answers.get("targets"):
        return [("monitoring", "prometheus", "FAIL", f"no answer on 127.0.0.1:{data.prometheus_port}")]
    targets = answers["targets"]["data"]["activeTargets"]
    down = [target for target in targets if target["health"] != "up"]
    rows = [("targets", target["labels"]["job"], "FAIL", f"{target['labels']['instance']}: {target['lastError']}")
            for target in down]
    rows.append(("targets", "prometheus", "ok" if not down else "FAIL", f"{len(targets) - len(down)}/{len(targets)} up"))
    alerts = answers.get("alerts")
    if alerts is None:
        rows.append(("alerts", "alertmanager", "FAIL", f"no answer on 127.0.0.1:{data.alertmanager_port}"))
    for alert in alerts or []:
        labels = alert["labels"]
        where = labels.get("host") or labels.get("service") or labels.get("name") or labels.get("instance", "")
        rows.append(("alert", labels["alertname"], "FAIL", f"{where}: {alert['annotations'].get('summary', '')}"))
    if alerts == []:
        rows.append(("alerts", "alertmanager", "ok", "none firing"))
    backups = (answers.get("backup_time") or {}).get("data", {}).get("result", [])
    restores = {sample["metric"].get("host"): sample["value"][1]
                for sample in (answers.get("restore_test") or {}).get("data", {}).get("result", [])}
    max_age = data.monitoring.backup_max_age_hours * 3600
    for sample in backups:
        where, age = sample["metric"].get("host", "?"), time.time() - float(sample["value"][1])
        restore = restores.get(where)
        ok = age <= max_age and restore != "0"
        rows.append(("backup", where, "ok" if ok else "FAIL", f"newest {_age(age)} old, restore test "
                     + {"1": "passed", "0": "FAILED"}.get(restore, "not recorded")))
    if not backups:
        rows.append(("backup", "fleet", "--", f"none recorded yet ({data.backup_metrics_file} in each host's textfile "
                                              "directory, see README)"))
    return rows


def print_table(rows: list[tuple]) -> None:
    rows = [("WHAT", "WHERE", "STATE", "DETAIL"), *rows]
    widths = [max(len(str(row[column])) for row in rows) for column in range(3)]
    lines = ["  ".join(str(value).ljust(width) for value, width in zip(row[:3], widths)) + "  " + row[3]
             for row in rows]
    print("\n".join(lines), flush=True)

