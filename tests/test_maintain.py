"""maintain.py's roll without hosts: the order, what it sends when there is nothing to do, and where it stops.
pyinfra is replaced by a recorder (maintain._pyinfra); the lock is the real one against the fake cloud. The
roll itself, on real hosts, is a step of the end-to-end gate (tests/test_e2e.py)."""

import contextlib
import io
import json
import subprocess

import pytest

import maintain
from settings import DOKKU_PLUGINS
from tests.fakecloud.harness import Harness
from tests.test_bootstrap_faults import started  # noqa: F401 - a fixture

SERVERS = [("mindroom-production-platform", "platform", "10.0.1.20"),
           ("mindroom-production-dokku-10", "dokku", "10.0.1.19"),
           ("mindroom-production-dokku-2", "dokku", "10.0.1.11"),
           ("mindroom-production-dokku-1", "dokku", "10.0.1.10")]
ORDER = ["mindroom-production-dokku-1", "mindroom-production-dokku-2", "mindroom-production-dokku-10",
         "mindroom-production-platform"]


@pytest.fixture
def h(tmp_path, started):
    harness = Harness(tmp_path, started())
    outputs = {"servers": [{"name": name, "role": role, "private_ip": ip} for name, role, ip in SERVERS]}
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    return harness


DOKKU_ORDER = ORDER[:3]
CURRENT = {"version": "0.38.27", "plugins": {name: tag for name, (_url, tag) in DOKKU_PLUGINS.items()},
           "apps": ["demo"]}


class Pyinfra:
    """Records maintain.py's pyinfra runs; `required` answers the RebootRequired fact, `releases` the DokkuRelease
    fact ({server: changes over CURRENT}), `failing` hosts fail."""

    def __init__(self, h, required=(), failing=(), releases=None, unreachable=(), interrupted=(), fact_exit=0):
        self.h, self.required, self.failing = h, set(required), set(failing)
        self.unreachable, self.interrupted, self.fact_exit = set(unreachable), set(interrupted), fact_exit
        self.releases = {name: {**CURRENT, **(releases or {}).get(name, {})} for name in DOKKU_ORDER}
        self.runs: list[tuple] = []
        self.locks_seen: list[list[str]] = []

    def __call__(self, *args, capture=False):
        self.runs.append(args)
        self.locks_seen.append([group["labels"]["command"] for group in self.h.fake.resources("placement_groups")])
        if self.fact_exit and "fact" in args:  # pyinfra failed before its JSON ("No hosts remaining!")
            return subprocess.CompletedProcess(args, self.fact_exit, "")
        if maintain.REBOOT_REQUIRED_FACT in args:  # pyinfra 3.10 leaves a host it could not connect out of the JSON
            stdout = json.dumps({maintain.REBOOT_REQUIRED_FACT: {name: name in self.required for name in ORDER
                                                                  if name not in self.unreachable}})
            return subprocess.CompletedProcess(args, 0, stdout)
        if maintain.DOKKU_RELEASE_FACT in args:
            assert args[args.index("--limit") + 1] == "dokku", "only the Dokku servers are asked"
            found = {name: release for name, release in self.releases.items() if name not in self.unreachable}
            return subprocess.CompletedProcess(args, 0, json.dumps({maintain.DOKKU_RELEASE_FACT: found}))
        host = args[args.index("--limit") + 1]
        if host in self.interrupted:
            raise KeyboardInterrupt  # Ctrl-C while pyinfra works on this host
        return subprocess.CompletedProcess(args, 1 if host in self.failing else 0, None)

    def rebooted(self) -> list[str]:
        """The hosts a one-host step ran on (rebooted or upgraded), in order."""
        return [args[args.index("--limit") + 1] for args in self.runs if "--limit" in args and "fact" not in args]


def run(h, monkeypatch, pyinfra, *argv, command="reboot", settings=None):
    monkeypatch.setattr(maintain, "_pyinfra", pyinfra)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = maintain.main([command, *argv], {**h.env, **(settings or {})}, out)
    return code, out.getvalue(), err.getvalue()


def test_the_roll_goes_dokku_first_by_private_ip_then_the_platform(tmp_path, h):
    assert maintain.roll_order(tmp_path / "outputs.json") == ORDER


def test_nothing_to_reboot_sends_nothing(h, monkeypatch):
    code, out, _ = run(h, monkeypatch, Pyinfra(h), "--only-if-required")
    assert code == 0 and out == "No host needs a reboot.\n" and h.fake.requests == []


def test_only_the_hosts_that_need_it_are_rebooted_one_at_a_time_under_the_lock(h, monkeypatch):
    pyinfra = Pyinfra(h, required=["mindroom-production-platform", "mindroom-production-dokku-2"])
    code, out, err = run(h, monkeypatch, pyinfra, "--only-if-required")
    assert code == 0, err
    assert pyinfra.rebooted() == ["mindroom-production-dokku-2", "mindroom-production-platform"]
    assert pyinfra.locks_seen[0] == [] and all(seen == ["reboot"] for seen in pyinfra.locks_seen[1:]), \
        "asked without the lock, asked again and rebooted under it"
    assert "[1/2] rebooting mindroom-production-dokku-2" in out and "[2/2] mindroom-production-platform is back" in out
    assert h.fake.resources("placement_groups") == []


def test_a_host_that_does_not_come_back_stops_the_roll_naming_it(h, monkeypatch):
    pyinfra = Pyinfra(h, failing=["mindroom-production-dokku-2"])
    code, _, err = run(h, monkeypatch, pyinfra)
    assert code == 1 and err == ("error: the reboot roll stopped at mindroom-production-dokku-2: it did not come back "
                                 "with its services (pyinfra exit 1, output above); not rebooted: "
                                 "mindroom-production-dokku-10, mindroom-production-platform\n")
    assert pyinfra.rebooted() == ORDER[:2] and h.fake.resources("placement_groups") == []


@pytest.mark.parametrize("text", ["{", "[]", '{"servers": [{"name": "x", "role": "dokku", "private_ip": "nope"}]}'])
def test_a_bad_outputs_file_is_one_line(h, monkeypatch, tmp_path, text):
    (tmp_path / "outputs.json").write_text(text)
    code, _, err = run(h, monkeypatch, Pyinfra(h))
    assert code == 1 and err.startswith(f"error: OUTPUTS_FILE='{tmp_path / 'outputs.json'}' is not bootstrap's")
    assert len(err.splitlines()) == 1 and h.fake.requests == []


NEXT = {"DOKKU_VERSION": "0.38.28"}


def upgrade(h, monkeypatch, pyinfra, settings=NEXT):
    return run(h, monkeypatch, pyinfra, command="upgrade", settings=settings)


def test_nothing_to_upgrade_sends_nothing(h, monkeypatch):
    pyinfra = Pyinfra(h)
    code, out, err = upgrade(h, monkeypatch, pyinfra, settings={})
    assert code == 0, err
    assert out == "Every Dokku server runs Dokku 0.38.27 and its plugins at their tags.\n" and h.fake.requests == []
    assert len(pyinfra.runs) == 1, "one read of the servers, no upgrade step"


def test_the_upgrade_rolls_the_dokku_servers_one_at_a_time_by_private_ip_under_the_lock(h, monkeypatch):
    pyinfra = Pyinfra(h)
    code, out, err = upgrade(h, monkeypatch, pyinfra)
    assert code == 0, err
    assert pyinfra.rebooted() == DOKKU_ORDER, "the platform is no Dokku server"
    assert [run[-1] for run in pyinfra.runs if "fact" not in run] == [maintain.UPGRADE.deploy] * 3
    assert pyinfra.locks_seen[0] == [] and all(seen == ["upgrade"] for seen in pyinfra.locks_seen[1:]), \
        "asked without the lock, asked again and upgraded under it"
    lines = [line.split(" (")[0] for line in out.splitlines() if line.startswith("[")]
    assert lines == [line for number, name in enumerate(DOKKU_ORDER, 1) for line in (
        f"[{number}/3] upgrading {name}: Dokku 0.38.27 -> 0.38.28",
        f"[{number}/3] {name} is upgraded: dokku version checked, its apps run again")]
    assert out.endswith("Upgraded.\n") and h.fake.resources("placement_groups") == []


def test_a_plugin_tag_alone_upgrades_the_servers_that_run_another_tag(h, monkeypatch):
    older = {"plugins": {**CURRENT["plugins"], "redis": "1.42.0"}}
    pyinfra = Pyinfra(h, releases={"mindroom-production-dokku-2": older})
    code, out, err = upgrade(h, monkeypatch, pyinfra, settings={})
    assert code == 0, err
    assert pyinfra.rebooted() == ["mindroom-production-dokku-2"]
    assert "[1/1] upgrading mindroom-production-dokku-2: plugin redis 1.42.0 -> 1.43.0\n" in out


def test_a_failed_upgrade_stops_the_roll_naming_the_server_the_next_untouched(h, monkeypatch):
    pyinfra = Pyinfra(h, failing=["mindroom-production-dokku-2"])
    code, out, err = upgrade(h, monkeypatch, pyinfra)
    assert code == 1 and err == ("error: the upgrade roll stopped at mindroom-production-dokku-2: its upgrade or its "
                                 "check failed (pyinfra exit 1, output above); not upgraded (still serving on the old "
                                 "version): mindroom-production-dokku-10\n")
    assert pyinfra.rebooted() == DOKKU_ORDER[:2] and h.fake.resources("placement_groups") == []
    assert "mindroom-production-dokku-1 is upgraded" in out


def test_a_server_without_dokku_is_refused_before_the_lock(h, monkeypatch):
    pyinfra = Pyinfra(h, releases={"mindroom-production-dokku-10": {"version": ""}})
    code, _, err = upgrade(h, monkeypatch, pyinfra)
    assert code == 1 and err.startswith("error: no Dokku on mindroom-production-dokku-10 yet: set it up with ")
    assert h.fake.requests == [] and pyinfra.rebooted() == []


def test_dokku_release_fact_reads_version_plugins_and_running_apps():
    from tasks.upgrade import DokkuRelease

    output = ["version=0.38.27", "plugin=postgres 1.48.0", "plugin=redis 1.43.0", "app=demo", "app=shop"]
    assert DokkuRelease().process(output) == {"version": "0.38.27", "plugins": {"postgres": "1.48.0",
                                                                                 "redis": "1.43.0"},
                                              "apps": ["demo", "shop"]}
    assert DokkuRelease().process([]) == {"version": "", "plugins": {}, "apps": []}


BACKUPS_ON = {**NEXT, "BACKUP_REPOSITORY": "s3:https://fsn1.your-objectstorage.com/bucket",
              "BACKUP_S3_ACCESS_KEY_ID": "AccessKey0001", "BACKUP_S3_SECRET_ACCESS_KEY": "SecretAccessKey0001"}


def test_with_backups_each_server_is_backed_up_just_before_its_upgrade(h, monkeypatch):
    pyinfra = Pyinfra(h)
    backed_up = []
    monkeypatch.setattr(maintain, "backup_now", lambda name: backed_up.append((name, len(pyinfra.rebooted()))) or 0)
    code, out, err = upgrade(h, monkeypatch, pyinfra, settings=BACKUPS_ON)
    assert code == 0, err
    assert backed_up == [(name, number) for number, name in enumerate(DOKKU_ORDER)], \
        "each server's backup comes after the previous server's upgrade and before its own"
    assert "[2/3] backing up mindroom-production-dokku-2 first\n" in out


def test_without_backups_the_upgrade_backs_nothing_up(h, monkeypatch):
    monkeypatch.setattr(maintain, "backup_now", lambda name: pytest.fail(f"backed up {name} without backups"))
    code, _, err = upgrade(h, monkeypatch, Pyinfra(h))
    assert code == 0, err


def test_a_failed_backup_stops_the_upgrade_before_the_server_is_touched(h, monkeypatch):
    pyinfra = Pyinfra(h)
    monkeypatch.setattr(maintain, "backup_now", lambda name: 1 if name == DOKKU_ORDER[1] else 0)
    code, _, err = upgrade(h, monkeypatch, pyinfra, settings=BACKUPS_ON)
    assert code == 1 and err == ("error: the upgrade roll stopped at mindroom-production-dokku-2: its backup before the "
                                 "upgrade failed (output above), mindroom-production-dokku-2 is untouched; not upgraded "
                                 "(still serving on the old version): mindroom-production-dokku-10\n")
    assert pyinfra.rebooted() == DOKKU_ORDER[:1] and h.fake.resources("placement_groups") == []


def test_an_unreachable_host_is_one_line_before_the_lock(h, monkeypatch):
    code, _, err = run(h, monkeypatch, Pyinfra(h, unreachable=["mindroom-production-dokku-2"]), "--only-if-required")
    assert code == 1 and err == ("error: could not ask mindroom-production-dokku-2 whether it needs a reboot "
                                 "(unreachable?)\n")
    code, _, err = upgrade(h, monkeypatch, Pyinfra(h, unreachable=["mindroom-production-dokku-10"]))
    assert code == 1 and err == "error: could not ask mindroom-production-dokku-10 which Dokku they run (unreachable?)\n"
    assert h.fake.requests == []


def test_pyinfra_failing_before_its_answer_is_one_line(h, monkeypatch):
    code, _, err = upgrade(h, monkeypatch, Pyinfra(h, fact_exit=1))
    assert code == 1 and err == ("error: could not ask the hosts which Dokku they run (pyinfra exit 1); see its output "
                                 "above\n")


@pytest.mark.parametrize("command", ["reboot", "upgrade"])
def test_ctrl_c_during_the_roll_is_one_line_and_releases_the_lock(h, monkeypatch, command):
    pyinfra = Pyinfra(h, interrupted=["mindroom-production-dokku-2"])
    code, _, err = run(h, monkeypatch, pyinfra, command=command, settings=NEXT)
    assert code == 1 and err == ("error: interrupted; the host being rebooted or upgraded may still be at it: check "
                                 "it, then run the roll again\n")
    assert pyinfra.rebooted() == DOKKU_ORDER[:2], "the roll stopped at the interrupted host"
    assert h.fake.resources("placement_groups") == [], "the lock is released"


def test_no_pyinfra_beside_python_is_one_line(h, monkeypatch, tmp_path):
    monkeypatch.setattr(maintain, "PYINFRA", str(tmp_path / "no-pyinfra"))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = maintain.main(["reboot", "--only-if-required"], h.env, out)
    assert code == 1 and err.getvalue() == (f"error: cannot run {tmp_path / 'no-pyinfra'} (No such file or directory); "
                                            "run maintain.py with the venv's python (source .venv/bin/activate)\n")


def test_an_older_dokku_version_is_refused_before_the_lock_and_before_any_app_stops(h, monkeypatch):
    """apt-get install -y dokku=OLDER refuses the downgrade ("Packages were downgraded and -y was used without
    --allow-downgrades", apt's libapt-private, Debian's apt 2.6; pyinfra 3.10's apt.packages passes
    --allow-downgrades only when asked, and dokku.upgrade_package does not), which the upgrade step would meet only
    after `dokku ps:stop --all`."""
    pyinfra = Pyinfra(h, releases={"mindroom-production-dokku-2": {"version": "0.38.28"},
                                   "mindroom-production-dokku-10": {"version": "0.39.0"}})
    code, _, err = upgrade(h, monkeypatch, pyinfra, settings={})
    assert code == 1 and err == ("error: DOKKU_VERSION=0.38.27 is older than what runs on mindroom-production-dokku-2 "
                                 "(0.38.28), mindroom-production-dokku-10 (0.39.0): the upgrade never downgrades "
                                 "(Dokku has no downgrade path); set DOKKU_VERSION to the version they run or a newer "
                                 "one\n")
    assert h.fake.requests == [] and pyinfra.rebooted() == []
    assert maintain._older("0.38.27", "0.38.28") and not maintain._older("0.38.28", "0.38.27")
    assert not maintain._older("0.38.27", "0.38.27") and not maintain._older("0.38.27", "master")
