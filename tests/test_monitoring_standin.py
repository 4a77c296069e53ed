"""The testbed's webhook receiver (tests/testbed/webhook.py) is as strict as a receiver that parses
Alertmanager's messages: what it accepts and what it refuses, against the facts it records from upstream."""

import json
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

import pytest

from tests.testbed import webhook

# A message as Alertmanager v0.28.1 posts it (notify/webhook/webhook.go Message over template/template.go Data).
MESSAGE = {
    "version": "4", "groupKey": '{}:{alertname="HostDown"}', "truncatedAlerts": 0, "status": "firing",
    "receiver": "operator", "groupLabels": {"alertname": "HostDown"}, "commonLabels": {"alertname": "HostDown"},
    "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093",
    "alerts": [{"status": "firing", "labels": {"alertname": "HostDown", "host": "dokku-2"}, "annotations": {},
                "startsAt": "2026-12-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": "0123456789abcdef"}],
}


@pytest.fixture
def receiver(tmp_path):
    record = tmp_path / "received.jsonl"
    server = ThreadingHTTPServer(("127.0.0.1", 0), webhook.handler("/alerts/secret", record))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", record
    server.shutdown()
    server.server_close()


def _post(url, body, content_type="application/json"):
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_message_shaped_like_alertmanagers_is_recorded(receiver):
    base, record = receiver
    assert _post(f"{base}/alerts/secret", json.dumps(MESSAGE).encode()) == 200
    assert [json.loads(line) for line in record.read_text().splitlines()] == [MESSAGE]


@pytest.mark.parametrize("path, body, content_type, status", [
    ("/alerts/other", json.dumps(MESSAGE), "application/json", 404),
    ("/alerts/secret", json.dumps(MESSAGE), "text/plain", 400),
    ("/alerts/secret", "{not json", "application/json", 400),
    ("/alerts/secret", json.dumps({**MESSAGE, "version": "3"}), "application/json", 400),
    ("/alerts/secret", json.dumps({key: value for key, value in MESSAGE.items() if key != "groupKey"}),
     "application/json", 400),
    ("/alerts/secret", json.dumps({**MESSAGE, "alerts": [{"status": "firing", "labels": {}}]}), "application/json", 400),
])
def test_anything_else_is_refused_and_not_recorded(receiver, path, body, content_type, status):
    base, record = receiver
    assert _post(f"{base}{path}", body.encode(), content_type) == status
    assert not record.exists()


def test_facts_match_the_upstream_message():
    assert webhook.WEBHOOK_FACTS["message_keys"] == set(MESSAGE)
    assert webhook.WEBHOOK_FACTS["alert_keys"] == set(MESSAGE["alerts"][0])


def test_the_health_check_ping_is_counted_only_on_its_secret_path(receiver):
    url, record = receiver
    with urllib.request.urlopen(f"{url}/ping/secret", timeout=5) as response:
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/ping/guess", timeout=5)
    assert refused.value.code == 405
    assert webhook.pings_file(record).read_text().count("\n") == 1
