"""The fake cloud itself keeps the API's promises that bootstrap relies on (spoken to through the real SDK)."""

import subprocess
import sys
import time
from pathlib import Path

import hcloud
import pytest
import requests
from hcloud.firewalls.domain import FirewallResource
from hcloud.images.domain import Image
from hcloud.locations.domain import Location
from hcloud.server_types.domain import ServerType

from tests.fakecloud import CloudHooks, FakeCloud, Faults, md5_fingerprint
from tests.fakecloud.harness import write_public_key
from tests.fakecloud.selectors import SelectorError, parse

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake(fake_cloud):
    return fake_cloud


def client_for(fake) -> hcloud.Client:
    return hcloud.Client(token="t", api_endpoint=fake.url, poll_interval=0.01)


@pytest.mark.parametrize("selector, matches", [
    ("env=prod", True), ("env==prod", True), ("env!=prod", False), ("env", True), ("!env", False),
    ("role in (dokku,platform)", True), ("role notin (dokku, platform)", False), ("missing!=x", True),
    ("env=prod,role in (db, dokku),!owner", True), ("env=prod,owner", False), ("", True),
])
def test_label_selectors(selector, matches):
    assert parse(selector)({"env": "prod", "role": "dokku"}) is matches


@pytest.mark.parametrize("selector", ["=x", "role in dokku", "a b", "env=pr od", "role in (a"])
def test_malformed_selectors_are_refused(selector, fake):
    with pytest.raises(SelectorError):
        parse(selector)
    with pytest.raises(hcloud.APIException) as error:
        client_for(fake).servers.get_all(label_selector=selector)
    assert error.value.code == "invalid_input"


def test_pagination_and_label_filtering(fake):
    client = client_for(fake)
    for index in range(60):
        client.placement_groups.create(name=f"pg-{index}", type="spread", labels={"n": str(index % 2)})
    assert len(client.placement_groups.get_all()) == 60
    pages = [r["query"]["page"] for r in fake.requests if r["path"] == "/placement_groups" and r["method"] == "GET"]
    assert pages == [["1"], ["2"]]
    page = client.placement_groups.get_list(page=2, per_page=25)
    assert page.meta.pagination.next_page == 3 and page.meta.pagination.total_entries == 60
    assert len(client.placement_groups.get_all(label_selector="n=1")) == 30


def test_error_envelopes(fake, tmp_path):
    client = client_for(fake)
    public_key = write_public_key(tmp_path / "k.pub")
    key = client.ssh_keys.create(name="k", public_key=public_key)
    assert key.fingerprint == md5_fingerprint(public_key)
    for call, code in (
        (lambda: client.ssh_keys.create(name="k", public_key=write_public_key(tmp_path / "2.pub")), "uniqueness_error"),
        (lambda: client.ssh_keys.create(name="k2", public_key=public_key), "uniqueness_error"),
        (lambda: client.servers.get_by_id(424242), "not_found"),
        (lambda: client.servers.create(name="s", server_type=ServerType(name="nope"), image=Image(name="debian-13")),
         "invalid_input"),
    ):
        with pytest.raises(hcloud.APIException) as error:
            call()
        assert error.value.code == code
    statuses = [entry["status"] for entry in fake.requests[-4:]]
    assert statuses == [409, 409, 404, 400]


def test_protection_locking_and_action_progress(tmp_path):
    fake = FakeCloud(action_latency=0.3)
    fake.start()
    try:
        client = client_for(fake)
        created = client.servers.create(name="s", server_type=ServerType(name="cpx11"), image=Image(name="debian-13"),
                                        location=Location(name="nbg1"))
        time.sleep(0.1)
        action = client.actions.get_by_id(created.action.id)
        assert action.status == "running" and 0 < action.progress < 100
        with pytest.raises(hcloud.APIException) as locked:
            client.servers.power_off(created.server)
        assert locked.value.code == "locked"
        created.action.wait_until_finished()
        assert client.servers.get_by_id(created.server.id).status == "running"
        client.servers.change_protection(created.server, delete=True, rebuild=True).wait_until_finished()
        with pytest.raises(hcloud.APIException) as protected:
            client.servers.delete(created.server)
        assert protected.value.code == "protected"
    finally:
        fake.stop()


class SlowHooks(CloudHooks):
    def __init__(self):
        self.seen = []

    def server_created(self, server_id, name, labels, public_keys):
        time.sleep(0.1)
        return {"ipv4": "10.213.0.11", "ipv6": "fd00:213::1"}

    def volume_created(self, volume_id, size_gb):
        raise RuntimeError("no loop device left")


def test_hooks_run_while_the_action_runs_and_set_the_outcome():
    fake = FakeCloud(hooks=SlowHooks())
    fake.start()
    try:
        client = client_for(fake)
        created = client.servers.create(name="s", server_type=ServerType(name="cpx11"), image=Image(name="debian-13"))
        assert client.actions.get_by_id(created.action.id).status == "running"
        created.action.wait_until_finished()
        server = client.servers.get_by_id(created.server.id)
        assert server.public_net.ipv4.ip == "10.213.0.11" and server.public_net.ipv6.ip == "fd00:213::/64"
        volume = client.volumes.create(size=10, name="v", location=Location(name="nbg1"))
        with pytest.raises(hcloud.actions.ActionFailedException):
            volume.action.wait_until_finished()
        assert "no loop device left" in client.actions.get_by_id(volume.action.id).error["message"]
    finally:
        fake.stop()


def test_state_survives_a_restart_and_running_actions_finish(tmp_path):
    state = tmp_path / "cloud.json"
    first = FakeCloud(state_file=state, action_latency=60)
    first.start()
    created = client_for(first).servers.create(name="s", server_type=ServerType(name="cpx11"),
                                               image=Image(name="debian-13"))
    first.crash()
    second = FakeCloud(state_file=state)
    second.start()
    try:
        client = client_for(second)
        assert client.actions.get_by_id(created.action.id).status == "success"
        assert [s.status for s in client.servers.get_all()] == ["running"]
        assert client.placement_groups.create(name="pg", type="spread").placement_group.id > created.server.id
    finally:
        second.stop()


def test_daemon_prints_its_url_and_loads_hooks(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakecloud", "--listen", "127.0.0.1:0", "--state", str(tmp_path / "s.json"),
         "--hooks", "tests.fakecloud.hooks:CloudHooks"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        client = hcloud.Client(token="t", api_endpoint=url)
        client.networks.create(name="n", ip_range="10.0.0.0/16")
        assert [n.name for n in client.networks.get_all()] == ["n"]
        assert (tmp_path / "s.json").exists()
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


# The Hetzner Cloud API reference (its OpenAPI document, as mirrored in github.com/api-evangelist/hetzner,
# openapi/_original/hetzner-openapi.yml): a Placement Group's name "Must be unique per Project", a violation is
# 409 `uniqueness_error`; labels: a key is an optional DNS-subdomain prefix + "/" + a name, the name and the value
# "63 characters or less ... beginning and ending with an alphanumeric character ([a-z0-9A-Z]) with dashes (-),
# underscores (_), dots (.), and alphanumerics between" (a value may be empty); "The hetzner.cloud/ prefix is
# reserved". cloud/lock.py relies on the first (creating the lock is atomic) and writes its labels by the rest.
def test_a_second_placement_group_of_the_same_name_is_refused(fake):
    client = client_for(fake)
    client.placement_groups.create(name="mindroom-production-lock", type="spread")
    with pytest.raises(hcloud.APIException) as error:
        client.placement_groups.create(name="mindroom-production-lock", type="spread")
    assert error.value.code == "uniqueness_error" and fake.requests[-1]["status"] == 409
    assert [group.name for group in client.placement_groups.get_all()] == ["mindroom-production-lock"]


@pytest.mark.parametrize("labels, valid", [
    ({"since": "20261201T220005Z", "host": "my-host.example.com", "empty": "", "user": "a_b"}, True),
    ({"example.com/my": "label", "a" * 63: "b" * 63}, True),
    ({"since": "2026-12-01T22:00:05Z"}, False), ({"holder": "alice@laptop"}, False), ({"v": "b" * 64}, False),
    ({"v": "-x"}, False), ({"v": "x."}, False), ({"v": "a/b"}, False), ({"hetzner.cloud/x": "y"}, False),
    ({"Bad_Prefix/x": "y"}, False), ({"/x": "y"}, False), ({"-k": "v"}, False),
])
def test_label_rules(fake, labels, valid):
    client = client_for(fake)
    if valid:
        assert client.placement_groups.create(name="pg", type="spread", labels=labels).placement_group.labels == labels
        return
    with pytest.raises(hcloud.APIException) as error:
        client.placement_groups.create(name="pg", type="spread", labels=labels)
    assert error.value.code == "invalid_input"


@pytest.mark.parametrize("command, call", [
    ("set_rules", lambda client, fw, server: client.firewalls.set_rules(fw, [])),
    ("apply_to_resources", lambda client, fw, server: client.firewalls.apply_to_resources(
        fw, [FirewallResource(type="server", server=server)])),
])
def test_a_failed_firewall_action_answers_like_the_real_one(fake, command, call):
    """Hetzner answers these firewall actions with a list, {"actions": [...]} (hcloud-python 2.27,
    hcloud/firewalls/client.py reads response["actions"]); an injected failure must too."""
    client = client_for(fake)
    server = client.servers.create(name="s", server_type=ServerType(name="cpx11"), image=Image(name="debian-13"))
    server.action.wait_until_finished()
    firewall = client.firewalls.create(name="fw").firewall
    fake.fail_next(command)
    actions = call(client, firewall, server.server)
    assert len(actions) == 1
    with pytest.raises(hcloud.actions.ActionFailedException):
        actions[0].wait_until_finished()
    assert client.firewalls.get_by_id(firewall.id).applied_to == [], "a failed action changed nothing"


def test_a_500_fault_is_an_api_error_not_a_dropped_connection():
    fake = FakeCloud(faults=Faults(rate=1.0, statuses=(500,)))
    fake.start()
    try:
        with pytest.raises(hcloud.APIException) as error:
            hcloud.Client(token="t", api_endpoint=fake.url).networks.get_all()
        assert (error.value.code, error.value.message) == ("server_error", "internal server error")
        assert {entry["status"] for entry in fake.requests} == {500}
    finally:
        fake.stop()


def test_faults_the_fake_cannot_inject_are_refused():
    with pytest.raises(ValueError, match="cannot inject"):
        Faults(rate=0.1, statuses=(418,))


@pytest.mark.parametrize("how, error, carried_out", [
    ("reset", "ConnectionResetError", False), ("drop", "IncompleteRead", True), ("late", "ReadTimeoutError", True),
])
def test_connection_faults_break_the_connection_the_way_they_say(how, error, carried_out):
    fake = FakeCloud(faults=Faults(rate=1.0, statuses=(how,), timeout_delay=0.5))
    fake.start()
    try:
        with pytest.raises(requests.RequestException) as raised:
            requests.post(f"{fake.url}/networks", json={"name": "n", "ip_range": "10.0.0.0/16"},
                          headers={"Authorization": "Bearer t"}, timeout=0.2)
        assert error in repr(raised.value)
        assert [n["name"] for n in fake.resources("networks")] == (["n"] if carried_out else [])
    finally:
        fake.stop()


def test_actions_are_listed_per_resource_and_per_kind_with_a_status_filter():
    """bootstrap waits for running actions after a lost answer. The endpoints as hcloud-python 2.27 calls them:
    ServersClient.get_actions -> GET /servers/{id}/actions, ServersClient.actions (a ResourceActionsClient for
    "/servers") -> GET /servers/actions, both with ?status= (hcloud/servers/client.py, hcloud/actions/client.py)."""
    fake = FakeCloud(action_latency=0.3)
    fake.start()
    try:
        client = client_for(fake)
        created = client.servers.create(name="s", server_type=ServerType(name="cpx11"), image=Image(name="debian-13"))
        client.networks.create(name="n", ip_range="10.0.0.0/16")
        running = client.servers.get_actions(created.server, status=["running"])
        assert [a.id for a in running] == [created.action.id] and running[0].command == "create_server"
        assert [a.id for a in client.servers.actions.get_all(status=["running"])] == [created.action.id]
        assert client.volumes.actions.get_all() == []
        created.action.wait_until_finished()
        assert client.servers.get_actions(created.server, status=["running"]) == []
        assert [a.status for a in client.servers.get_actions(created.server)] == ["success"]
    finally:
        fake.stop()
