"""Offline cases for the host tasks' custom fact and operations (tasks/facts.py, tasks/ops.py, tasks/dokku.py,
and the platform's: tasks/platform.py, keys.py, tls.py), one JSON file per case:

- tests/facts/HostSnapshot/<case>.json: {"output": [lines the command prints], "fact": {expected subset}}
- tests/operations/<op>/<case>.json: {"args": {...}, "snapshot": {state the op sees, over an empty host},
  "commands": [exact commands; uploads as "upload <dest>"], "noop": true/false, "error": "substring"}
  An argument named "force" (compose_up's callable) is given as true/false.
"""

import copy
import json
import logging
import subprocess
from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest
from pyinfra.api import FileUploadCommand
from pyinfra.context import ctx_host, ctx_state

from tasks import dokku, keys, ops, platform, snapshot, tls
from tasks.facts import HostSnapshot, _empty

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OPERATIONS = {"dokku.ssh_key": dokku.ssh_key, "dokku.global_settings": dokku.global_settings,
              "dokku.package": dokku.package, "dokku.upgrade_package": dokku.upgrade_package,
              "platform.compose_up": platform.compose_up, "keys.ed25519_key": keys.ed25519_key,
              "keys.root_authorized_keys": keys.root_authorized_keys,
              "tls.certificate": tls.certificate,
              **{f"ops.{name}": getattr(ops, name) for name in (
                  "apt_upgrade_once", "packages", "template", "download", "services", "ufw_firewall", "swap_file",
                  "sysctl_live", "identity", "volume_filesystem", "move_onto", "user", "directory", "put",
                  "secret_file", "absent")}}


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
        args = {key: (lambda value=value: value) if key == "force" else value for key, value in case["args"].items()}
        generator = OPERATIONS[path.parent.name]._inner(**args)
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


def test_sha256_fingerprint_matches_openssh():
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdHkUoG9wUMMKKFD8tJB4Q0e6lqlUIUu6YmZuGSPVZp provisioner"
    listed = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", "/dev/stdin"], input=key,
                            capture_output=True, text=True, check=True).stdout
    assert dokku.sha256_fingerprint(key) == listed.split()[1]


def _run(op, snap, fake_host=None, diff=False, **args):
    """Commands of op (as strings) against snap, which answers every host's snapshot."""
    with ctx_host.use(fake_host or FakeHost()), ctx_state.use(SimpleNamespace(cwd=str(ROOT),
                                                                             config=SimpleNamespace(DIFF=diff))):
        return [f"upload {c.dest}" if isinstance(c, FileUploadCommand) else str(c) for c in op._inner(**args)]


def test_secret_file_never_shows_its_content(monkeypatch, caplog):
    """Even with --diff: no diff, no content in the log or on a command line (FakeHost has no get_fact, so
    reading the old content for a diff would fail too)."""
    secret = "STRIPE_SECRET_KEY='sk_live_DO_NOT_LEAK'\n"
    snap = _merge(_empty(), {"files": {"/opt/platform/.env": {"type": "file", "mode": "600", "user": "root",
                                                              "group": "root", "sha1": "old"}}})
    monkeypatch.setattr(snapshot, "read", lambda **_: snap)
    fake_host = FakeHost()
    with caplog.at_level(logging.DEBUG):
        commands = _run(ops.secret_file, snap, fake_host, diff=True, dest="/opt/platform/.env", content=secret)
    assert commands[-1] == "upload /opt/platform/.env"
    shown = " ".join(commands + fake_host.noops) + caplog.text
    assert "DO_NOT_LEAK" not in shown


class PlatformHost(FakeHost):
    name = "platform"
    data = SimpleNamespace(platform_key_path="/opt/platform/dokku-ssh-key", private_ip="10.0.1.1",
                           platform_key_comment="mindroom-testbed-platform", platform_dokku_key_name="platform")


ADMIN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdHkUoG9wUMMKKFD8tJB4Q0e6lqlUIUu6YmZuGSPVZp admin@laptop"
PROVISIONER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQ8B3zyGWmdV8N1Vu8y1pUsS0xR/kbZ5i3JbFp5Tw0q provisioner"


def _root_keys(monkeypatch, groups: list[str], snap: dict, platform_host) -> tuple[list[str], str]:
    """root_authorized_keys' commands on a host in groups, and the content it uploads."""
    monkeypatch.setattr(snapshot, "read", lambda **_: snap)
    target = FakeHost()
    target.groups = groups
    with ctx_host.use(target), ctx_state.use(SimpleNamespace(cwd=str(ROOT), config=SimpleNamespace(DIFF=False))):
        commands = list(keys.root_authorized_keys._inner(admin_keys=[ADMIN_KEY], platform_host=platform_host))
    [upload] = [c for c in commands if isinstance(c, FileUploadCommand)]
    return [str(c) for c in commands if c is not upload], upload.src.getvalue().decode()


def test_root_authorized_keys_on_a_dokku_host_are_the_admin_and_platform_keys_only(monkeypatch):
    """What Hetzner put there at creation (an older bootstrap gave Dokku servers the provisioner key too) and
    any key added by hand go; the platform's key comes from the platform's private IP only."""
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdHkUoG9wUMMKKFD8tJB4Q0e6lqlUIUu6YmZuGSPVZp"
    snap = _merge(_empty(), {"contents": {"/opt/platform/dokku-ssh-key.pub": [f"{key} mindroom-testbed-platform"]},
                             "files": {keys.ROOT_AUTHORIZED_KEYS: {"type": "file", "mode": "600", "user": "root",
                                                                   "group": "root", "sha1": "admin+provisioner"}},
                             "dokku": {"ssh_keys": {}}})
    commands, content = _root_keys(monkeypatch, ["dokku"], snap, PlatformHost())
    assert content == f'{ADMIN_KEY}\nfrom="10.0.1.1" {key} mindroom-testbed-platform\n'
    assert PROVISIONER_KEY.split()[1] not in content
    assert '-eq 2; then rm -f /root/.ssh/authorized_keys.candidate' in commands[1]
    assert commands[2] == "mv -f /root/.ssh/authorized_keys.candidate /root/.ssh/authorized_keys"
    assert commands[3] == f"echo {key!r} | dokku ssh-keys:add platform".replace('"', "'")


def test_root_authorized_keys_on_the_platform_are_the_admin_keys_and_need_no_platform_key(monkeypatch):
    platform_host = PlatformHost()
    platform_host.groups = ["platform"]
    commands, content = _root_keys(monkeypatch, ["platform"], _empty(), platform_host)
    assert content == f"{ADMIN_KEY}\n" and not any("dokku" in command for command in commands)


def test_root_authorized_keys_on_a_dokku_host_fail_without_the_platform_key(monkeypatch):
    with pytest.raises(Exception, match="platform key step must run first"):
        _root_keys(monkeypatch, ["dokku"], _empty(), PlatformHost())


def test_the_candidate_is_live_only_when_every_line_parses_as_a_key(monkeypatch, tmp_path):
    """The check of the candidate file (ssh-keygen -l lists as many keys as it has lines) run for real."""
    platform_host = PlatformHost()
    platform_host.groups = ["platform"]
    check = _root_keys(monkeypatch, ["platform"], _empty(), platform_host)[0][1]  # one admin key: one line
    for content, passes in ((f"{ADMIN_KEY}\n", True), ("not a key\n", False), (f"{ADMIN_KEY[:40]}\n", False)):
        candidate = tmp_path / "authorized_keys.candidate"
        candidate.write_text(content)
        done = subprocess.run(["sh", "-c", check.replace(keys.ROOT_AUTHORIZED_KEYS + ".candidate", str(candidate))],
                              capture_output=True)
        assert (done.returncode == 0) == passes, content
        assert candidate.exists() == passes, "a failed candidate is removed"


def test_known_hosts_lists_each_dokku_host_key_by_private_ip(monkeypatch):
    snap = _merge(_empty(), {"contents": {keys.HOST_KEY: ["ssh-ed25519 AAAAhost root@dokku"]}})
    monkeypatch.setattr(snapshot, "read", lambda **_: snap)
    uploads = []
    monkeypatch.setattr(ops, "write", lambda dest, content, *args, **kwargs: uploads.append((dest, content)) or iter(()))
    dokku_hosts = [SimpleNamespace(name=f"dokku-{n}", data=SimpleNamespace(private_ip=f"10.0.1.{n}")) for n in (2, 3)]
    _run(keys.known_hosts, snap, path="/opt/platform/dokku-known-hosts", dokku_hosts=dokku_hosts)
    [(dest, content)] = uploads
    lines = [line for line in content.decode().splitlines() if line and not line.startswith("#")]
    assert lines == ["10.0.1.2 ssh-ed25519 AAAAhost root@dokku", "10.0.1.3 ssh-ed25519 AAAAhost root@dokku"]


def test_missing_certificate_runs_certbot_once(monkeypatch):
    snap = _empty()
    monkeypatch.setattr(snapshot, "read", lambda **_: snap)
    names = ["mindroom.test", "app.mindroom.test"]
    with ctx_host.use(FakeHost()), ctx_state.use(SimpleNamespace(cwd=str(ROOT), config=SimpleNamespace(DIFF=False))):
        [command] = list(tls.certificate._inner(domain="mindroom.test", names=names, webroot="/var/www/letsencrypt",
                                                ca_bundle="/etc/letsencrypt/acme-ca.pem"))
    certbot, obtained_for = command.args
    assert str(certbot) == ("env REQUESTS_CA_BUNDLE=/etc/letsencrypt/acme-ca.pem certbot certonly --cert-name "
                            "mindroom.test --expand --webroot -w /var/www/letsencrypt -d mindroom.test -d app.mindroom.test")
    assert obtained_for == names


def test_fact_script_reads_contents_certificates_and_directories(tmp_path):
    """The real script in a local shell: the arguments after Dokku's (contents, certs, compose) reach it."""
    pub = tmp_path / "key.pub"
    pub.write_text("ssh-ed25519 AAAAkey platform\n")
    cert = tmp_path / "fullchain.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=mindroom.test",
                    "-addext", "subjectAltName=DNS:mindroom.test,DNS:app.mindroom.test"],
                   check=True, capture_output=True)
    command = str(HostSnapshot().command(files=[str(tmp_path), str(pub)], contents=[str(pub)], certs=[str(cert)],
                                         compose="no-such-project"))
    output = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    fact = HostSnapshot().process(output.splitlines())
    assert fact["files"][str(tmp_path)]["type"] == "dir"
    assert fact["contents"] == {str(pub): ["ssh-ed25519 AAAAkey platform"]}
    assert fact["certs"][str(cert)]["names"] == ["mindroom.test", "app.mindroom.test"]
    assert fact["compose"] == {}
    assert fact["files"][str(pub)]["sha1"] == "fe057b3500af1a56532eea985170504a5dec5dce"


def test_dokku_deploy_sudoers_drop_in_allows_dokku_and_nothing_else():
    """No `!ALL` line either: `sudo -l -U dokku-deploy` must list the one rule (tests/hosts/test_dokku.py)."""
    template = jinja2.Template((ROOT / "templates/dokku/dokku-deploy.j2").read_text())
    rendered = template.render(user_name="dokku-deploy", dokku=dokku.DOKKU)
    rules = [line for line in rendered.splitlines() if line.strip() and not line.startswith("#")]
    assert rules == ["dokku-deploy ALL=(root) NOPASSWD: /usr/bin/dokku"]


def test_the_deploy_names_a_server_waiting_for_the_upgrade(monkeypatch):
    """Another Dokku version and a plugin finished at another tag: no command, one line for the end of the run."""
    plugin = {"enabled": True, "committish": "1.42.0", "finished": "1.42.0"}
    snap = _merge(_empty(), {"packages": {"dokku": "0.38.27"}, "held": ["dokku"],
                             "dokku": {"vhosts": ["mindroom.chat"], "plugins": {"redis": plugin}, "properties": {},
                                       "ssh_keys": {}, "autorenew": True}})
    monkeypatch.setattr(snapshot, "read", lambda **_: snap)
    monkeypatch.setattr(dokku, "_left", {})
    with ctx_host.use(FakeHost()), ctx_state.use(SimpleNamespace(cwd=str(ROOT), config=SimpleNamespace(DIFF=False))):
        assert list(dokku.package._inner(version="0.38.28", extra=[])) == []
        assert list(dokku.global_settings._inner(domain="mindroom.chat", properties={}, plugins={
            "redis": ("https://github.com/dokku/dokku-redis.git", "1.43.0")})) == []
    assert dokku._upgrade_lines() == [
        "DOKKU UPGRADE PENDING on case-host: Dokku 0.38.27 runs, 0.38.28 is configured, plugin redis 1.42.0 runs, "
        "1.43.0 is configured; the deploy left it alone: run `python maintain.py upgrade` (one server at a time, its "
        "apps stopped meanwhile)"]
