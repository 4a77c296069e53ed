"""The testbed's pure logic: settings file, names, DNS mapping, pyinfra totals, PID files (no root needed)."""

import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from settings import load_settings
from tests.testbed import cloudhooks, envfile, layout, network, pebble, procs, steps


def test_env_file_is_private_and_loads_as_the_project_settings(tmp_path):
    values = {**envfile.base_settings(tmp_path), **envfile.generated_values(tmp_path),
              "HCLOUD_ENDPOINT": "http://127.0.0.1:8088/v1"}
    path = tmp_path / ".env.testbed"
    envfile.write(path, values)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    settings = load_settings({"ENV_FILE": str(path)}, cwd=tmp_path)
    assert settings.environment == "testbed"
    assert settings.domain == layout.TEST_DOMAIN
    assert settings.admin_ips == [f"{layout.BRIDGE_IP}/32"]
    assert settings.hcloud_endpoint == "http://127.0.0.1:8088/v1"
    assert settings.ssh_private_key_path == tmp_path / "ssh/admin_ed25519"
    assert values["HCLOUD_TOKEN"] in settings.secret_values()
    assert settings.stripe_live_mode is False, "the lab's Stripe key is a test-mode key (ENVIRONMENT=testbed)"


def test_generated_secrets_are_random_and_stable_per_lab(tmp_path):
    first = envfile.generated_values(tmp_path / "a")
    assert envfile.generated_values(tmp_path / "a") == first
    assert envfile.generated_values(tmp_path / "b")["HCLOUD_TOKEN"] != first["HCLOUD_TOKEN"]
    assert stat.S_IMODE((tmp_path / "a/generated.env").stat().st_mode) == 0o600


def test_pebble_reads_every_variable_the_testbed_sets():
    """A misspelt PEBBLE_* variable is silently ignored (a wrong nonce-reject name once left certbot failing
    at random): each one set must be a name the installed pebble binary contains."""
    binary = Path(shutil.which("pebble") or pytest.fail("pebble is not installed (./dev test installs it as root)"))
    strings = binary.read_bytes()  # Go packs its string constants without separators: look for substrings
    assert b"PEBBLE_WNONCEREJECT" not in strings
    assert [name for name in pebble.PEBBLE_ENV if name.encode() not in strings] == []


def test_env_file_quotes_spaces_and_refuses_quotes():
    assert 'A="x y"' in envfile.render({"A": "x y"})
    with pytest.raises(ValueError, match="B"):
        envfile.render({"B": 'say "hi"'})


def test_guest_link_names_fit_the_kernel_limit():
    names = network.names(layout.LAST_GUEST_OCTET)
    assert all(len(name) + 1 <= 15 for name in names.values())  # +1: the temporary guest end "<name>g"
    assert len(set(names.values())) == 3


def test_dns_records_map_names_of_the_zone():
    rrsets = [{"name": "@", "type": "A", "records": ["10.213.0.20"]},
              {"name": "app", "type": "A", "records": [{"value": "10.213.0.20"}]},
              {"name": "*", "type": "A", "records": ["10.213.0.11"]},
              {"name": "@", "type": "AAAA", "records": ["2001:db8::1"]}]
    assert cloudhooks.a_records("mindroom.test", rrsets) == {
        "mindroom.test": "10.213.0.20", "app.mindroom.test": "10.213.0.20", "*.mindroom.test": "10.213.0.11"}


def _pyinfra_json(success, error, no_change, failed_hosts=()):
    return ('{"plan": [], "results": {"operations": [{"name": "Op", "success": %s}], "totals": '
            '{"hosts": 2, "success": %d, "error": %d, "no_change": %d}, "failed_hosts": %s}}'
            % (str(["h"] if success else []).replace("'", '"'), success, error, no_change,
               str(list(failed_hosts)).replace("'", '"')))


def test_second_deploy_check_accepts_only_a_true_no_op():
    steps.assert_no_changes(steps.json_totals("log line\n" + _pyinfra_json(0, 0, 40)))
    for bad in (_pyinfra_json(1, 0, 39), _pyinfra_json(0, 1, 39), _pyinfra_json(0, 0, 0),
                _pyinfra_json(0, 0, 20, ["mindroom-testbed-platform"])):
        with pytest.raises(steps.StepFailed, match="not a no-op"):
            steps.assert_no_changes(steps.json_totals(bad))


DRY_RUN_TABLE = """--> Detected changes:
    Operation                                              Change                       Conditional Change
    Base | Base: fail2ban | Upload /etc/fail2ban/jail.d/sshd.local    2 (dokku-1, platform)    -
    Base | Base: fail2ban | Restart fail2ban                 -                            2 (dokku-1, platform)
    Base | Base: identity | Set the hostname                 -                            -

    Detected changes may not include every change pyinfra will execute.
"""


def test_dry_run_table_lists_only_operations_that_will_change():
    assert steps.planned_changes(DRY_RUN_TABLE) == ["Base | Base: fail2ban | Upload /etc/fail2ban/jail.d/sshd.local"]
    converged = DRY_RUN_TABLE.replace("2 (dokku-1, platform)    -", "-    -", 1)
    assert steps.planned_changes(converged) == []
    with pytest.raises(steps.StepFailed, match="Detected changes"):
        steps.planned_changes("--> Skipping change detection")


def test_spawned_daemon_is_tracked_and_stopped_by_pid(tmp_path):
    pidfile = tmp_path / "sleep.pid"
    pid = procs.spawn(["sleep", "60"], pidfile, tmp_path / "sleep.log")
    assert procs.read_pid(pidfile) == pid
    assert procs.spawn(["sleep", "60"], pidfile, tmp_path / "sleep.log") == pid  # idempotent
    procs.stop(pidfile)
    assert procs.wait_gone(pid, 5)
    assert not pidfile.exists()


def test_pid_file_of_another_process_is_never_trusted(tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        pidfile = tmp_path / "foreign.pid"
        pidfile.write_text(f"{sleeper.pid}\n")  # no start time: not written by the testbed
        assert procs.read_pid(pidfile) is None
        pidfile.write_text(f"{sleeper.pid} 1\n")  # start time of another process that had this PID
        procs.stop(pidfile)
        time.sleep(0.1)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_step_failure_names_the_step_and_shows_its_log(tmp_path):
    runner = steps.Runner(tmp_path)
    assert runner.run("echo", ["sh", "-c", "echo out; echo err >&2"]) == "out\n"
    with pytest.raises(steps.StepFailed, match=r"(?s)step 'broken' failed \(3\).*boom"):
        runner.run("broken", ["sh", "-c", "echo boom >&2; exit 3"])


def test_echoed_step_shows_each_line_as_it_comes_and_logs_it(tmp_path, capsys):
    runner = steps.Runner(tmp_path)
    output = runner.run("echoed", ["sh", "-c", "echo one; echo two >&2"], echo=True)
    assert output == "one\ntwo\n"
    assert capsys.readouterr().out.startswith("one\ntwo\n")
    assert "one\ntwo\n" in next(tmp_path.glob("*-echoed.log")).read_text()


def test_step_running_over_its_timeout_is_killed_and_named(tmp_path):
    runner = steps.Runner(tmp_path)
    with pytest.raises(steps.StepFailed, match=r"step 'slow' failed \(timeout after 1s\)"):
        runner.run("slow", ["sh", "-c", "echo started; exec sleep 30"], timeout=1)


def test_guest_image_customisation(tmp_path):
    from tests.testbed import guest_image

    for directory in ("etc/ssh", "etc/apt", "var/cache/apt/archives", "var/lib/apt/lists"):
        (tmp_path / directory).mkdir(parents=True)
    (tmp_path / "etc/ssh/ssh_host_ed25519_key").write_text("baked")
    (tmp_path / "etc/hostname").write_text("the-build-host\n")
    (tmp_path / "etc/apt/sources.list").write_text("deb http://old bookworm main\n")
    guest_image.customize(tmp_path, "http://mirror/debian", "http://mirror/debian-security")
    proxy = (tmp_path / "etc/apt/apt.conf.d/00mindroom-testbed-proxy").read_text()
    assert f'Proxy "http://{layout.BRIDGE_IP}:{layout.APT_PROXY_PORT}"' in proxy
    assert f'Proxy::{layout.BRIDGE_IP} "DIRECT"' in proxy
    assert "Suites: trixie trixie-updates" in (tmp_path / "etc/apt/sources.list.d/debian.sources").read_text()
    assert not (tmp_path / "etc/apt/sources.list").exists()
    assert not list((tmp_path / "etc/ssh").glob("ssh_host_*"))
    assert not (tmp_path / "etc/hostname").exists()
    assert (tmp_path / "etc/machine-id").read_text() == ""
    assert (tmp_path / "var/lib/dbus/machine-id").readlink() == Path("/etc/machine-id")
    volumes_unit = tmp_path / "etc/systemd/system/local-fs.target.wants/mindroom-testbed-volumes.service"
    assert "mount -a -t ext4" in volumes_unit.read_text()
    assert (tmp_path / "etc/systemd/system/sysinit.target.wants/proc-uptime.mount").exists()
