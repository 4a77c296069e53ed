"""bootstrap.py against the fake Hetzner Cloud, driven only through the real hcloud SDK."""

import importlib
import json
import socket
import stat
import sys
import threading

import pytest
from hcloud.firewalls.domain import FirewallResource, FirewallRule
from hcloud.images.domain import Image
from hcloud.server_types.domain import ServerType
from hcloud.zones.domain import ZoneRecord

from cloud.desired import md5_fingerprint
from cloud.probe import answers_ssh
from tests.fakecloud import FakeCloud
from tests.fakecloud.harness import Harness, RecordingHooks, write_public_key
from tests.fakestripe.seed import ensure_prices

DOKKU1, PLATFORM = "mindroom-production-dokku-1", "mindroom-production-platform"


@pytest.fixture
def hooks():
    return RecordingHooks()


@pytest.fixture
def fake(hooks):
    cloud = FakeCloud(hooks=hooks)
    hooks.fake = cloud
    cloud.start()
    yield cloud
    cloud.stop()


@pytest.fixture
def h(tmp_path, fake):
    return Harness(tmp_path, fake)


@pytest.fixture
def applied(h):
    result = h.run("apply", "--yes")
    assert result.code == 0, result.err
    return h


def rows(output: str, kind: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip().startswith(kind + " ")]


def test_plan_on_an_empty_project_lists_every_resource_and_changes_nothing(h):
    result = h.run("plan")
    assert result.code == 2, result.err
    assert result.mutations == []
    created = "\n".join(rows(result.out, "create"))
    for name in ("mindroom-production-admin", "mindroom-production-network",
                 "mindroom-production-dokku ", "mindroom-production-platform ", "mindroom-production-dokku-spread",
                 DOKKU1, PLATFORM, f"{DOKKU1}-data", f"{PLATFORM}-data", "attach to network at 10.0.1.10",
                 "attach to network at 10.0.1.20"):
        assert name in created + " ", name
    assert h.fake.resources("servers") == []


def test_apply_creates_what_the_spec_asks(applied, hooks):
    h = applied
    admin_ips, anywhere = ["203.0.113.7/32"], ["0.0.0.0/0", "::/0"]
    servers = {s["name"]: s for s in h.fake.resources("servers")}
    assert sorted(servers) == [DOKKU1, PLATFORM]
    firewalls = {f["name"]: f for f in h.fake.resources("firewalls")}
    network = h.by_name("networks", "mindroom-production-network")
    assert network["ip_range"] == "10.0.0.0/16"
    assert [(s["ip_range"], s["network_zone"]) for s in network["subnets"]] == [("10.0.1.0/24", "eu-central")]
    for name, role, server_type, ip, size, ports in (
        (DOKKU1, "dokku", "cpx31", "10.0.1.10", 200, ["80", "443", "8448"]),
        (PLATFORM, "platform", "cpx21", "10.0.1.20", 50, ["80", "443"]),
    ):
        server = servers[name]
        assert server["labels"] == {"managed-by": "mindroom-infra", "project": "mindroom",
                                    "environment": "production", "role": role}
        assert (server["server_type"]["name"], server["image"]["name"], server["location"]["name"]) == (
            server_type, "debian-13", "nbg1")
        assert [(n["network"], n["ip"]) for n in server["private_net"]] == [(network["id"], ip)]
        assert server["backup_window"] and server["protection"] == {"delete": True, "rebuild": True}
        assert server["public_net"]["ipv4"] and server["public_net"]["ipv6"]
        firewall = firewalls[f"mindroom-production-{role}"]
        assert [fw["id"] for fw in server["public_net"]["firewalls"]] == [firewall["id"]]
        rules = {(r["port"], tuple(r["source_ips"])) for r in firewall["rules"]}
        assert rules == {("22", tuple(admin_ips))} | {(port, tuple(anywhere)) for port in ports}
        volume = h.by_name("volumes", f"{name}-data")
        assert (volume["server"], volume["size"], volume["protection"]["delete"]) == (server["id"], size, True)
    group = h.by_name("placement_groups", "mindroom-production-dokku-spread")
    assert group["type"] == "spread" and group["servers"] == [servers[DOKKU1]["id"]]
    assert servers[PLATFORM]["placement_group"] is None
    # Hetzner puts a server's creation keys into root's authorized_keys: the admin key only, never the
    # provisioner's (it may run dokku only, see tasks/keys.py)
    keys = {call[1][1]: call[1][3] for call in hooks.named("server_created")}
    assert keys == {DOKKU1: [h.admin_key], PLATFORM: [h.admin_key]}
    assert h.names("ssh_keys") == ["mindroom-production-admin"]
    assert all("create_server" in call[2] for call in hooks.named("server_created")), "hook ran while action ran"


def test_outputs_file_is_private_and_feeds_the_inventory(applied, monkeypatch):
    h = applied
    path = h.tmp_path / "outputs.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    outputs = json.loads(path.read_text())
    dokku = outputs["servers"][0]
    volume = h.by_name("volumes", f"{DOKKU1}-data")
    assert dokku["name"] == DOKKU1 and dokku["role"] == "dokku" and dokku["private_ip"] == "10.0.1.10"
    assert dokku["volume"] == {"id": volume["id"], "name": volume["name"], "size": 200,
                               "device": f"/dev/disk/by-id/scsi-0HC_Volume_{volume['id']}"}
    assert dokku["ipv6"].endswith("::1") and outputs["network_id"] == h.by_name("networks", "mindroom-production-network")["id"]
    for name, value in h.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delitem(sys.modules, "inventory", raising=False)
    inventory = importlib.import_module("inventory")  # what pyinfra loads, reading the same file
    assert [name for name, _ in inventory.dokku] == [DOKKU1]
    assert inventory.platform[0][1]["private_ip"] == "10.0.1.20"
    assert inventory.dokku[0][1]["volume_device"] == dokku["volume"]["device"]
    shown = h.run("output", "--json")
    assert json.loads(shown.out) == outputs and shown.mutations == []


def test_second_apply_sends_no_mutating_request_and_plan_exits_0(applied):
    again = applied.run("apply")  # no --yes: nothing to ask when in sync
    assert again.code == 0 and again.mutations == [], again.mutations
    plan = applied.run("plan")
    assert plan.code == 0 and not rows(plan.out, "create") and not rows(plan.out, "update")


def test_drift_is_reconciled(applied):
    h = applied
    client = h.client()
    server = client.servers.get_by_name(DOKKU1)
    firewall = client.firewalls.get_by_name("mindroom-production-dokku")
    client.firewalls.set_rules(firewall, [FirewallRule(direction="in", protocol="tcp", port="22",
                                                       source_ips=["0.0.0.0/0", "::/0"])])
    client.servers.update(server, labels={**server.labels, "role": "wrong", "owner": "ops"})
    client.servers.disable_backup(server).wait_until_finished()
    client.servers.change_protection(server, delete=False, rebuild=False).wait_until_finished()
    client.servers.detach_from_network(server, client.networks.get_by_name("mindroom-production-network")).wait_until_finished()
    volume = client.volumes.get_by_name(f"{DOKKU1}-data")
    client.volumes.detach(volume).wait_until_finished()
    client.firewalls.remove_from_resources(client.firewalls.get_by_name("mindroom-production-platform"), [
        __import__("hcloud.firewalls.domain", fromlist=["x"]).FirewallResource(
            type="server", server=client.servers.get_by_name(PLATFORM))])

    plan = h.run("plan")
    assert plan.code == 2
    updates = "\n".join(rows(plan.out, "update"))
    for expected in ("rules -> 22 from 203.0.113.7/32", "role=wrong -> dokku", "enable backups",
                     "enable delete protection", "attach to network at 10.0.1.10", f"attach to {DOKKU1}",
                     "apply firewall mindroom-production-platform"):
        assert expected in updates, expected
    assert h.run("apply", "--yes").code == 0
    reconciled = h.by_name("servers", DOKKU1)
    assert reconciled["labels"]["role"] == "dokku" and reconciled["labels"]["owner"] == "ops"
    assert reconciled["backup_window"] and reconciled["protection"]["delete"]
    assert [n["ip"] for n in reconciled["private_net"]] == ["10.0.1.10"]
    assert h.by_name("volumes", f"{DOKKU1}-data")["server"] == reconciled["id"]
    assert {r["port"]: r["source_ips"] for r in h.by_name("firewalls", "mindroom-production-dokku")["rules"]}["22"] == [
        "203.0.113.7/32"]
    assert h.by_name("servers", PLATFORM)["public_net"]["firewalls"]
    assert h.run("plan").code == 0


def test_scale_out_from_1_to_3_and_back_never_deletes(applied):
    h = applied
    plan = h.run("plan", DOKKU_SERVERS="3")
    created = [row for row in rows(plan.out, "create") if row.split()[1] == "server" and "debian-13" in row]
    assert plan.code == 2 and len(created) == 2 and DOKKU1 not in "".join(created)
    assert h.run("apply", "--yes", DOKKU_SERVERS="3").code == 0
    servers = {s["name"]: s for s in h.fake.resources("servers")}
    ips = {name: s["private_net"][0]["ip"] for name, s in servers.items()}
    assert ips == {DOKKU1: "10.0.1.10", "mindroom-production-dokku-2": "10.0.1.11",
                   "mindroom-production-dokku-3": "10.0.1.12", PLATFORM: "10.0.1.20"}
    assert len(h.by_name("placement_groups", "mindroom-production-dokku-spread")["servers"]) == 3
    assert len(h.fake.resources("volumes")) == 4
    assert h.run("plan", DOKKU_SERVERS="3").code == 0
    back = h.run("apply", "--yes", DOKKU_SERVERS="1")
    assert back.code == 0 and back.mutations == []
    assert len(rows(back.out, "warning")) == 4 and len(h.fake.resources("servers")) == 4


def test_vertical_resize_uses_change_type_keeping_the_disk(applied, hooks):
    h = applied
    plan = h.run("plan", DOKKU_SERVER_TYPE="cpx41")
    assert plan.code == 2 and any("cpx31 -> cpx41" in row for row in rows(plan.out, "resize"))
    result = h.run("apply", "--yes", DOKKU_SERVER_TYPE="cpx41")
    assert result.code == 0, result.err
    server_id = h.by_name("servers", DOKKU1)["id"]
    calls = [(r["path"].rsplit("/", 1)[-1], r["body"]) for r in result.changes]
    assert [c for c, _ in calls] == ["shutdown", "change_type", "poweron"]
    assert json.loads(calls[1][1])["upgrade_disk"] is False
    server = h.by_name("servers", DOKKU1)
    assert (server["server_type"]["name"], server["primary_disk_size"], server["status"]) == ("cpx41", 160, "running")
    assert [call[1] for call in hooks.named("server_powered")] == [(server_id, False), (server_id, True)]
    assert h.run("apply", "--yes").code == 0  # back to cpx31: possible because the disk was kept
    assert h.by_name("servers", DOKKU1)["server_type"]["name"] == "cpx31"
    smaller = h.run("plan", DOKKU_SERVER_TYPE="cpx21")  # 80 GB disk < 160 GB
    assert smaller.code == 0 and any("smaller than the server's 160 GB" in row for row in rows(smaller.out, "warning"))


def test_volume_grows_and_never_shrinks(applied):
    h = applied
    grown = h.run("apply", "--yes", DOKKU_VOLUME_SIZE="300")
    assert grown.code == 0 and [r["path"].rsplit("/", 1)[-1] for r in grown.changes] == ["resize"]
    assert h.by_name("volumes", f"{DOKKU1}-data")["size"] == 300
    shrink = h.run("apply", "--yes", DOKKU_VOLUME_SIZE="250")
    assert shrink.code == 0 and shrink.mutations == []
    assert any("cannot shrink" in row for row in rows(shrink.out, "warning"))


@pytest.mark.parametrize("overrides, warning", [
    ({"SERVER_IMAGE": "ubuntu-24.04"}, "not rebuilt"),
    ({"LOCATION": "fsn1"}, "cannot move"),
])
def test_fields_that_cannot_change_in_place_are_warnings(applied, overrides, warning):
    result = applied.run("apply", "--yes", **overrides)
    assert result.code == 0 and result.mutations == []
    assert any(warning in row for row in rows(result.out, "warning"))
    assert applied.run("plan", **overrides).code == 0


def make_decoys(h):
    client = h.client()
    other_key = write_public_key(h.tmp_path / "other.pub")
    key = client.ssh_keys.create(name="someone-else", public_key=other_key)
    from hcloud.images.domain import Image
    from hcloud.server_types.domain import ServerType

    staging = {"managed-by": "mindroom-infra", "project": "mindroom", "environment": "staging", "role": "dokku"}
    server = client.servers.create(name="mindroom-staging-dokku-1", server_type=ServerType(name="cx22"),
                                   image=Image(name="debian-12"), ssh_keys=[key], labels=staging)
    server.action.wait_until_finished()
    client.volumes.create(size=10, name="customer-backup", location=client.locations.get_by_name("nbg1"),
                          labels={"project": "mindroom"}).action.wait_until_finished()
    client.networks.create(name="office", ip_range="10.9.0.0/16", labels={"managed-by": "someone-else"})
    client.firewalls.create(name="mindroom-production-extra", labels={"environment": "production"})
    return {kind: h.fake.resources(kind) for kind in ("servers", "volumes", "networks", "firewalls", "ssh_keys")}


def test_destroy_keeps_volumes_and_decoys_and_apply_reuses_the_volumes(h):
    decoys = make_decoys(h)
    assert h.run("apply", "--yes").code == 0
    refused = h.run("destroy", stdin="prod\n")
    assert refused.code == 1 and refused.changes == [] and len(h.fake.resources("servers")) == 3
    assert h.names("placement_groups") == ["mindroom-production-dokku-spread"], "the lock is released"
    result = h.run("destroy", stdin="production\n")
    assert result.code == 0, result.err
    for kind, before in decoys.items():
        remaining = {item["id"] for item in h.fake.resources(kind)}
        assert {item["id"] for item in before} <= remaining, kind
    assert h.names("servers") == ["mindroom-staging-dokku-1"]
    assert h.names("networks") == ["office"] and h.names("placement_groups") == []
    assert h.names("ssh_keys") == ["someone-else"]
    kept = [v for v in h.fake.resources("volumes") if v["name"].startswith("mindroom-production")]
    assert len(kept) == 2 and all(v["protection"]["delete"] and v["server"] is None for v in kept)
    assert h.run("apply", "--yes").code == 0  # new servers, the same volumes (and data) attached again
    assert {h.by_name("volumes", v["name"])["id"] for v in kept} == {v["id"] for v in kept}
    assert all(h.by_name("volumes", v["name"])["server"] for v in kept)


def test_destroy_with_volumes_deletes_only_what_it_owns(h):
    decoys = make_decoys(h)
    assert h.run("apply", "--yes").code == 0
    result = h.run("destroy", "--yes", "--include-volumes")
    assert result.code == 0, result.err
    for kind, before in decoys.items():
        assert sorted(item["name"] for item in before) == h.names(kind), kind
    assert h.run("destroy", "--yes").code == 0  # nothing left: still fine


def test_an_admin_key_already_in_the_project_is_adopted_not_duplicated(h):
    client = h.client()
    mine = client.ssh_keys.create(name="alice@laptop", public_key=h.admin_key)
    plan = h.run("plan")
    assert "adopted" in plan.out and "create  ssh key          mindroom-production-admin" not in plan.out
    assert h.run("apply", "--yes").code == 0
    assert h.names("ssh_keys") == ["alice@laptop"]
    assert h.by_name("ssh_keys", "alice@laptop")["labels"] == {}
    assert h.run("destroy", "--yes").code == 0
    assert [k["id"] for k in h.fake.resources("ssh_keys")] == [mine.id]


def test_staging_and_production_never_collide(h):
    assert h.run("apply", "--yes").code == 0
    staging = h.run("apply", "--yes", ENVIRONMENT="staging", OUTPUTS_FILE=str(h.tmp_path / "staging.json"))
    assert staging.code == 0, staging.err
    assert "adopted" not in staging.out or "mindroom-production-admin" in staging.out
    assert len(h.fake.resources("servers")) == 4 and len(h.fake.resources("networks")) == 2
    assert h.run("destroy", "--yes", "--include-volumes", ENVIRONMENT="staging").code == 0
    assert h.run("plan").code == 0 and len(h.fake.resources("servers")) == 2


def test_no_secret_reaches_user_data_output_or_the_api(h, fake_stripe):
    secrets = {"STRIPE_SECRET_KEY": "sk_live_DO_NOT_LEAK", "STRIPE_WEBHOOK_SECRET": "whsec_DO_NOT_LEAK",
               "SUPABASE_SERVICE_KEY": "supabase-DO-NOT-LEAK", "REGISTRY_TOKEN": "registry-DO-NOT-LEAK",
               "SUPABASE_URL": "https://secret-project.supabase.co", "HCLOUD_TOKEN": "hcloud-DO-NOT-LEAK"}
    h.env.update(secrets, STRIPE_API_BASE=fake_stripe.url, SECRETS_DIR=str(h.tmp_path / "secrets"),
                 **ensure_prices(fake_stripe.url, secrets["STRIPE_SECRET_KEY"]))
    results = [h.run(*argv) for argv in (["plan"], ["apply", "--yes"], ["output"], ["output", "--json"])]
    [endpoint] = fake_stripe.objects("webhook_endpoints")
    results += [h.run(*argv) for argv in (["destroy", "--yes"], ["plan"])]
    assert results[1].code == 0
    texts = [r.out + r.err for r in results] + [(h.tmp_path / "outputs.json").read_text()]
    texts += [entry["body"] for r in results for entry in r.requests]
    texts += [entry["body"] + entry["query"] for entry in fake_stripe.requests]
    for value in [*secrets.values(), endpoint["secret"]]:
        assert not any(value in text for text in texts), value
    with h.fake.cloud.lock:
        assert all(s.get("_user_data") is None for s in h.fake.cloud.state["servers"].values())


def test_plan_exit_codes(h):
    assert h.run("plan").code == 2
    assert h.run("apply", "--yes").code == 0
    assert h.run("plan").code == 0
    h.fake.token = "the-real-token"
    denied = h.run("plan")
    assert denied.code == 1 and "unauthorized" in denied.err and len(denied.err.strip().splitlines()) == 1


def test_apply_asks_before_changing_anything(h):
    declined = h.run("apply", stdin="no\n")
    assert declined.code == 1 and declined.changes == []
    assert h.names("placement_groups") == [], "the lock taken before asking is released"
    accepted = h.run("apply", stdin="yes\n")
    assert accepted.code == 0 and accepted.mutations


def test_dns_records_are_created_and_reconciled_in_the_zone(h, hooks):
    client = h.client()
    zone = client.zones.create(name="mindroom.test", mode="primary").zone
    client.zones.create_rrset(zone, name="www", type="CNAME", records=[ZoneRecord(value="mindroom.test.")])
    result = h.run("apply", "--yes", DNS_ZONE="mindroom.test", MATRIX_FEDERATION="true")
    assert result.code == 0, result.err
    platform, dokku = h.by_name("servers", PLATFORM), h.by_name("servers", DOKKU1)
    rrsets = {(r.name, r.type): [x.value for x in r.records] for r in client.zones.get_rrset_all(zone)}
    p4, d4 = platform["public_net"]["ipv4"]["ip"], dokku["public_net"]["ipv4"]["ip"]
    assert rrsets == {
        ("@", "A"): [p4], ("@", "AAAA"): [platform["public_net"]["ipv6"]["ip"].split("/")[0] + "1"],
        ("app", "A"): [p4], ("admin", "A"): [p4], ("api", "A"): [p4], ("webhooks", "A"): [p4],
        ("*", "A"): [d4], ("*", "AAAA"): [dokku["public_net"]["ipv6"]["ip"].split("/")[0] + "1"],
        ("*.m", "A"): [d4], ("www", "CNAME"): ["mindroom.test."],
    }
    last = hooks.named("dns_rrsets_changed")[-1][1]
    assert last[0] == "mindroom.test" and {"name": "*.m", "type": "A", "records": [d4]} in last[1]
    client.zones.set_rrset_records(client.zones.get_rrset(zone, "app", "A"), [ZoneRecord(value="192.0.2.1")])
    plan = h.run("plan", DNS_ZONE="mindroom.test")  # matrix off now: *.m is ours and goes
    assert plan.code == 2 and any("192.0.2.1 -> " + p4 in row for row in rows(plan.out, "update"))
    assert any("A *.m" in row for row in rows(plan.out, "delete"))
    assert h.run("apply", "--yes", DNS_ZONE="mindroom.test").code == 0
    assert h.run("plan", DNS_ZONE="mindroom.test").code == 0
    assert h.run("destroy", "--yes", DNS_ZONE="mindroom.test").code == 0
    assert [(r.name, r.type) for r in client.zones.get_rrset_all(zone)] == [("www", "CNAME")]


def test_without_a_zone_output_lists_the_records_to_create(applied):
    result = applied.run("output", DNS_ZONE="mindroom.test")  # set, but no such zone in the project
    assert result.code == 0 and "DNS records to create" in result.out
    assert "*.mindroom.test" in result.out and "app.mindroom.test" in result.out
    assert not any("/zones/" in r["path"] for r in result.requests if r["method"] != "GET")


def _key_requests(result) -> list[tuple[str, str]]:
    """The run's mutations of SSH keys (the environment's lock is a placement group, taken and released too)."""
    return [(r["method"], "ssh_keys") for r in result.mutations if r["path"].split("/")[1] == "ssh_keys"]


def test_admin_key_rotation_adds_the_new_key_then_promotes_it_and_never_touches_a_server(applied, hooks):
    """README "Rotating the admin key": the new key is added as an extra admin key (a Hetzner key of its own,
    given to servers created from then on), then promoted; the old one goes. No server is changed either time:
    Hetzner uses keys only at creation, and root's authorized_keys is the deploy's."""
    h = applied
    new_key = write_public_key(h.tmp_path / "new.pub", "new-laptop")
    extra = {"SSH_EXTRA_PUBLIC_KEY_PATHS": str(h.tmp_path / "new.pub")}
    extra_name = f"mindroom-production-admin-{md5_fingerprint(new_key).replace(':', '')[:8]}"
    plan = h.run("plan", **extra)
    assert plan.code == 2 and rows(plan.out, "delete") == [] and rows(plan.out, "warning") == []
    [created] = rows(plan.out, "create")
    assert created.split()[:3] == ["create", "ssh", "key"] and extra_name in created
    assert "SSH_EXTRA_PUBLIC_KEY_PATHS" in created and "existing ones get it from the deploy" in created
    added = h.run("apply", "--yes", DOKKU_SERVERS="2", **extra)  # a server created now gets both keys
    assert added.code == 0, added.err
    assert h.names("ssh_keys") == ["mindroom-production-admin", extra_name]
    new_id = h.by_name("ssh_keys", extra_name)["id"]
    created_keys = {call[1][1]: call[1][3] for call in hooks.named("server_created")}
    assert created_keys["mindroom-production-dokku-2"] == [h.admin_key, new_key]
    assert h.run("plan", DOKKU_SERVERS="2", **extra).code == 0

    promoted = {"SSH_PUBLIC_KEY_PATH": str(h.tmp_path / "new.pub"), "DOKKU_SERVERS": "2"}
    plan = h.run("plan", **promoted)
    assert plan.code == 2 and rows(plan.out, "create") == [] and rows(plan.out, "warning") == []
    [deleted] = rows(plan.out, "delete")
    assert "mindroom-production-admin " in deleted and md5_fingerprint(h.admin_key) in deleted
    [renamed] = rows(plan.out, "update")
    assert extra_name in renamed and "rename to mindroom-production-admin (SSH_PUBLIC_KEY_PATH)" in renamed
    done = h.run("apply", "--yes", **promoted)
    assert done.code == 0, done.err
    assert _key_requests(done) == [("DELETE", "ssh_keys"), ("PUT", "ssh_keys")]
    assert not any(r["path"].startswith(("/servers", "/volumes")) for r in done.mutations)
    key = h.by_name("ssh_keys", "mindroom-production-admin")
    assert (key["id"], key["public_key"]) == (new_id, new_key) and len(h.fake.resources("ssh_keys")) == 1
    assert h.run("plan", **promoted).code == 0


def test_swapping_the_admin_key_with_an_extra_one_renames_both(applied):
    h = applied
    new_key = write_public_key(h.tmp_path / "new.pub", "new-laptop")
    assert h.run("apply", "--yes", SSH_EXTRA_PUBLIC_KEY_PATHS=str(h.tmp_path / "new.pub")).code == 0
    ids = {key["public_key"]: key["id"] for key in h.fake.resources("ssh_keys")}
    swapped = {"SSH_PUBLIC_KEY_PATH": str(h.tmp_path / "new.pub"),
               "SSH_EXTRA_PUBLIC_KEY_PATHS": str(h.tmp_path / "admin.pub")}
    done = h.run("apply", "--yes", **swapped)
    assert done.code == 0, done.err
    assert _key_requests(done) == [("PUT", "ssh_keys"), ("PUT", "ssh_keys")]
    assert {key["public_key"]: key["id"] for key in h.fake.resources("ssh_keys")} == ids
    assert h.by_name("ssh_keys", "mindroom-production-admin")["public_key"] == new_key
    assert h.run("plan", **swapped).code == 0


def test_switching_the_admin_key_in_one_step_replaces_the_key_and_warns(applied):
    h = applied
    new_key = write_public_key(h.tmp_path / "admin.pub", "new-laptop")
    plan = h.run("plan")
    assert plan.code == 2
    assert any("mindroom-production-admin" in row for row in rows(plan.out, "delete"))
    [warning] = rows(plan.out, "warning")
    assert "the 2 existing servers were not created with it" in warning and "README: rotating the admin key" in warning
    done = h.run("apply", "--yes")
    assert done.code == 0 and _key_requests(done) == [("DELETE", "ssh_keys"), ("POST", "ssh_keys")]
    assert h.by_name("ssh_keys", "mindroom-production-admin")["public_key"] == new_key
    assert len(h.fake.resources("ssh_keys")) == 1 and len(h.fake.resources("servers")) == 2
    assert h.run("plan").code == 0


def rrset_values(client, zone) -> dict:
    return {(r.name, r.type): ([x.value for x in r.records], r.labels) for r in client.zones.get_rrset_all(zone)}


def test_another_environment_with_the_same_domain_never_changes_its_dns_records(h):
    client = h.client()
    zone = client.zones.create(name="mindroom.test", mode="primary").zone
    assert h.run("apply", "--yes", DNS_ZONE="mindroom.test").code == 0
    production = rrset_values(client, zone)
    assert production[("app", "A")][1]["environment"] == "production"
    staging = {"ENVIRONMENT": "staging", "DNS_ZONE": "mindroom.test", "OUTPUTS_FILE": str(h.tmp_path / "staging.json")}

    plan = h.run("plan", **staging)
    conflicts = rows(plan.out, "conflict")
    assert plan.code == 1 and plan.mutations == []
    assert len(conflicts) == len(production) and any("A app.mindroom.test" in row for row in conflicts)
    assert all("belongs to environment production" in row for row in conflicts)
    assert plan.err == ("error: dns record A *.mindroom.test (and 7 more): belongs to environment production and is "
                        "never changed from ENVIRONMENT=staging; give this environment a DOMAIN of its own (e.g. "
                        "staging.<domain>) or unset DNS_ZONE; nothing was changed\n")
    applied = h.run("apply", "--yes", **staging)
    assert applied.code == 1 and applied.mutations == [], "refused before the first mutation (and the lock)"
    assert applied.err == plan.err and "Applied" not in applied.out
    assert h.names("servers") == [DOKKU1, PLATFORM]

    # staging with its own DOMAIN, in the same zone: its records sit beside production's
    own = {**staging, "DOMAIN": "staging.mindroom.test"}
    assert h.run("apply", "--yes", **own).code == 0
    assert h.run("destroy", "--yes", "--include-volumes", **own).code == 0
    assert rrset_values(client, zone) == production
    assert h.run("plan", DNS_ZONE="mindroom.test").code == 0


def test_inventory_refuses_the_outputs_of_another_environment(applied, monkeypatch):
    for name, value in {**applied.env, "ENVIRONMENT": "staging"}.items():
        monkeypatch.setenv(name, value)  # OUTPUTS_FILE still names production's file
    monkeypatch.delitem(sys.modules, "inventory", raising=False)
    with pytest.raises(SystemExit) as refused:
        importlib.import_module("inventory")
    path = applied.tmp_path / "outputs.json"
    assert refused.value.code == (f"error: OUTPUTS_FILE='{path}' belongs to environment 'production', not "
                                  "ENVIRONMENT='staging'; point OUTPUTS_FILE at this environment's file "
                                  "(python bootstrap.py output writes it)")


def test_destroy_never_strips_our_firewall_from_a_server_we_do_not_own(applied):
    h = applied
    client = h.client()
    theirs = client.servers.create(name="office-vpn", server_type=ServerType(name="cx22"), image=Image(name="debian-13"))
    theirs.action.wait_until_finished()
    dokku_firewall = client.firewalls.get_by_name("mindroom-production-dokku")
    for action in client.firewalls.apply_to_resources(dokku_firewall, [FirewallResource(type="server", server=theirs.server)]):
        action.wait_until_finished()

    plan = h.run("destroy", stdin="no\n")
    assert plan.code == 1 and plan.changes == []
    [warning] = [" ".join(row.split()) for row in rows(plan.out, "warning")]
    assert warning.startswith(f"warning firewall mindroom-production-dokku also applied to server office-vpn "
                              f"(id {theirs.server.id}), which bootstrap does not own: kept, and left on them")
    assert any("mindroom-production-platform" in row for row in rows(plan.out, "delete"))
    result = h.run("destroy", "--yes")
    assert result.code == 0, result.err
    assert not any("remove_from_resources" in r["path"] for r in result.mutations)
    assert h.names("servers") == ["office-vpn"] and h.names("firewalls") == ["mindroom-production-dokku"]
    assert [fw["id"] for fw in h.by_name("servers", "office-vpn")["public_net"]["firewalls"]] == [dokku_firewall.id]

    for action in client.firewalls.remove_from_resources(dokku_firewall, [FirewallResource(type="server", server=theirs.server)]):
        action.wait_until_finished()
    assert h.run("destroy", "--yes").code == 0 and h.names("firewalls") == []


def roll_events(hooks, h) -> list[tuple]:
    """Power changes and SSH probes, in the order they happened, by server name."""
    names = {s["id"]: s["name"] for s in h.fake.resources("servers")}
    by_ip = {s["public_net"]["ipv4"]["ip"]: s["name"] for s in h.fake.resources("servers")}
    events = []
    for name, args, _ in hooks.calls:
        if name == "server_powered":
            events.append((names[args[0]], "on" if args[1] else "off"))
        elif name == "ssh_probe":
            events.append((by_ip[args[0]], "answers" if args[1] else "silent"))
    return events


def test_a_type_change_rolls_one_server_at_a_time_each_after_the_last_answers_ssh(h, hooks):
    assert h.run("apply", "--yes", DOKKU_SERVERS="3").code == 0
    dokku = [f"mindroom-production-dokku-{n}" for n in (1, 2, 3)]
    plan = h.run("plan", DOKKU_SERVERS="3", DOKKU_SERVER_TYPE="cpx41")
    resizes = [" ".join(row.split()) for row in rows(plan.out, "resize")]
    assert [row.split()[2] for row in resizes] == dokku, "the order"
    assert resizes[0] == (f"resize server {dokku[0]} 1 of 3: cpx31 -> cpx41 keeping the 160 GB disk (so it can "
                          "shrink back); down from shutdown (power-off after 120 s) until it answers SSH again (at "
                          "most 300 s after power-on), the others running")
    assert f"{dokku[1]} 2 of 3, once {dokku[0]} answers SSH again: cpx31 -> cpx41" in resizes[1]
    assert f"{dokku[2]} 3 of 3, once {dokku[1]} answers SSH again: cpx31 -> cpx41" in resizes[2]

    ip = {s["name"]: s["public_net"]["ipv4"]["ip"] for s in h.fake.resources("servers")}
    h.ssh.unanswered[ip[dokku[0]]] = 2  # its sshd takes a while: dokku-2 must wait for it
    hooks.calls.clear()
    result = h.run("apply", "--yes", DOKKU_SERVERS="3", DOKKU_SERVER_TYPE="cpx41")
    assert result.code == 0, result.err
    assert roll_events(hooks, h) == [
        (dokku[0], "off"), (dokku[0], "on"), (dokku[0], "silent"), (dokku[0], "silent"), (dokku[0], "answers"),
        (dokku[1], "off"), (dokku[1], "on"), (dokku[1], "answers"),
        (dokku[2], "off"), (dokku[2], "on"), (dokku[2], "answers"),
    ]
    assert all(h.by_name("servers", name)["server_type"]["name"] == "cpx41" for name in dokku)


def test_a_failed_type_change_powers_the_server_on_again_and_stops_the_roll(h, hooks):
    assert h.run("apply", "--yes", DOKKU_SERVERS="2").code == 0
    dokku2 = h.by_name("servers", "mindroom-production-dokku-2")
    h.fake.fail_next("change_type")
    hooks.calls.clear()
    failed = h.run("apply", "--yes", DOKKU_SERVERS="2", DOKKU_SERVER_TYPE="cpx41")
    assert failed.code == 1 and len(failed.err.splitlines()) == 1
    assert failed.err.startswith("error: action change_type (") and "run apply again" in failed.err
    first = h.by_name("servers", DOKKU1)
    assert (first["server_type"]["name"], first["status"]) == ("cpx31", "running"), "powered on again"
    assert roll_events(hooks, h) == [(DOKKU1, "off"), (DOKKU1, "on")], "the roll stopped before dokku-2"
    assert not any(f"/servers/{dokku2['id']}/" in r["path"] for r in failed.mutations)
    assert h.by_name("servers", dokku2["name"])["status"] == "running"

    again = h.run("apply", "--yes", DOKKU_SERVERS="2", DOKKU_SERVER_TYPE="cpx41")
    assert again.code == 0, again.err
    assert {s["server_type"]["name"] for s in h.fake.resources("servers") if s["labels"]["role"] == "dokku"} == {"cpx41"}


def test_a_resized_server_that_does_not_answer_ssh_stops_the_roll(h, hooks, monkeypatch):
    monkeypatch.setattr("cloud.servers.SSH_WAIT_SECONDS", 0.2)
    assert h.run("apply", "--yes", DOKKU_SERVERS="2").code == 0
    first = h.by_name("servers", DOKKU1)
    address = first["public_net"]["ipv4"]["ip"]
    h.ssh.unanswered[address] = float("inf")
    result = h.run("apply", "--yes", DOKKU_SERVERS="2", DOKKU_SERVER_TYPE="cpx41")
    assert result.code == 1
    assert result.err == (f"error: {DOKKU1} was resized and powered on but does not answer SSH on {address}:22 after "
                          "0.2 s: the rolling resize stops here, the servers after it are untouched; check its "
                          "console; run apply again to finish\n")
    second = h.by_name("servers", "mindroom-production-dokku-2")
    assert (second["server_type"]["name"], second["status"]) == ("cpx31", "running")
    assert not any(f"/servers/{second['id']}/" in r["path"] for r in result.mutations)


class _Listener:
    """A TCP server on 127.0.0.1 that greets each connection with `greeting` and closes it."""

    def __init__(self, greeting: bytes):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.greeting = greeting
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            with connection:
                connection.sendall(self.greeting)

    def close(self):
        self.socket.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self.socket.close()


@pytest.mark.parametrize("greeting, answers", [
    (b"SSH-2.0-OpenSSH_10.0p2 Debian-7\r\n", True),
    (b"Welcome to a banner before the identification\r\nSSH-2.0-dropbear\r\n", True),  # RFC 4253 4.2 allows it
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", False),
    (b"", False),
])
def test_the_ssh_probe_waits_for_the_identification_string(greeting, answers):
    listener = _Listener(greeting)
    try:
        assert answers_ssh("127.0.0.1", listener.port, timeout=2) is answers
    finally:
        listener.close()


def test_the_ssh_probe_says_no_when_the_port_is_closed():
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        assert answers_ssh("127.0.0.1", bound_not_listening.getsockname()[1], timeout=2) is False
def test_an_older_bootstraps_provisioner_key_is_deleted_from_the_project(applied):
    """Older versions made the provisioner key a creation key of the Dokku servers (so root's): it is no Hetzner
    key any more. Its server keeps it until the deploy rewrites root's authorized_keys (tasks/keys.py)."""
    h = applied
    labels = {"managed-by": "mindroom-infra", "project": "mindroom", "environment": "production"}
    h.client().ssh_keys.create(name="mindroom-production-dokku-provisioner", public_key=h.provisioner_key,
                               labels=labels)
    plan = h.run("plan")
    [deleted] = rows(plan.out, "delete")
    assert "mindroom-production-dokku-provisioner" in deleted and "is not an admin key" in deleted
    done = h.run("apply", "--yes")
    assert done.code == 0 and _key_requests(done) == [("DELETE", "ssh_keys")]
    assert h.names("ssh_keys") == ["mindroom-production-admin"]
