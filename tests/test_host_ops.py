"""Offline cases for the host tasks' custom fact and operations (tasks/facts.py, tasks/ops.py, tasks/dokku.py,
and the platform's: tasks/platform.py, keys.py, tls.py), one JSON file per case:

- tests/facts/HostSnapshot/<case>.json: {"output": [lines the command prints], "fact": {expected subset}}
- tests/operations/<op>/<case>.json: {"args": {...}, "snapshot": {what the snapshot answers}, "facts": {pyinfra
  facts the delegated operation reads, e.g. {"files.File": {"path=/etc/x": null}}}, "commands": [exact commands;
  uploads as "upload <dest>"], "noop": true/false, "error": "substring"}
  The snapshot answers the operation's own questions (its `asks`) and nothing else, exactly as given: no section
  is filled in by default, so a read the case does not answer (an asked file left out: null says "missing"),
  a question the operation did not ask, or a pyinfra fact the case does not list is an error, as pyinfra's own
  operation tests fail on a missing test fact. A no-op case lists no facts: a no-op never asks pyinfra anything.
  An argument named "changes" (a list of true/false) stands for operations that did or did not change.
"""

import hashlib
import json
import logging
import subprocess
from pathlib import Path
from types import SimpleNamespace

import gevent
import jinja2
import pytest
from pyinfra import host
from pyinfra.api import FileUploadCommand, OperationError
from pyinfra.context import ctx_host, ctx_state

from tasks import dokku, keys, ops, platform, reboot, snapshot, tls
from tasks.facts import HostSnapshot

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OPERATIONS = {"dokku.ssh_key": dokku.ssh_key, "dokku.global_settings": dokku.global_settings,
              "dokku.package": dokku.package, "dokku.upgrade_package": dokku.upgrade_package,
              "platform.compose_up": platform.compose_up, "keys.ed25519_key": keys.ed25519_key,
              "keys.root_authorized_keys": keys.root_authorized_keys,
              "tls.certificate": tls.certificate, "reboot.note_reboot_required": reboot._note_reboot_required,
              **{f"ops.{name}": getattr(ops, name) for name in (
                  "apt_upgrade_once", "packages", "template", "download", "services", "ufw_firewall", "swap_file",
                  "sysctl_live", "identity", "volume_filesystem", "move_onto", "user", "directory", "put",
                  "secret_file", "absent", "on_change")}}


def _cases(folder):
    return sorted(folder.glob("*/*.json"))


@pytest.mark.parametrize("path", _cases(HERE / "facts"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fact_case(path):
    case = json.loads(path.read_text())
    fact = HostSnapshot().process(case["output"])
    for key, expected in case["fact"].items():
        assert fact[key] == expected, key


def test_fact_command_quotes_its_arguments():
    command = str(HostSnapshot().command(files=["/etc/a b"], device="/dev/x;rm"))
    assert "'/etc/a b'" in command and "'/dev/x;rm'" in command


class MissingTestFact(AssertionError):
    pass


class FakeHost:
    """A host for operation cases: pyinfra facts come from the case, a fact it does not list is an error."""
    name = "case-host"
    data = SimpleNamespace()
    groups = []
    current_op_global_arguments = None

    def __init__(self, facts=None):
        self.noops = []
        self.facts = facts or {}

    def noop(self, message):
        self.noops.append(message)

    def log(self, *_args, **_kwargs):
        pass

    def get_temp_filename(self, key=None, **_):
        return f"/tmp/pyinfra-{key}"

    def get_fact(self, cls, *args, **kwargs):
        name = f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"
        arguments = ",".join([*map(str, args), *(f"{key}={value}" for key, value in sorted(kwargs.items()))])
        if name not in self.facts or arguments not in self.facts[name]:
            raise MissingTestFact(f"missing test fact {name}({arguments})")
        return self.facts[name][arguments]


def fake_state(diff=False):
    return SimpleNamespace(cwd=str(ROOT), config=SimpleNamespace(DIFF=diff), inventory=[])


def _command(command) -> str:
    return f"upload {command.dest}" if isinstance(command, FileUploadCommand) else str(command)


def run_case(op, args, answers, fake_host, diff=False):
    """op's commands for args, its questions answered by `answers` (the case's snapshot, as it is)."""
    with ctx_host.use(fake_host), ctx_state.use(fake_state(diff)):
        snapshot.ask(**op.asks(**args))
        snapshot.answer(answers)
        return [_command(command) for command in op._inner(**args)]


class Changed:
    def __init__(self, changed):
        self.changed = changed

    def is_complete(self):
        return True

    def did_change(self):
        return self.changed


@pytest.mark.parametrize("path", _cases(HERE / "operations"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_operation_case(path):
    case = json.loads(path.read_text())
    fake_host = FakeHost(case.get("facts"))
    op = OPERATIONS[path.parent.name]
    args = {key: [Changed(flag) for flag in value] if key == "changes" else value
            for key, value in case["args"].items()}
    if "operation" in args:  # on_change's pyinfra operation, by name
        module, name = args["operation"].split(".")
        args["operation"] = getattr(getattr(ops, module), name)
    if "error" in case:
        with pytest.raises(Exception, match=case["error"]):
            run_case(op, args, case.get("snapshot", {}), fake_host)
        return
    commands = run_case(op, args, case.get("snapshot", {}), fake_host)
    assert commands == case.get("commands", [])
    assert bool(fake_host.noops) or commands, "an operation with nothing to do says so (host.noop)"
    assert case.get("noop", False) == (not commands)


def test_every_operation_has_a_no_op_case():
    noop = {path.parent.name for path in _cases(HERE / "operations") if json.loads(path.read_text()).get("noop")}
    assert set(OPERATIONS) - noop == set()


def test_reading_what_was_not_asked_is_an_error():
    """The snapshot answers only what was asked: a file nobody asked about is no "missing" file."""
    with ctx_host.use(FakeHost()), ctx_state.use(fake_state()):
        snapshot.ask(files=["/etc/asked"])
        snap = snapshot.answer({"files": {"/etc/asked": None}})
        assert snap["files"]["/etc/asked"] is None
        with pytest.raises(snapshot.NotAsked, match="not asked files"):
            snap["files"].get("/etc/other")
        with pytest.raises(snapshot.NotAsked, match="not asked dokku"):
            snap["dokku"]
        with pytest.raises(snapshot.NotAsked, match="does not answer 'packages'"):
            snap["packages"]
    with ctx_host.use(FakeHost()), ctx_state.use(fake_state()):
        snapshot.ask(files=["/etc/asked"])
        with pytest.raises(snapshot.NotAsked, match="does not answer files"):
            snapshot.answer({"files": {}})["files"]["/etc/asked"]


def test_blank_volume_is_formatted_with_the_uuid_written_to_fstab():
    """The UUID is chosen by the deploy (mkfs.ext4 -U), so the fstab line is known before mkfs runs."""
    mkfs, fstab, mount = run_case(ops.volume_filesystem, {"device": "/dev/sdb", "mount_point": "/mnt/dokku-data"},
                                  {"device": {"PRESENT": "1"}, "fstab": [], "mounts": {}}, FakeHost())
    fs_uuid = mkfs.split()[3]
    assert mkfs == f"mkfs.ext4 -q -U {fs_uuid} /dev/sdb"
    assert f"'UUID={fs_uuid} /mnt/dokku-data ext4 defaults,nofail 0 2'" in fstab
    assert mount == "mkdir -p /mnt/dokku-data && mount /mnt/dokku-data"


def test_sha256_fingerprint_matches_openssh():
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdHkUoG9wUMMKKFD8tJB4Q0e6lqlUIUu6YmZuGSPVZp provisioner"
    listed = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", "/dev/stdin"], input=key,
                            capture_output=True, text=True, check=True).stdout
    assert dokku.sha256_fingerprint(key) == listed.split()[1]


def test_secret_file_never_shows_its_content(caplog):
    """Even with --diff: no diff, no content in the log or on a command line (reading the old content for a
    diff would be a missing test fact too)."""
    secret = "STRIPE_SECRET_KEY='sk_live_DO_NOT_LEAK'\n"
    answers = {"files": {"/opt/platform/.env": {"type": "file", "mode": "600", "user": "root", "group": "root",
                                                "sha256": "old"}}}
    fake_host = FakeHost()
    with caplog.at_level(logging.DEBUG):
        commands = run_case(ops.secret_file, {"dest": "/opt/platform/.env", "content": secret}, answers, fake_host,
                            diff=True)
    assert commands[-1] == "upload /opt/platform/.env"
    shown = " ".join(commands + fake_host.noops) + caplog.text
    assert "DO_NOT_LEAK" not in shown


class PlatformHost(FakeHost):
    name = "platform"
    data = SimpleNamespace(platform_key_path="/opt/platform/dokku-ssh-key", private_ip="10.0.1.1",
                           platform_key_comment="mindroom-testbed-platform", platform_dokku_key_name="platform")


ADMIN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdHkUoG9wUMMKKFD8tJB4Q0e6lqlUIUu6YmZuGSPVZp admin@laptop"
PROVISIONER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQ8B3zyGWmdV8N1Vu8y1pUsS0xR/kbZ5i3JbFp5Tw0q provisioner"
OLD_KEYS = {keys.ROOT_AUTHORIZED_KEYS: {"type": "file", "mode": "600", "user": "root", "group": "root",
                                        "sha256": "admin+provisioner"}}


def _root_keys(groups: list[str], answers: dict, platform_host, platform_answers: dict) -> tuple[list[str], str]:
    """root_authorized_keys' commands on a host in groups (the platform host's snapshot answering
    platform_answers), and the content it uploads."""
    target = FakeHost()
    target.groups = groups
    args = {"admin_keys": [ADMIN_KEY], "platform_host": platform_host}
    with ctx_host.use(target), ctx_state.use(fake_state()):
        snapshot.ask(on=platform_host, contents=[f"{platform_host.data.platform_key_path}.pub"])
        snapshot.answer(platform_answers, on=platform_host)
        snapshot.ask(**keys.root_authorized_keys.asks(**args))
        snapshot.answer(answers)
        commands = list(keys.root_authorized_keys._inner(**args))
    [upload] = [c for c in commands if isinstance(c, FileUploadCommand)]
    return [str(c) for c in commands if c is not upload], upload.src.getvalue().decode()


def test_root_authorized_keys_on_a_dokku_host_are_the_admin_and_platform_keys_only():
    """What Hetzner put there at creation (an older bootstrap gave Dokku servers the provisioner key too) and
    any key added by hand go; the platform's key comes from the platform's private IP only."""
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdHkUoG9wUMMKKFD8tJB4Q0e6lqlUIUu6YmZuGSPVZp"
    platform_key = {"contents": {"/opt/platform/dokku-ssh-key.pub": [f"{key} mindroom-testbed-platform"]}}
    commands, content = _root_keys(["dokku"], {"files": OLD_KEYS, "dokku": {"ssh_keys": {}}}, PlatformHost(),
                                   platform_key)
    assert content == f'{ADMIN_KEY}\nfrom="10.0.1.1" {key} mindroom-testbed-platform\n'
    assert PROVISIONER_KEY.split()[1] not in content
    assert '-eq 2; then rm -f /root/.ssh/authorized_keys.candidate' in commands[1]
    assert commands[2] == "mv -f /root/.ssh/authorized_keys.candidate /root/.ssh/authorized_keys"
    assert commands[3] == f"echo {key!r} | dokku ssh-keys:add platform".replace('"', "'")


def test_root_authorized_keys_on_the_platform_are_the_admin_keys_and_need_no_platform_key():
    platform_host = PlatformHost()
    platform_host.groups = ["platform"]
    commands, content = _root_keys(["platform"], {"files": OLD_KEYS}, platform_host, {})
    assert content == f"{ADMIN_KEY}\n" and not any("dokku" in command for command in commands)


def test_root_authorized_keys_on_a_dokku_host_fail_without_the_platform_key():
    with pytest.raises(Exception, match="platform key step must run first"):
        _root_keys(["dokku"], {"files": OLD_KEYS, "dokku": {"ssh_keys": {}}}, PlatformHost(),
                   {"contents": {"/opt/platform/dokku-ssh-key.pub": None}})


def test_the_candidate_is_live_only_when_every_line_parses_as_a_key(tmp_path):
    """The check of the candidate file (ssh-keygen -l lists as many keys as it has lines) run for real."""
    platform_host = PlatformHost()
    platform_host.groups = ["platform"]
    check = _root_keys(["platform"], {"files": OLD_KEYS}, platform_host, {})[0][1]  # one admin key: one line
    for content, passes in ((f"{ADMIN_KEY}\n", True), ("not a key\n", False), (f"{ADMIN_KEY[:40]}\n", False)):
        candidate = tmp_path / "authorized_keys.candidate"
        candidate.write_text(content)
        done = subprocess.run(["sh", "-c", check.replace(keys.ROOT_AUTHORIZED_KEYS + ".candidate", str(candidate))],
                              capture_output=True)
        assert (done.returncode == 0) == passes, content
        assert candidate.exists() == passes, "a failed candidate is removed"


class DokkuHost(FakeHost):
    def __init__(self, number):
        super().__init__()
        self.name, self.data = f"dokku-{number}", SimpleNamespace(private_ip=f"10.0.1.{number}")


def test_known_hosts_lists_each_dokku_host_key_by_private_ip():
    """Each Dokku host's key from that host's snapshot; a host whose key was not asked would be an error, never
    a silently dropped line."""
    dokku_hosts = [DokkuHost(n) for n in (2, 3)]
    path = "/opt/platform/dokku-known-hosts"
    args = {"path": path, "dokku_hosts": dokku_hosts}
    with ctx_host.use(FakeHost({"files.File": {f"path={path}": None}, "files.Directory": {
            "path=/opt/platform": {"mode": 700}, f"path={path}": None}})), ctx_state.use(fake_state()):
        for member in dokku_hosts:
            snapshot.ask(on=member, contents=[keys.HOST_KEY])
            snapshot.answer({"contents": {keys.HOST_KEY: ["ssh-ed25519 AAAAhost root@dokku"]}}, on=member)
        snapshot.ask(**keys.known_hosts.asks(**args))
        snapshot.answer({"files": {path: None}})
        [upload] = [c for c in keys.known_hosts._inner(**args) if isinstance(c, FileUploadCommand)]
        unasked = DokkuHost(9)
        snapshot.answer({"contents": {keys.HOST_KEY: ["ssh-ed25519 AAAAhost root@dokku"]}}, on=unasked)
        with pytest.raises(snapshot.NotAsked):
            snapshot.read(on=unasked)["contents"][keys.HOST_KEY]
    lines = [line for line in upload.src.getvalue().decode().splitlines() if line and not line.startswith("#")]
    assert lines == ["10.0.1.2 ssh-ed25519 AAAAhost root@dokku", "10.0.1.3 ssh-ed25519 AAAAhost root@dokku"]


def test_known_hosts_in_place_is_a_no_op():
    """(keys.known_hosts reads other hosts' snapshots, so its cases are here rather than in JSON.)"""
    member, path = DokkuHost(2), "/opt/platform/dokku-known-hosts"
    line = "ssh-ed25519 AAAAhost root@dokku"
    content = ops.render("templates/platform/dokku-known-hosts.j2", known_hosts=[("10.0.1.2", line)])
    fake_host = FakeHost()
    with ctx_host.use(fake_host), ctx_state.use(fake_state()):
        snapshot.ask(on=member, contents=[keys.HOST_KEY])
        snapshot.answer({"contents": {keys.HOST_KEY: [line]}}, on=member)
        snapshot.ask(files=[path])
        snapshot.answer({"files": {path: {"type": "file", "mode": "644", "user": "root", "group": "root",
                                          "sha256": hashlib.sha256(content.encode()).hexdigest()}}})
        assert list(keys.known_hosts._inner(path=path, dokku_hosts=[member])) == []
    assert fake_host.noops


def test_missing_certificate_runs_certbot_once():
    names = ["mindroom.test", "app.mindroom.test"]
    args = {"domain": "mindroom.test", "names": names, "webroot": "/var/www/letsencrypt",
            "ca_bundle": "/etc/letsencrypt/acme-ca.pem"}
    with ctx_host.use(FakeHost()), ctx_state.use(fake_state()):
        snapshot.ask(**tls.certificate.asks(**args))
        snapshot.answer({"certs": {tls.certificate_path("mindroom.test"): None}})
        [command] = list(tls.certificate._inner(**args))
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
    assert fact["files"][str(pub)]["sha256"] == hashlib.sha256(pub.read_bytes()).hexdigest()


def test_dokku_deploy_sudoers_drop_in_allows_dokku_and_nothing_else():
    """No `!ALL` line either: `sudo -l -U dokku-deploy` must list the one rule (tests/hosts/test_dokku.py)."""
    template = jinja2.Template((ROOT / "templates/dokku/dokku-deploy.j2").read_text())
    rendered = template.render(user_name="dokku-deploy", dokku=dokku.DOKKU)
    rules = [line for line in rendered.splitlines() if line.strip() and not line.startswith("#")]
    assert rules == ["dokku-deploy ALL=(root) NOPASSWD: /usr/bin/dokku"]


def test_the_deploy_names_a_server_waiting_for_the_upgrade(monkeypatch):
    """Another Dokku version and a plugin finished at another tag: no command, one line for the end of the run."""
    plugin = {"enabled": True, "committish": "1.42.0", "finished": "1.42.0"}
    answers = {"packages": {"dokku": "0.38.27"}, "held": ["dokku"],
               "dokku": {"vhosts": ["mindroom.chat"], "plugins": {"redis": plugin}, "properties": {}, "ssh_keys": {},
                         "autorenew": True}}
    monkeypatch.setattr(dokku, "_left", {})
    with ctx_host.use(FakeHost()), ctx_state.use(fake_state()):
        snapshot.ask(dokku=True)
        snapshot.answer(answers)
        assert list(dokku.package._inner(version="0.38.28", extra=[])) == []
        assert list(dokku.global_settings._inner(domain="mindroom.chat", properties={}, plugins={
            "redis": ("https://github.com/dokku/dokku-redis.git", "1.43.0")})) == []
    assert dokku._upgrade_lines() == [
        "DOKKU UPGRADE PENDING on case-host: Dokku 0.38.27 runs, 0.38.28 is configured, plugin redis 1.42.0 runs, "
        "1.43.0 is configured; the deploy left it alone: run `python maintain.py upgrade` (one server at a time, its "
        "apps stopped meanwhile)"]


@pytest.mark.parametrize("served, passes", [(b"the pinned key\n", True), (b"another key\n", False)])
def test_a_download_goes_live_only_with_its_pinned_checksum(tmp_path, served, passes):
    """The check after pyinfra's files.download, run for real: a mismatch is one line naming the URL, the
    candidate is removed and the live file stays as it was."""
    dest, url = tmp_path / "dokku.asc", "https://packagecloud.io/dokku/dokku/gpgkey"
    dest.write_text("the old key\n")
    pinned = hashlib.sha256(b"the pinned key\n").hexdigest()
    facts = {"files.File": {f"path={dest}.download": None}, "server.Which": {"command=curl": "/usr/bin/curl"}}
    *download, check = run_case(ops.download, {"url": url, "dest": str(dest), "sha256": pinned},
                                {"files": {str(dest): None}}, FakeHost(facts))
    assert download[0].startswith(f"curl -sSLf {url} -o ")
    (tmp_path / "dokku.asc.download").write_bytes(served)
    done = subprocess.run(["sh", "-c", check], capture_output=True, text=True)
    assert (done.returncode == 0) == passes
    assert not (tmp_path / "dokku.asc.download").exists()
    if passes:
        assert dest.read_bytes() == served and done.stderr == ""
    else:
        actual = hashlib.sha256(served).hexdigest()
        assert done.stderr == f"error: {url} has SHA-256 {actual}, not the pinned {pinned}; {dest} is unchanged\n"
        assert dest.read_text() == "the old key\n"


@pytest.mark.parametrize("pin", ["", "0" * 63, "A" * 64, "0" * 64 + "'; touch /tmp/x; '"])
def test_a_download_without_a_well_formed_pin_is_refused_before_anything_is_asked(pin):
    with pytest.raises(OperationError, match="the pinned SHA-256 .* is not 64 lowercase hex digits"):
        run_case(ops.download, {"url": "https://packagecloud.io/dokku/dokku/gpgkey", "dest": "/etc/apt/keyrings/dokku.asc",
                                "sha256": pin}, {"files": {"/etc/apt/keyrings/dokku.asc": None}}, FakeHost())


def test_a_candidate_that_fails_its_check_is_removed_the_live_file_kept_and_the_check_named(tmp_path):
    """The private writer's check run for real in sh: the message names the check as it ran, quoted whatever
    the path or the check hold (quotes here)."""
    dest = tmp_path / "it's.conf"
    dest.write_text("the live file\n")
    (tmp_path / "conf.j2").write_text("new\n")
    _mkdir, _upload, check, _move = run_case(
        ops.template, {"src": str(tmp_path / "conf.j2"), "dest": str(dest), "mode": "600",
                       "validate": "grep -q 'never there' {path}"}, {"files": {str(dest): None}}, FakeHost())
    (tmp_path / "it's.conf.candidate").write_text("new\n")
    done = subprocess.run(["sh", "-c", check], capture_output=True, text=True)
    assert done.returncode == 1 and not (tmp_path / "it's.conf.candidate").exists()
    assert done.stderr == f"candidate {dest} failed: grep -q 'never there' {dest}.candidate; {dest} is unchanged\n"
    assert dest.read_text() == "the live file\n"


def test_a_template_that_fails_to_render_is_reported_with_its_file_and_line(tmp_path):
    """pyinfra's files.template report, before anything is asked of the host (FakeHost lists no fact)."""
    template = tmp_path / "broken.j2"
    template.write_text("line one\n{{ missing_value }}\nline three\n")
    with pytest.raises(OperationError, match=rf"Error in template: {template} \(L2\): 'missing_value' is undefined"):
        run_case(ops.template, {"src": str(template), "dest": "/etc/x", "mode": "644"}, {"files": {"/etc/x": None}},
                 FakeHost())


def test_a_host_read_by_several_hosts_at_once_is_read_once():
    """Hosts are planned in parallel greenlets and a Dokku host reads the platform's snapshot (`on=`) while the
    platform reads its own: the second reader waits for the read under way."""

    class SlowHost(FakeHost):
        reads = 0

        def get_fact(self, cls, *args, **kwargs):
            SlowHost.reads += 1
            gevent.sleep(0.05)
            return {"files": {"/etc/x": None}}

    platform_host = SlowHost()
    with ctx_state.use(fake_state()):
        def reader():
            with ctx_host.use(FakeHost()):
                return snapshot.read(on=platform_host)["files"]["/etc/x"]
        with ctx_host.use(platform_host):
            snapshot.ask(files=["/etc/x"])
        assert [greenlet.get() for greenlet in gevent.joinall([gevent.spawn(reader) for _ in range(3)])] == [None] * 3
    assert SlowHost.reads == 1


def test_every_host_asks_before_any_declares_even_when_asking_yields():
    """Hosts are planned in parallel greenlets. A task that yields while asking (the first deploy's ssh-keygen of
    the storage box key: a subprocess yields under gevent) let another host start declaring while the asking flag
    was up, so that host declared nothing (its operations only asked); declare() now waits for the asking pass."""
    events = []
    members = [SimpleNamespace(name=name, op_hash_order=[]) for name in ("first", "second")]
    run = SimpleNamespace(inventory=SimpleNamespace(get_active_hosts=lambda: members))

    def tasks():
        asking = snapshot._book().running == snapshot.ASKING
        events.append((host.name, "asks" if asking else "declares"))
        if asking:
            gevent.sleep(0.01)

    def plan(member):
        with ctx_state.use(run), ctx_host.use(member):
            snapshot.declare(tasks)

    gevent.joinall([gevent.spawn(plan, member) for member in members], raise_error=True)
    assert events[:2] == [("first", "asks"), ("second", "asks")], events
    assert sorted(events[2:]) == [("first", "declares"), ("second", "declares")], events


# -- declare's check: every host's tasks against the snapshots, nothing declared ------------------------------
class CheckedHost(FakeHost):
    """A host with /srv/app in place (or `app`) and the data at /mnt/volume/app (or `data`)."""
    data = SimpleNamespace()

    def __init__(self, name, app="dir", data="dir"):
        super().__init__()
        self.name, self.op_hash_order, self.reads = name, [], 0
        self.snapshot = {"files": {"/srv/app": {"type": app, "mode": "755", "user": "root", "group": "root"}},
                         "paths": {"/var/lib/app": "missing", "/mnt/volume/app": data}}

    def get_fact(self, cls, *args, **arguments):
        if cls is not HostSnapshot:
            return super().get_fact(cls, *args, **arguments)
        assert arguments["files"] == ["/srv/app"] and arguments["paths"] == ["/mnt/volume/app", "/var/lib/app"]
        self.reads += 1
        gevent.sleep(0.01)  # hosts are read in parallel
        return self.snapshot


def checked_tasks():
    ops.directory(name="Create /srv/app", path="/srv/app", mode="755")
    ops.move_onto(name="Keep the data on the volume", src="/var/lib/app", dest="/mnt/volume/app")


def check_state(hosts):
    return SimpleNamespace(cwd=str(ROOT), config=SimpleNamespace(DIFF=False),
                           inventory=SimpleNamespace(get_active_hosts=lambda: hosts))


def test_a_converged_run_reads_each_host_once_and_declares_nothing():
    hosts = [CheckedHost("dokku-1"), CheckedHost("platform")]
    declared = []
    with ctx_state.use(check_state(hosts)):
        for member in hosts:  # each host's deploy file, in turn
            with ctx_host.use(member):
                snapshot.declare(lambda: declared.append(snapshot._book().running) or checked_tasks(), check=True)
        assert snapshot.converged()
    assert declared == [snapshot.ASKING] * 2 + [snapshot.CHECKING] * 2, "asked, checked, nothing declared"
    assert [member.reads for member in hosts] == [1, 1]
    assert [member.noops for member in hosts] == [["/srv/app is in place", "/mnt/volume/app holds /var/lib/app's data"]] * 2
    assert [member.op_hash_order for member in hosts] == [[], []], "nothing was declared with pyinfra"


def test_the_check_stops_at_the_first_change():
    hosts = [CheckedHost("dokku-1"), CheckedHost("platform", data="missing"), CheckedHost("spare")]
    with ctx_state.use(check_state(hosts)):
        for member in hosts:
            with ctx_host.use(member):
                snapshot.ask(files=["/srv/app"], paths=["/var/lib/app", "/mnt/volume/app"])
        assert snapshot._nothing_would_change(checked_tasks, hosts) is False
    assert [member.reads for member in hosts] == [1, 1, 1]
    assert [len(member.noops) for member in hosts] == [2, 1, 0], "checked up to the change (mkdir -p), no further"


def test_an_operation_that_fails_while_checking_is_left_to_pyinfra():
    hosts = [CheckedHost("dokku-1", app="file")]  # ops.directory raises: /srv/app is a file
    with ctx_state.use(check_state(hosts)), ctx_host.use(hosts[0]):
        snapshot.ask(files=["/srv/app"], paths=["/var/lib/app", "/mnt/volume/app"])
        assert snapshot._nothing_would_change(checked_tasks, hosts) is False
        with pytest.raises(OperationError, match="/srv/app is a file, expected a directory"):
            list(ops.directory._inner(path="/srv/app", mode="755"))


def test_a_message_is_said_once_per_run():
    with ctx_state.use(fake_state()):
        assert [snapshot.once(("no receiver", "platform")) for _ in range(3)] == [True, False, False]
        assert snapshot.once(("no receiver", "dokku-1"))
    with ctx_state.use(fake_state()):
        assert snapshot.once(("no receiver", "platform")), "another run says it again"
