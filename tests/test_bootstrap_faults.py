"""bootstrap.py when things go wrong: transient API errors, a crash at any point, a failed action, bad input."""

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.fakecloud import FakeCloud, Faults
from tests.fakecloud.harness import Harness
from tests.fakecloud.server import MUTATING

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {
    "servers": ["mindroom-production-dokku-1", "mindroom-production-dokku-2", "mindroom-production-platform"],
    "volumes": ["mindroom-production-dokku-1-data", "mindroom-production-dokku-2-data",
                "mindroom-production-platform-data"],
    "networks": ["mindroom-production-network"],
    "firewalls": ["mindroom-production-dokku", "mindroom-production-platform"],
    "placement_groups": ["mindroom-production-dokku-spread"],
    "ssh_keys": ["mindroom-production-admin"],
}


@pytest.fixture
def started():
    fakes = []

    def start(**kwargs) -> FakeCloud:
        fake = FakeCloud(**kwargs)
        fake.start()
        fakes.append(fake)
        return fake

    yield start
    for fake in fakes:
        fake.stop()


def assert_converged(h: Harness) -> None:
    for kind, names in EXPECTED.items():
        assert h.names(kind) == names, kind
    for server in h.fake.resources("servers"):
        assert len(server["private_net"]) == 1 and server["protection"]["delete"] and server["volumes"]
    again = h.run("apply", "--yes")
    assert again.code == 0 and again.mutations == [], again.out


@pytest.mark.parametrize("statuses, rate, at_least", [((429, 503), 0.25, 10), ((500,), 0.25, 10), ((502,), 0.25, 10),
                                                     (("timeout",), 0.1, 3)])
def test_transient_errors_are_retried(tmp_path, started, statuses, rate, at_least):
    fake = started(faults=Faults(rate=rate, statuses=statuses, seed=7, timeout_delay=0.3))
    h = Harness(tmp_path, fake, DOKKU_SERVERS="2", HCLOUD_TIMEOUT="0.2")
    result = h.run("apply", "--yes")
    assert result.code == 0, result.err
    injected = [entry for entry in fake.requests if entry["status"] in statuses]
    assert len(injected) >= at_least, "the faults really happened (and were answered with a retry)"
    fake.faults.rate = 0
    assert_converged(h)


def rejected(requests: list[dict]) -> list[dict]:
    """Mutations the fake answered (or would have, had the answer not been lost) with a 4xx error: a request
    sent twice (reads of what a lost answer may have deleted may well be 404)."""
    return [r for r in requests if r["method"] in MUTATING
            and 400 <= (r["status"] if isinstance(r["status"], int) else r.get("answered", 0)) < 500]


def test_dropped_connections_are_retried_and_every_apply_converges_without_duplicates(tmp_path, started):
    lost_mutations, recovered = [], 0
    for seed in range(40):  # 12 seeds at least, more until the faults hit enough mutations (timing decides which)
        if seed >= 12 and len(lost_mutations) >= 5 and recovered >= 5 and any(
                r["status"] == "drop" and r["method"] == "POST" for r in lost_mutations):
            break
        fake = started(faults=Faults(rate=0.03, statuses=("reset", "drop"), seed=seed))
        (tmp_path / f"seed-{seed}").mkdir()
        h = Harness(tmp_path / f"seed-{seed}", fake, DOKKU_SERVERS="2")
        result = h.run("apply", "--yes")
        assert result.code == 0, f"seed {seed}: {result.err}"
        assert rejected(fake.requests) == [], "no uniqueness_error, already_attached, ...: nothing was sent twice"
        lost_mutations += [r for r in result.mutations if r["status"] in ("reset", "drop")]
        recovered += result.out.count("reading the project again")
        fake.faults.rate = 0
        assert_converged(h)
    assert len(lost_mutations) >= 5 and recovered >= 5, "the faults really hit mutations"
    assert any(r["status"] == "drop" and r["method"] == "POST" for r in lost_mutations), "a lost answer to a POST"


@pytest.mark.parametrize("request_line, how", [
    ("POST /servers", "drop"), ("POST /servers", "late"), ("POST /volumes", "drop"), ("POST /ssh_keys", "late"),
    (r"POST /servers/\d+/actions/attach_to_network", "drop"), (r"POST /volumes/\d+/actions/attach", "late"),
    ("POST /networks", "drop"), (r"DELETE /servers/\d+", "drop"),
])
def test_a_request_whose_answer_was_lost_is_never_sent_again(tmp_path, started, request_line, how):
    """The API carried the request out; bootstrap never learnt it. It reads the project again and continues from
    what exists: re-sending would fail with uniqueness_error, already_attached or not_found."""
    fake = started(faults=Faults(lose_answers={request_line: 1}, lost_answer=how, timeout_delay=1.0))
    h = Harness(tmp_path, fake, DOKKU_SERVERS="2", HCLOUD_TIMEOUT="0.5")
    if request_line.startswith("DELETE"):
        assert h.run("apply", "--yes").code == 0
    result = h.run("destroy" if request_line.startswith("DELETE") else "apply", "--yes")
    assert result.code == 0, result.err
    [lost] = [r for r in fake.requests if r["status"] == how]
    assert f"  lost  the answer to {lost['method']} /v1{lost['path']} was lost" in result.out
    assert "reading the project again to continue from what exists" in result.out
    sent = [r for r in fake.requests if f"{r['method']} {r['path']}" == f"{lost['method']} {lost['path']}"
            and r["body"] == lost["body"]]
    assert sent == [lost], "sent once"
    assert rejected(fake.requests) == []
    if request_line.startswith("DELETE"):
        assert h.names("servers") == []
    else:
        assert_converged(h)


def test_a_refused_connection_is_retried(tmp_path, started):
    """Connection refused (the API restarting, a proxy not up yet): the request never left, so even a POST could be
    re-sent; the fake starts listening only after bootstrap's first attempts were refused."""
    with socket.socket() as reserve:
        reserve.bind(("127.0.0.1", 0))
        port = reserve.getsockname()[1]
    fake = FakeCloud(listen=("127.0.0.1", port))
    fake.url = f"http://127.0.0.1:{port}/v1"
    h = Harness(tmp_path, fake, HCLOUD_RETRY_BACKOFF="0.2")  # 6 retries wait at least 1.2 s in all
    later = threading.Timer(0.2, fake.start)
    later.start()
    try:
        result = h.run("plan")
    finally:
        later.join()
        fake.stop()
    assert result.code == 2, result.err
    assert result.requests and all(entry["method"] == "GET" for entry in result.requests)


def test_retries_give_up_with_one_line(tmp_path, started):
    fake = started(faults=Faults(rate=1.0, statuses=(503,)))
    result = Harness(tmp_path, fake).run("plan")
    assert result.code == 1 and result.err.strip() == "error: Hetzner API error unavailable: service temporarily unavailable"
    assert len(fake.requests) >= 7  # first try + 6 retries of the same request (plus the concurrent others)


def full_apply_mutations(tmp_path, started) -> int:
    fake = started()
    return len(Harness(tmp_path / "clean", fake, DOKKU_SERVERS="2").run("apply", "--yes").mutations)


def test_a_crash_at_any_point_is_finished_by_the_next_apply(tmp_path, started):
    (tmp_path / "clean").mkdir()
    total = full_apply_mutations(tmp_path, started)
    assert total > 20
    for crash_after in range(1, total + 1):
        run_dir = tmp_path / f"crash-{crash_after}"
        run_dir.mkdir()
        state = run_dir / "cloud.json"
        first = started(state_file=state, faults=Faults(crash_after=crash_after))
        h = Harness(run_dir, first, DOKKU_SERVERS="2", HCLOUD_RETRY_BACKOFF="0.001")  # short retries against the dead fake
        crashed = h.run("apply", "--yes")
        assert crashed.code == 1 and crashed.err.startswith("error: ") and len(crashed.err.splitlines()) == 1
        assert "Traceback" not in crashed.err
        second = started(state_file=state)  # a new process continuing from the state on disk
        h.fake = second
        h.env["HCLOUD_ENDPOINT"] = second.url
        resumed = h.run("apply", "--yes")
        assert resumed.code == 0, f"crash after {crash_after}: {resumed.err}"
        assert_converged(h)


def test_an_action_ending_in_error_is_reported_and_the_next_apply_finishes(tmp_path, started):
    fake = started()
    fake.fail_next("attach_to_network")
    h = Harness(tmp_path, fake, DOKKU_SERVERS="2")
    failed = h.run("apply", "--yes")
    assert failed.code == 1 and "attach_to_network" in failed.err and "run apply again" in failed.err
    assert len(failed.err.splitlines()) == 1
    attached = [s for s in fake.resources("servers") if s["private_net"]]
    assert len(attached) == 2, "one attach failed, the others went on"
    assert h.run("apply", "--yes").code == 0
    assert_converged(h)


BAD_INPUT = [
    ({"HCLOUD_TOKEN": None}, "HCLOUD_TOKEN is required", False),
    ({"ADMIN_IPS": None}, "ADMIN_IPS is required", False),
    ({"ADMIN_IPS": "my-office"}, "ADMIN_IPS entry 'my-office' is not a CIDR", False),
    ({"ADMIN_IPS": "203.0.113.7/32,0.0.0.0/0"}, "ADMIN_IPS must not contain 0.0.0.0/0", False),
    ({"ADMIN_IPS": "::/0"}, "ADMIN_IPS must not contain ::/0", False),
    ({"DOKKU_SERVERS": "0"}, "DOKKU_SERVERS=0 is out of range", False),
    ({"DOMAIN": "not a domain"}, "DOMAIN='not a domain' is invalid", False),
    ({"SSH_PUBLIC_KEY_PATH": "/nonexistent/id.pub"}, "SSH_PUBLIC_KEY_PATH='/nonexistent/id.pub' does not exist", False),
    ({"SSH_PUBLIC_KEY_PATH": "PRIVATE"}, "is not an OpenSSH public key", False),
    ({"SSH_EXTRA_PUBLIC_KEY_PATHS": "/nonexistent/new.pub"}, "SSH_EXTRA_PUBLIC_KEY_PATHS='/nonexistent/new.pub' does "
     "not exist", False),
    ({"SSH_EXTRA_PUBLIC_KEY_PATHS": "PRIVATE"}, "SSH_EXTRA_PUBLIC_KEY_PATHS=", False),
    ({"SSH_EXTRA_PUBLIC_KEY_PATHS": "ADMIN"}, "the same key as SSH_PUBLIC_KEY_PATH; list each admin key once", False),
    ({"DOKKU_SERVER_TYPE": "cpx99"}, "DOKKU_SERVER_TYPE='cpx99' is not a Hetzner server type; available: cax11", True),
    ({"PLATFORM_SERVER_TYPE": "big"}, "PLATFORM_SERVER_TYPE='big' is not a Hetzner server type", True),
    ({"SERVER_IMAGE": "windows-11"}, "SERVER_IMAGE='windows-11' is not a Hetzner system image", True),
    ({"LOCATION": "mars1"}, "LOCATION='mars1' is not a Hetzner location; available: ash, fsn1", True),
]


@pytest.mark.parametrize("overrides, message, asks_api", BAD_INPUT, ids=[case[1][:40] for case in BAD_INPUT])
@pytest.mark.parametrize("command", ["plan", "apply"])
def test_bad_input_fails_with_one_line_before_anything_is_created(tmp_path, started, private_key_file, overrides,
                                                                  message, asks_api, command):
    fake = started()
    h = Harness(tmp_path, fake)
    special = {"PRIVATE": str(private_key_file), "ADMIN": h.env["SSH_PUBLIC_KEY_PATH"]}
    overrides = {key: special.get(value, value) for key, value in overrides.items()}
    result = h.run(command, "--yes", **overrides) if command == "apply" else h.run(command, **overrides)
    assert result.code == 1
    assert result.err.startswith("error: ") and message in result.err and len(result.err.splitlines()) == 1
    assert result.out == "" and result.mutations == []
    assert bool(result.requests) == asks_api, "local checks come before any API call"


def test_the_cli_prints_no_traceback(tmp_path):
    env = {"PATH": os.environ.get("PATH", ""), "ENV_FILE": str(tmp_path / "none.env"), "DOMAIN": "mindroom.test",
           "ADMIN_IPS": "0.0.0.0/0", "HCLOUD_TOKEN": "x"}
    (tmp_path / "none.env").write_text("")
    done = subprocess.run([sys.executable, "bootstrap.py", "plan"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == "error: ADMIN_IPS must not contain 0.0.0.0/0 (SSH open to the world); list your own CIDRs\n"


@pytest.mark.parametrize("request_line", ["POST /placement_groups", r"DELETE /placement_groups/\d+"])
def test_a_lost_answer_about_the_lock_is_looked_up_not_sent_again(tmp_path, started, request_line):
    """The first of these in an apply takes the lock (cloud/lock.py) and releases it; its labels tell the
    taker whether a lock whose answer was lost is its own."""
    fake = started(faults=Faults(lose_answers={request_line: 1}))
    h = Harness(tmp_path, fake, DOKKU_SERVERS="2")
    result = h.run("apply", "--yes")
    assert result.code == 0, result.err
    [lost] = [r for r in fake.requests if r["status"] == "drop"]
    assert '"lock":' in lost["body"] or lost["method"] == "DELETE"
    assert [r for r in fake.requests if (r["method"], r["path"], r["body"]) == (lost["method"], lost["path"], lost["body"])] == [lost]
    assert rejected(fake.requests) == []
    assert h.names("placement_groups") == ["mindroom-production-dokku-spread"], "the lock is released"
    assert_converged(h)
