"""Test plumbing: run bootstrap.py in-process against a FakeCloud, with throwaway keys and settings."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import hcloud

import bootstrap

from .hooks import CloudHooks
from .server import MUTATING, FakeCloud


def write_public_key(path: Path, comment: str = "test@example") -> str:
    """A well-formed ed25519 public key (random blob; nothing ever needs its private half)."""
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + os.urandom(32)
    text = f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"
    path.write_text(text + "\n")
    return text


class RecordingHooks(CloudHooks):
    """Records every hook call with the status its action had at that moment."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.fake: FakeCloud | None = None
        self._lock = threading.Lock()

    def _record(self, name: str, *args):
        with self.fake.cloud.lock:
            running = [a["command"] for a in self.fake.cloud.state["actions"].values() if a["status"] == "running"]
        with self._lock:
            self.calls.append((name, args, tuple(running)))

    def named(self, name: str) -> list[tuple]:
        return [call for call in self.calls if call[0] == name]

    def server_created(self, server_id, name, labels, public_keys):
        self._record("server_created", server_id, name, labels, public_keys)
        return None

    def network_attached(self, server_id, ip):
        self._record("network_attached", server_id, ip)

    def volume_attached(self, volume_id, server_id):
        self._record("volume_attached", volume_id, server_id)

    def server_powered(self, server_id, on):
        self._record("server_powered", server_id, on)

    def dns_rrsets_changed(self, zone, rrsets):
        self._record("dns_rrsets_changed", zone, rrsets)


def lock_ids(requests: list) -> set[str]:
    """Ids of the environment's locks (cloud/lock.py: placement groups with a `lock` label) created in requests."""
    return {str(entry["answer"]["placement_group"]["id"]) for entry in requests
            if entry["method"] == "POST" and entry["path"] == "/placement_groups" and '"lock":' in entry["body"]
            and entry["status"] == 201}


def is_lock_request(entry: dict, ids: set[str]) -> bool:
    """Taking (or trying to take) or releasing a lock."""
    if entry["path"] == "/placement_groups":
        return entry["method"] == "POST" and '"lock":' in entry["body"]
    kind, _, resource_id = entry["path"].rpartition("/")
    return entry["method"] == "DELETE" and kind == "/placement_groups" and resource_id in ids


class FakeSSH:
    """bootstrap's SSH probe against the fake (no packet leaves the machine): an address answers while the
    fake's server with that public IPv4 is running, except for its next `unanswered[address]` probes (a
    booting sshd; math.inf: never). With RecordingHooks, each probe is recorded among the hook calls as
    ("ssh_probe", (address, answered), running actions)."""

    def __init__(self, harness: "Harness"):
        self.harness = harness
        self.unanswered: dict[str, float] = {}

    def __call__(self, address: str) -> bool:
        fake = self.harness.fake
        with fake.cloud.lock:
            servers = fake.cloud.state["servers"].values()
            status = next((s["status"] for s in servers if (s["public_net"]["ipv4"] or {}).get("ip") == address), None)
        answered = status == "running" and self.unanswered.get(address, 0) <= 0
        if status == "running" and not answered:
            self.unanswered[address] -= 1
        if isinstance(fake.cloud.hooks, RecordingHooks):
            fake.cloud.hooks._record("ssh_probe", address, answered)
        return answered


@dataclass
class Result:
    code: int
    out: str
    err: str
    requests: list
    mutations: list
    changes: list  # the mutations other than taking and releasing the lock


class Harness:
    def __init__(self, tmp_path: Path, fake: FakeCloud, **settings: str):
        self.tmp_path, self.fake = tmp_path, fake
        (tmp_path / "empty.env").write_text("")
        self.admin_key = write_public_key(tmp_path / "admin.pub", "admin@laptop")
        self.provisioner_key = write_public_key(tmp_path / "provisioner.pub", "provisioner")
        self.env = {
            "ENV_FILE": str(tmp_path / "empty.env"), "HCLOUD_TOKEN": "test-token-not-a-secret",
            "HCLOUD_ENDPOINT": fake.url, "ENVIRONMENT": "production", "DOMAIN": "mindroom.test",
            "ADMIN_IPS": "203.0.113.7/32", "SSH_PUBLIC_KEY_PATH": str(tmp_path / "admin.pub"),
            "DOKKU_PROVISIONER_KEY_PATH": str(tmp_path / "provisioner.pub"),
            "OUTPUTS_FILE": str(tmp_path / "outputs.json"),
            "HCLOUD_POLL_INTERVAL": "0.005", "HCLOUD_RETRY_BACKOFF": "0.005", "HCLOUD_TIMEOUT": "5",
            **settings,
        }
        self.ssh = FakeSSH(self)

    def run(self, *argv: str, stdin: str = "", **overrides: str) -> Result:
        env = {key: value for key, value in {**self.env, **overrides}.items() if value is not None}
        out, err = io.StringIO(), io.StringIO()
        start = len(self.fake.requests)
        with contextlib.redirect_stderr(err), mock.patch("sys.stdin", io.StringIO(stdin)):
            code = bootstrap.main(list(argv), env, out, ssh_probe=self.ssh)
        token = env.get("HCLOUD_TOKEN", "")
        requests = [entry for entry in self.fake.requests[start:] if entry["token"] == token]  # this run's own
        mutations = [r for r in requests if r["method"] in MUTATING]
        ids = lock_ids(self.fake.requests)
        return Result(code, out.getvalue(), err.getvalue(), requests, mutations,
                      [r for r in mutations if not is_lock_request(r, ids)])

    def client(self) -> hcloud.Client:
        return hcloud.Client(token="operator", api_endpoint=self.fake.url, poll_interval=0.005)

    def names(self, kind: str) -> list[str]:
        return sorted(item["name"] for item in self.fake.resources(kind))

    def by_name(self, kind: str, name: str) -> dict:
        return next(item for item in self.fake.resources(kind) if item["name"] == name)
