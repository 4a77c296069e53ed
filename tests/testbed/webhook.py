"""A webhook receiver for Alertmanager on the bridge address: it records every notification it accepts.

Strict like a real receiver that parses Alertmanager's payload: only POST to the secret path, JSON only, and
the message shape of Alertmanager's webhook notifier (WEBHOOK_FACTS, checked in tests/test_monitoring_standin.py);
anything else is answered 400/404 and not recorded. Accepted messages go to LAB/webhook/received.jsonl.

It also counts the backups' health check pings (GET on /ping/<the same secret>, LAB/webhook/pings.txt).
Its settings: ALERT_WEBHOOK_URL (with a random path, a secret like a Slack hook's), BACKUP_HEALTHCHECK_URL and the
testbed's short alert timings (a host is down after ALERT_HOST_DOWN_FOR, groups flush after ALERT_GROUP_WAIT/INTERVAL).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.testbed import procs

PORT = 8099
# The message Alertmanager's webhook notifier posts (prometheus/alertmanager v0.28.1, notify/webhook/webhook.go:
# Message = template.Data + version "4", groupKey, truncatedAlerts; template/template.go: Data and Alert).
WEBHOOK_FACTS = {
    "version": "4",
    "message_keys": {"version", "groupKey", "truncatedAlerts", "receiver", "status", "alerts", "groupLabels",
                     "commonLabels", "commonAnnotations", "externalURL"},
    "alert_keys": {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"},
    "statuses": {"firing", "resolved"},
    "content_type": "application/json",
}
# The testbed's alert timings: the gate waits for a host-down alert and its resolution within a bounded time.
TIMINGS = {"MONITORING_SCRAPE_INTERVAL": "5s", "ALERT_HOST_DOWN_FOR": "10s", "ALERT_GROUP_WAIT": "5s",
           "ALERT_GROUP_INTERVAL": "10s"}


def _dir(lab: Path) -> Path:
    return lab / "webhook"


def problem(message) -> str | None:
    """Why a decoded body is not an Alertmanager webhook message, or None."""
    if not isinstance(message, dict):
        return "not a JSON object"
    missing = WEBHOOK_FACTS["message_keys"] - set(message)
    if missing:
        return f"missing keys {sorted(missing)}"
    if message["version"] != WEBHOOK_FACTS["version"]:
        return f"version {message['version']!r}, expected {WEBHOOK_FACTS['version']!r}"
    if message["status"] not in WEBHOOK_FACTS["statuses"] or not isinstance(message["alerts"], list):
        return "bad status or alerts"
    for alert in message["alerts"]:
        if not isinstance(alert, dict) or WEBHOOK_FACTS["alert_keys"] - set(alert):
            return f"an alert lacks keys {sorted(WEBHOOK_FACTS['alert_keys'] - set(alert or {}))}"
        if alert["status"] not in WEBHOOK_FACTS["statuses"] or not isinstance(alert["labels"], dict):
            return "an alert has a bad status or labels"
    return None


def handler(path: str, record: Path):
    class Receiver(BaseHTTPRequestHandler):
        def _answer(self, code: int, text: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(text.encode())

        def do_POST(self):  # noqa: N802 - http.server's name
            if self.path != path:
                return self._answer(404, "unknown path\n")
            if self.headers.get("Content-Type", "").split(";")[0].strip() != WEBHOOK_FACTS["content_type"]:
                return self._answer(400, "expected application/json\n")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                message = json.loads(body)
            except ValueError:
                return self._answer(400, "body is not JSON\n")
            why = problem(message)
            if why:
                return self._answer(400, f"not an Alertmanager message: {why}\n")
            with open(record, "a") as handle:
                handle.write(json.dumps(message) + "\n")
            self._answer(200, "ok\n")

        def do_GET(self):  # noqa: N802 - the backups' health check ping (healthchecks.io takes GET and POST)
            if self.path != ping_path(path):
                return self._answer(405, "POST only\n")
            with open(pings_file(record), "a") as handle:
                handle.write(f"{time.time()}\n")
            self._answer(200, "OK")

        def log_message(self, *_args):  # the path is the secret: never logged
            pass

    return Receiver


def ping_path(alerts_path: str) -> str:
    """The health check URL's path (BACKUP_HEALTHCHECK_URL): as secret as the alerts' path."""
    return alerts_path.replace("/alerts/", "/ping/", 1)


def pings_file(record: Path) -> Path:
    return record.with_name("pings.txt")


def pings(lab: Path) -> int:
    """How many health check pings the receiver got."""
    path = pings_file(received_file(lab))
    return len(path.read_text().splitlines()) if path.is_file() else 0


def start(lab: Path, bridge_ip: str) -> dict[str, str]:
    directory = _dir(lab)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    token_file = directory / "token"
    if not token_file.is_file():
        token_file.touch(mode=0o600)
        token_file.write_text(secrets.token_hex(16))
    path = f"/alerts/{token_file.read_text()}"
    procs.spawn([sys.executable, "-m", "tests.testbed.webhook", "--listen", bridge_ip, "--port", str(PORT),
                 "--token-file", str(token_file), "--record", str(received_file(lab))],
                directory / "webhook.pid", directory / "webhook.log", cwd=Path(__file__).resolve().parents[2])
    procs.wait_for(lambda: procs.port_open(bridge_ip, PORT), 10, f"the webhook receiver on {bridge_ip}:{PORT}")
    base = f"http://{bridge_ip}:{PORT}"
    return {"ALERT_WEBHOOK_URL": f"{base}{path}", "BACKUP_HEALTHCHECK_URL": f"{base}{ping_path(path)}", **TIMINGS}


def received_file(lab: Path) -> Path:
    return _dir(lab) / "received.jsonl"


def received(lab: Path) -> list[dict]:
    """Every message the receiver accepted, oldest first."""
    path = received_file(lab)
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []


def stop(lab: Path) -> None:
    procs.stop(_dir(lab) / "webhook.pid")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.testbed.webhook")
    parser.add_argument("--listen", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args(argv)
    path = f"/alerts/{args.token_file.read_text().strip()}"
    ThreadingHTTPServer((args.listen, args.port), handler(path, args.record)).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
