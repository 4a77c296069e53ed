"""status.py's pieces (tasks/fleet.py) offline: what its facts parse and which rows turn FAIL (the table's exit status)."""

import subprocess
import time
from types import SimpleNamespace

from settings import BACKUP_METRICS, BACKUP_METRICS_FILE
from tasks import fleet


LIMITS = SimpleNamespace(disk_percent=85, memory_percent=90, certificate_days=14, backup_max_age_hours=26)
DATA = SimpleNamespace(monitoring=LIMITS, prometheus_port=9090, alertmanager_port=9093,
                       backup_metrics=BACKUP_METRICS, backup_metrics_file=BACKUP_METRICS_FILE)


def test_host_health_command_runs_here(tmp_path):
    command = fleet.HostHealth().command(mounts=["/", str(tmp_path / "not-a-mount")])
    output = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout.splitlines()
    health = fleet.HostHealth().process(output)
    assert set(health["disks"]) == {"/"} and 0 <= health["disks"]["/"] <= 100
    assert len(health["load"]) == 3 and health["cpus"] >= 1 and 0 <= health["memory_percent"] <= 100


def test_host_rows_fail_on_disk_memory_and_reboot():
    healthy = {"uptime": 7200, "load": [0.1, 0.2, 0.3], "cpus": 2, "memory_percent": 40, "disks": {"/": 30},
               "reboot": False}
    [(_, _, state, detail)] = fleet.host_rows("dokku-1", healthy, LIMITS)
    assert state == "ok" and "/ 30%" in detail
    for change, problem in (({"disks": {"/mnt/dokku-data": 86}}, "/mnt/dokku-data over 85%"),
                            ({"memory_percent": 95}, "memory over 90%"), ({"reboot": True}, "reboot required")):
        [(_, _, state, detail)] = fleet.host_rows("dokku-1", {**healthy, **change}, LIMITS)
        assert state == "FAIL" and problem in detail


def _answers(targets=("up", "up"), alerts=(), backup_age=None, restore="1"):
    def vector(samples):
        return {"data": {"result": samples}}
    backups = [] if backup_age is None else [{"metric": {"host": "dokku-1"}, "value": [0, str(time.time() - backup_age)]}]
    return {
        "targets": {"data": {"activeTargets": [
            {"health": health, "labels": {"job": "node", "instance": f"10.0.1.{n}:9100"}, "lastError": "refused"}
            for n, health in enumerate(targets)]}},
        "alerts": [{"labels": {"alertname": name, "host": "dokku-1"}, "annotations": {"summary": "down"}}
                   for name in alerts],
        "backup_time": vector(backups),
        "restore_test": vector([{"metric": {"host": "dokku-1"}, "value": [0, restore]}] if backups else []),
    }


def _states(rows):
    return [(what, where, state) for what, where, state, _ in rows]


def test_monitoring_rows():
    assert _states(fleet.monitoring_rows(DATA, _answers())) == [
        ("targets", "prometheus", "ok"), ("alerts", "alertmanager", "ok"), ("backup", "fleet", "--")]
    rows = _states(fleet.monitoring_rows(DATA, _answers(targets=("up", "down"), alerts=["HostDown"])))
    assert ("targets", "node", "FAIL") in rows and ("alert", "HostDown", "FAIL") in rows
    assert ("backup", "dokku-1", "ok") in _states(fleet.monitoring_rows(DATA, _answers(backup_age=3600)))
    assert ("backup", "dokku-1", "FAIL") in _states(fleet.monitoring_rows(DATA, _answers(backup_age=27 * 3600)))
    assert ("backup", "dokku-1", "FAIL") in _states(fleet.monitoring_rows(DATA, _answers(backup_age=60, restore="0")))
    assert _states(fleet.monitoring_rows(DATA, {"targets": None})) == [("monitoring", "prometheus", "FAIL")]
