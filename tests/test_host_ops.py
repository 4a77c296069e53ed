"""Offline cases for the Dokku-host tasks' custom fact and operations (tasks/facts.py, tasks/ops.py,
tasks/dokku.py), one JSON file per case:

- tests/facts/HostSnapshot/<case>.json: {"output": [lines the command prints], "fact": {expected subset}}
- tests/operations/<op>/<case>.json: {"args": {...}, "snapshot": {state the op sees, over an empty host},
  "commands": [exact commands; uploads as "upload <dest>"], "noop": true/false, "error": "substring"}
"""

import copy
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyinfra.api import FileUploadCommand
from pyinfra.context import ctx_host, ctx_state

from tasks import dokku, ops, snapshot
from tasks.facts import HostSnapshot, _empty

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OPERATIONS = {"dokku.ssh_key": dokku.ssh_key, "dokku.global_settings": dokku.global_settings,
              **{f"ops.{name}": getattr(ops, name) for name in (
                  "apt_upgrade_once", "packages", "template", "download", "services", "ufw_firewall", "swap_file",
                  "sysctl_live", "identity", "volume_filesystem", "move_onto", "user")}}


def _cases(folder):
    return sorted(folder.glob("*/*.json"))


def _merge(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


@pytest.mark.parametrize("path", _cases(HERE / "facts"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fact_case(path):
    case = json.loads(path.read_text())
    fact = HostSnapshot().process(case["output"])
    for key, expected in case["fact"].items():
        assert fact[key] == expected, key


def test_fact_command_quotes_its_arguments():
    command = str(HostSnapshot().command(files=["/etc/a b"], device="/dev/x;rm"))
    assert "'/etc/a b'" in command and "'/dev/x;rm'" in command


class FakeHost:
    name = "case-host"
    data = SimpleNamespace()

    def __init__(self):
        self.noops = []

    def noop(self, message):
        self.noops.append(message)

    def log(self, *_args, **_kwargs):
        pass

    def get_temp_filename(self, key=None, **_):
        return f"/tmp/pyinfra-{key}"


@pytest.mark.parametrize("path", _cases(HERE / "operations"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_operation_case(path, monkeypatch):
    case = json.loads(path.read_text())
    snap = _merge(_empty(), copy.deepcopy(case.get("snapshot", {})))
    monkeypatch.setattr(snapshot, "read", lambda **_: snap)
    fake_host = FakeHost()
    fake_state = SimpleNamespace(cwd=str(ROOT), config=SimpleNamespace(DIFF=False))
    with ctx_host.use(fake_host), ctx_state.use(fake_state):
        generator = OPERATIONS[path.parent.name]._inner(**case["args"])
        if "error" in case:
            with pytest.raises(Exception, match=case["error"]):
                list(generator)
            return
        commands = [f"upload {c.dest}" if isinstance(c, FileUploadCommand) else str(c) for c in generator]
    assert commands == case.get("commands", [])
    assert bool(fake_host.noops) == case.get("noop", not commands)


def test_blank_volume_is_formatted_with_the_uuid_written_to_fstab(monkeypatch):
    """The UUID is chosen by the deploy (mkfs.ext4 -U), so the fstab line is known before mkfs runs."""
    snap = _merge(_empty(), {"device": {"PRESENT": "1"}})
    monkeypatch.setattr(snapshot, "read", lambda **_: snap)
    with ctx_host.use(FakeHost()), ctx_state.use(SimpleNamespace(cwd=str(ROOT), config=SimpleNamespace(DIFF=False))):
        commands = [str(c) for c in ops.volume_filesystem._inner(device="/dev/sdb", mount_point="/mnt/dokku-data")]
    mkfs, fstab, mount = commands
    fs_uuid = mkfs.split()[3]
    assert mkfs == f"mkfs.ext4 -q -U {fs_uuid} /dev/sdb"
    assert f"'UUID={fs_uuid} /mnt/dokku-data ext4 defaults,nofail 0 2'" in fstab
    assert mount == "mkdir -p /mnt/dokku-data && mount /mnt/dokku-data"


def test_fingerprint_matches_openssh():
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdHkUoG9wUMMKKFD8tJB4Q0e6lqlUIUu6YmZuGSPVZp provisioner"
    listed = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", "/dev/stdin"], input=key,
                            capture_output=True, text=True, check=True).stdout
    assert dokku.fingerprint(key) == listed.split()[1]
