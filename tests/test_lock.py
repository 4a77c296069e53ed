"""One operator at a time: the environment's lock (cloud/lock.py) in bootstrap.py and in the deploy (tasks/lock.py).

bootstrap runs in-process (tests/fakecloud/harness.py) or, where two runs must overlap or be interrupted, as
real processes; the deploy runs as real `pyinfra @local` processes with tests/lock_deploy.py. Every run talks
to the fake Hetzner API, whose request log names each request's token, so each process's requests are its own.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

import bootstrap
from cloud.lock import Holder, label_value, lock_name, this_machine
from settings import load_settings
from tests.fakecloud import FakeCloud
from tests.fakecloud.harness import Harness, lock_ids
from tests.fakecloud.server import MUTATING
from tests.test_bootstrap_faults import assert_converged, started  # noqa: F401 - started is a fixture

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = Path(sys.executable).parent / "pyinfra"
LOCK = "mindroom-production-lock"
SINCE = datetime(2026, 12, 1, 22, 0, 5, tzinfo=timezone.utc)
HELD_BY_ALICE = ("error: environment production is locked by alice@laptop (apply, pid 4242) since 2026-12-01 "
                 "22:00:05 UTC; wait with --lock-wait SECONDS, or if that run died: python bootstrap.py unlock --force\n")


def held_by(command: str, pid: int) -> re.Pattern:
    return re.compile(rf"environment production is locked by \S+@\S+ \({command}, pid {pid}\) since "
                      r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


@pytest.fixture
def fake(started):
    return started()


@pytest.fixture
def slow_fake(started):
    """Actions take 0.3 s: an apply of three servers runs for a few seconds."""
    return started(action_latency=0.3)


@pytest.fixture
def h(tmp_path, fake):
    return Harness(tmp_path, fake, DOKKU_SERVERS="2")  # as assert_converged expects


def make_lock(h: Harness, environment: str = "production", machine: str = "0123456789abcdef", pid: int = 4242,
              command: str = "apply") -> int:
    """A lock as another run would have taken it (by default: alice on her laptop)."""
    settings = load_settings({**h.env, "ENVIRONMENT": environment})
    holder = Holder("alice", "laptop", machine, pid, command, SINCE)
    return h.client().placement_groups.create(name=lock_name(settings), type="spread",
                                              labels=holder.labels(settings)).placement_group.id


def locks(h: Harness) -> list[str]:
    return [name for name in h.names("placement_groups") if name.endswith("-lock")]


def dead_pid() -> int:
    """A pid no process has any more (the process ran and was reaped)."""
    process = subprocess.Popen(["true"])
    assert process.wait() == 0
    return process.pid


def calls(entries: list) -> list[tuple]:
    return [(entry["method"], entry["path"], entry["status"]) for entry in entries]


def mutations_of(fake: FakeCloud, token: str) -> list[tuple]:
    return calls([entry for entry in fake.requests if entry["token"] == token and entry["method"] in MUTATING])


def wait_for_lock(fake: FakeCloud, seconds: float = 30) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [group for group in fake.resources("placement_groups") if group["name"] == LOCK]
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError("no run took the lock")


# -- the label values ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [
    ("root", "root"), ("alice@laptop", "alice-laptop"), ("my host.example.com", "my-host.example.com"),
    ("-x-", "x"), ("", "unknown"), ("a" * 70, "a" * 63), ("20261201T220005Z", "20261201T220005Z"),
])
def test_label_values_follow_hetzners_rules(text, value):
    assert label_value(text) == value


def test_the_lock_names_its_holder_in_valid_labels(h):
    """The fake refuses what Hetzner refuses (tests/test_bootstrap_fakecloud.py), so the create proves the
    labels valid; they carry no `environment` label, so the environment's selector never lists the lock."""
    make_lock(h)
    labels = h.by_name("placement_groups", LOCK)["labels"]
    assert labels == {"managed-by": "mindroom-infra", "project": "mindroom", "lock": "production", "user": "alice",
                      "host": "laptop", "machine": "0123456789abcdef", "pid": "4242", "command": "apply",
                      "since": "20261201T220005Z"}
    assert h.client().placement_groups.get_all(label_selector=load_settings(h.env).label_selector) == []


# -- bootstrap.py ----------------------------------------------------------------------------------------------
def test_apply_takes_the_lock_first_and_releases_it_last(h):
    result = h.run("apply", "--yes")
    assert result.code == 0, result.err
    first, last = result.mutations[0], result.mutations[-1]
    assert (first["method"], first["path"], first["status"]) == ("POST", "/placement_groups", 201)
    assert '"command": "apply"' in first["body"] and f'"pid": "{os.getpid()}"' in first["body"]
    assert f'"machine": "{this_machine()}"' in first["body"]
    assert (last["method"], last["path"]) == ("DELETE", f"/placement_groups/{first['answer']['placement_group']['id']}")
    assert locks(h) == []


def test_a_run_with_nothing_to_do_sends_no_mutating_request(h):
    assert h.run("apply", "--yes").code == 0
    again = h.run("apply", "--yes")
    assert again.code == 0 and again.mutations == [] and "Nothing to do" in again.out
    assert h.run("destroy", "--yes", "--include-volumes").code == 0
    nothing = h.run("destroy", "--yes")
    assert nothing.code == 0 and nothing.mutations == [] and "Nothing to destroy." in nothing.out


def test_a_held_lock_refuses_at_once_and_read_only_commands_still_work(h):
    make_lock(h)
    refused = h.run("apply", "--yes")
    assert refused.code == 1 and refused.err == HELD_BY_ALICE
    assert calls(refused.mutations) == [("POST", "/placement_groups", 409)], "the lock attempt, nothing else"
    plan = h.run("plan")
    assert plan.code == 2 and plan.mutations == []
    assert h.run("output").code == 0
    shown = h.run("lock")
    assert shown.code == 0 and shown.mutations == []
    assert shown.out == "environment production is locked by alice@laptop (apply, pid 4242) since 2026-12-01 22:00:05 UTC\n"
    assert h.names("servers") == [] and locks(h) == [LOCK]


def test_lock_wait_waits_with_reads_only_then_plans_again(h):
    lock_id = make_lock(h)
    waiting = release_later(h, lock_id, after=0.5)
    result = h.run("apply", "--yes", "--lock-wait", "30")
    waiting.join()
    assert result.code == 0, result.err
    assert "Lock: environment production is locked by alice@laptop (apply, pid 4242)" in result.out
    assert "waiting up to 30 s" in result.out
    refused, taken = result.mutations[0], result.mutations[1]
    assert calls([refused, taken]) == [("POST", "/placement_groups", 409), ("POST", "/placement_groups", 201)]
    between = result.requests[result.requests.index(refused) + 1:result.requests.index(taken)]
    assert between and all(entry["method"] == "GET" for entry in between)
    assert_converged(h)


def release_later(h: Harness, lock_id: int, after: float) -> threading.Thread:
    """Another operator's run that ends `after` seconds from now (a thread deleting its lock)."""

    def release():
        time.sleep(after)
        h.client().placement_groups.delete(h.client().placement_groups.get_by_id(lock_id))

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def test_lock_wait_gives_up_with_the_same_line(h):
    make_lock(h)
    started = time.monotonic()
    result = h.run("apply", "--yes", "--lock-wait", "0.5")
    assert result.code == 1 and result.err == HELD_BY_ALICE and time.monotonic() - started >= 0.5
    assert calls(result.mutations) == [("POST", "/placement_groups", 409)]


@pytest.mark.parametrize("value", ["-1", "soon", "100000", "1_0", "1e3", "nan", "inf", "\u0661\u0660", " 5", "",
                                   "5" * 40, "$(id)"])
def test_a_bad_lock_wait_is_one_line(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        bootstrap.parse_args(["apply", "--lock-wait", value])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        f"bootstrap.py apply: error: argument --lock-wait: {value!r} is not a number of seconds from 0 to 86400 "
        "(see bootstrap.py apply --help)\n")


def test_a_dead_holder_on_this_machine_is_taken_over_with_a_notice(h):
    make_lock(h, machine=this_machine(), pid=dead_pid())
    result = h.run("apply", "--yes")
    assert result.code == 0, result.err
    assert f"Lock: taking over {LOCK} from alice@laptop (apply, pid" in result.out
    assert "that process no longer runs on this machine" in result.out
    assert_converged(h)


def test_a_stale_lock_of_this_machine_is_removed_even_with_nothing_else_to_do(h):
    assert h.run("apply", "--yes").code == 0
    make_lock(h, machine=this_machine(), pid=dead_pid())
    result = h.run("apply", "--yes")
    assert result.code == 0 and "Lock: taking over" in result.out and result.changes == []
    assert locks(h) == []
    assert h.run("apply", "--yes").mutations == []


def test_a_live_holder_on_this_machine_or_a_dead_one_elsewhere_is_not_taken_over(h):
    make_lock(h, machine=this_machine(), pid=os.getppid())  # our parent: alive
    assert h.run("apply", "--yes").code == 1
    h.client().placement_groups.delete(h.client().placement_groups.get_by_name(LOCK))
    pid = dead_pid()
    make_lock(h, pid=pid)  # no such process here, but it ran on another machine: its pid means nothing here
    assert h.run("apply", "--yes").err == HELD_BY_ALICE.replace("pid 4242", f"pid {pid}")


def test_unlock_needs_force_and_touches_no_other_environment(h):
    make_lock(h)
    make_lock(h, environment="staging")
    no_force = h.run("unlock")
    assert no_force.code == 1 and no_force.err.startswith("error: unlock breaks the lock of a run that may still")
    assert len(no_force.err.splitlines()) == 1 and no_force.mutations == []
    broken = h.run("unlock", "--force")
    assert broken.code == 0 and broken.out == "broke the lock of alice@laptop (apply, pid 4242) since 2026-12-01 22:00:05 UTC\n"
    assert locks(h) == ["mindroom-staging-lock"]
    assert h.run("unlock", "--force").out == "environment production was not locked\n"
    assert h.run("lock").out == "environment production is not locked\n"


def test_a_placement_group_with_the_locks_name_but_not_its_labels_is_never_deleted(h):
    h.client().placement_groups.create(name=LOCK, type="spread")
    refused = h.run("apply", "--yes")
    assert refused.code == 1 and "exists without the lock's labels" in refused.err
    assert h.run("unlock", "--force").code == 1 and locks(h) == [LOCK]


def test_destroy_removes_the_lock_last_and_leaves_other_environments_alone(h):
    assert h.run("apply", "--yes").code == 0
    make_lock(h, environment="staging")
    result = h.run("destroy", "--yes", "--include-volumes")
    assert result.code == 0, result.err
    taken = result.mutations[0]
    assert (taken["method"], taken["path"], taken["status"]) == ("POST", "/placement_groups", 201)
    assert calls(result.mutations[-1:]) == [
        ("DELETE", f"/placement_groups/{taken['answer']['placement_group']['id']}", 204)]
    assert h.names("placement_groups") == ["mindroom-staging-lock"] and h.names("servers") == []


# -- two real processes ---------------------------------------------------------------------------------------
def spawn(h: Harness, *argv: str, token: str) -> subprocess.Popen:
    env = {"PATH": os.environ["PATH"], **h.env, "HCLOUD_TOKEN": token}
    return subprocess.Popen([sys.executable, "bootstrap.py", *argv], cwd=ROOT, env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def start_both(h: Harness, *extra: str) -> dict[str, subprocess.Popen]:
    """Two applies started at the same moment: both plan, both find work, both try to take the lock."""
    return {token: spawn(h, "apply", "--yes", *extra, token=token) for token in ("one", "two")}


def test_two_concurrent_applies_one_converges_the_other_refuses(tmp_path, slow_fake):
    h = Harness(tmp_path, slow_fake, DOKKU_SERVERS="2")
    runs = start_both(h)
    results = {token: (run.communicate(timeout=120), run.returncode) for token, run in runs.items()}
    (winner,) = [token for token, (_, code) in results.items() if code == 0]
    (loser,) = [token for token, (_, code) in results.items() if code == 1]
    loser_err = results[loser][0][1]
    assert held_by("apply", runs[winner].pid).search(loser_err) and len(loser_err.splitlines()) == 1, loser_err
    assert mutations_of(slow_fake, loser) == [("POST", "/placement_groups", 409)], "the lock attempt, nothing else"
    assert mutations_of(slow_fake, winner)[0][:2] == ("POST", "/placement_groups")
    assert_converged(h)  # no duplicates, and the lock is gone


def test_with_lock_wait_the_second_apply_waits_then_finds_nothing_to_do(tmp_path, slow_fake):
    h = Harness(tmp_path, slow_fake, DOKKU_SERVERS="2")
    runs = start_both(h, "--lock-wait", "120")
    outputs = {token: run.communicate(timeout=120) for token, run in runs.items()}
    assert [run.returncode for run in runs.values()] == [0, 0], outputs
    (waited,) = [token for token, (out, _) in outputs.items() if "waiting up to 120 s" in out]
    assert "Nothing to do: everything is in sync." in outputs[waited][0]
    calls_of_waited = mutations_of(slow_fake, waited)
    assert [(method, status) for method, _, status in calls_of_waited] == [("POST", 409), ("POST", 201), ("DELETE", 204)]
    assert_converged(h)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_apply_releases_the_lock_and_the_next_converges(tmp_path, slow_fake, signum):
    h = Harness(tmp_path, slow_fake, DOKKU_SERVERS="2")
    run = spawn(h, "apply", "--yes", token="interrupted")
    wait_for_lock(slow_fake)
    time.sleep(0.5)
    run.send_signal(signum)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 1 and err == "error: interrupted; run apply again to finish what was started\n"
    assert locks(h) == []
    (lock_id,) = lock_ids([entry for entry in slow_fake.requests if entry["token"] == "interrupted"])
    assert mutations_of(slow_fake, "interrupted")[-1] == ("DELETE", f"/placement_groups/{lock_id}", 204), \
        "the steps under way finished before the release, and none started after it"
    assert h.run("apply", "--yes").code == 0
    assert_converged(h)


# -- the deploy ---------------------------------------------------------------------------------------------------
def deploy(h: Harness, *args: str, token: str = "deploy", stdin: str | None = None) -> subprocess.Popen:
    """pyinfra on @local, run outside the repository (the project's group_data/ is not this deploy's)."""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **h.env, "HCLOUD_TOKEN": token}
    return subprocess.Popen([str(PYINFRA), *args, "@local", str(ROOT / "tests" / "lock_deploy.py")],
                            cwd=h.tmp_path, env=env, text=True,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(run: subprocess.Popen, stdin: str | None = None) -> tuple[int, str]:
    out, err = run.communicate(stdin, timeout=120)
    return run.returncode, out + err


def test_dry_runs_and_deploys_that_change_nothing_send_no_mutating_request(h, tmp_path):
    marker = tmp_path / "marker"
    code, output = finish(deploy(h, "--dry", "--data", f"marker={marker}"))
    assert code == 0 and "Append to the marker" in output, output
    code, output = finish(deploy(h, "-y"))  # -y: pyinfra skips its change detection; the lock asks the operation
    assert code == 0, output
    assert h.fake.mutating_requests() == [] and not marker.exists()


def test_a_deploy_that_changes_something_holds_the_lock_while_it_runs(h, tmp_path):
    marker = tmp_path / "marker"
    run = deploy(h, "-y", "--data", f"marker={marker}", "--data", "seconds=1")
    labels = wait_for_lock(h.fake)["labels"]
    assert labels["command"] == "deploy" and labels["pid"] == str(run.pid)
    assert not marker.exists(), "the lock is taken before the operation runs"
    code, output = finish(run)
    assert code == 0, output
    assert marker.read_text() == "ran\n" and locks(h) == []
    assert [call[:2] for call in mutations_of(h.fake, "deploy")][0] == ("POST", "/placement_groups")
    assert len(mutations_of(h.fake, "deploy")) == 2


def test_with_change_detection_the_confirmed_deploy_holds_the_lock(h, tmp_path):
    marker = tmp_path / "marker"
    code, output = finish(deploy(h, "--data", f"marker={marker}", stdin=""), "\n")  # "Press enter to execute"
    assert code == 0 and marker.read_text() == "ran\n", output
    assert [call[0] for call in mutations_of(h.fake, "deploy")] == ["POST", "DELETE"] and locks(h) == []


def test_a_second_deploy_refuses_and_changes_nothing_or_waits_with_lock_wait(h, tmp_path):
    first = deploy(h, "-y", "--data", f"marker={tmp_path / 'first'}", "--data", "seconds=4", token="first")
    wait_for_lock(h.fake)
    code, output = finish(deploy(h, "-y", "--data", f"marker={tmp_path / 'second'}", token="second"))
    assert code == 1 and held_by("deploy", first.pid).search(output), output
    assert "; wait with --data lock_wait=SECONDS, or if that run died: python bootstrap.py unlock --force" in output
    assert not (tmp_path / "second").exists(), "the refused deploy ran no operation"
    assert mutations_of(h.fake, "second") == [("POST", "/placement_groups", 409)]
    waiting = deploy(h, "-y", "--data", f"marker={tmp_path / 'third'}", "--data", "lock_wait=60", token="third")
    assert finish(first)[0] == 0
    code, output = finish(waiting)
    assert code == 0 and "waiting up to 60 s" in output, output
    assert (tmp_path / "first").read_text() == (tmp_path / "third").read_text() == "ran\n"
    assert locks(h) == []


def test_an_interrupted_deploy_releases_the_lock(h, tmp_path):
    run = deploy(h, "-y", "--data", f"marker={tmp_path / 'marker'}", "--data", "seconds=2")
    wait_for_lock(h.fake)
    time.sleep(0.5)
    run.send_signal(signal.SIGINT)  # pyinfra stops once the running command returns
    _, output = finish(run)
    assert "Exiting upon user request!" in output, output
    assert locks(h) == [], "pyinfra disconnects in a finally, and the callback releases the lock there"


def test_a_bad_lock_wait_for_the_deploy_is_one_line(h):
    code, output = finish(deploy(h, "-y", "--data", "lock_wait=soon"))
    assert code == 1 and "error: --data lock_wait: 'soon' is not a number of seconds from 0 to 86400" in output
    assert h.fake.requests == []


def test_the_deploy_loads_the_hetzner_sdk_only_to_take_the_lock():
    """tasks/lock.py imports hcloud (and requests) on use: a deploy with nothing to change never talks to Hetzner,
    and the import would cost a tenth of an empty pyinfra run (P1 in README)."""
    tasks = re.search(r"^from tasks import ([\w, \\\n]+)$", (ROOT / "deploy.py").read_text(), re.MULTILINE)[1]
    probe = f"import sys\nfrom tasks import {tasks}\nprint(sorted(sys.modules.keys() & {{'hcloud', 'requests'}}))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "[]\n", done.stdout + done.stderr
