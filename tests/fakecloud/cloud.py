"""The fake cloud's state and the API operations on it, independent of HTTP.

State is plain JSON-able data (kept in a file when asked, so a crashed fake can be continued by a new one).
Relationships have one owner each (a volume knows its server, a firewall its servers, a server its networks
and placement group) and the other side is derived when a resource is rendered.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import ipaddress
import json
import os
import re
import secrets
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import catalog, selectors
from .hooks import CloudHooks

RESOURCES = {
    "ssh_keys": "ssh_key",
    "networks": "network",
    "firewalls": "firewall",
    "placement_groups": "placement_group",
    "servers": "server",
    "volumes": "volume",
    "zones": "zone",
}
CATALOG = {"locations": "location", "server_types": "server_type", "images": "image"}
DEFAULT_PER_PAGE, MAX_PER_PAGE = 25, 50
VOLUME_DEVICE_PREFIX = "/dev/disk/by-id/scsi-0HC_Volume_"
_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$")
# Hetzner's label rules (API reference, "Labels"): a key is an optional DNS-subdomain prefix and "/" and a name;
# the name and every value: at most 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends (a value may be empty).
_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
_LABEL_PREFIX_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def _label_key_ok(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    return (bool(name) and bool(_LABEL_VALUE_RE.match(name)) and prefix != "hetzner.cloud"
            and (not slash or (len(prefix) <= 253 and bool(_LABEL_PREFIX_RE.match(prefix)))))


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _public(obj: dict) -> dict:
    return {key: copy.deepcopy(value) for key, value in obj.items() if not key.startswith("_")}


def md5_fingerprint(public_key: str) -> str:
    """Hetzner's SSH key fingerprint: MD5 of the key blob, colon-separated hex."""
    try:
        blob = base64.b64decode(public_key.split()[1], validate=True)
    except (IndexError, ValueError):
        raise ApiError(400, "invalid_input", "public_key is not a valid OpenSSH public key") from None
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _fresh_state() -> dict:
    return {"next_id": 1000, "next_ip": 1, "actions": {}, **{kind: {} for kind in RESOURCES}}


class Cloud:
    """All operations run under one lock; hooks and action latency run in worker threads outside it."""

    def __init__(self, hooks: CloudHooks | None = None, action_latency: float = 0.0,
                 state_file: str | os.PathLike | None = None):
        self.hooks = hooks or CloudHooks()
        self.action_latency = action_latency
        self.state_file = Path(state_file) if state_file else None
        self.lock = threading.RLock()
        self.crashed = False
        self.fail_commands: dict[str, int] = {}  # resource action -> how many of the next ones end in error
        self.state = self._load()

    # -- persistence --------------------------------------------------------------------------------
    def _load(self) -> dict:
        if not self.state_file or not self.state_file.exists():
            return _fresh_state()
        raw = json.loads(self.state_file.read_text())
        state = {key: value for key, value in raw.items()}
        for kind in list(RESOURCES) + ["actions"]:
            state[kind] = {int(key): value for key, value in raw.get(kind, {}).items()}
        for action in state["actions"].values():  # what was running when the last fake died has finished
            if action["status"] == "running":
                self._finish(state, action, None)
        return state

    def save(self) -> None:
        if not self.state_file or self.crashed:
            return
        temporary = self.state_file.with_name(self.state_file.name + ".tmp")
        temporary.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        os.replace(temporary, self.state_file)

    # -- helpers --------------------------------------------------------------------------------------
    def _new_id(self) -> int:
        self.state["next_id"] += 1
        return self.state["next_id"]

    def _get(self, kind: str, id_or_name) -> dict:
        items = self.state[kind]
        if str(id_or_name).isdigit() and int(id_or_name) in items:
            return items[int(id_or_name)]
        if kind == "zones":
            for zone in items.values():
                if zone["name"] == id_or_name:
                    return zone
        raise ApiError(404, "not_found", f"{RESOURCES[kind]} with ID {id_or_name} not found")

    def _unique_name(self, kind: str, name: Any, exclude: int | None = None) -> str:
        if not isinstance(name, str) or not name:
            raise ApiError(400, "invalid_input", "name is required")
        if kind in ("servers", "volumes") and not _NAME_RE.match(name):
            raise ApiError(400, "invalid_input", f"invalid name {name!r}")
        if any(item["name"] == name and item["id"] != exclude for item in self.state[kind].values()):
            raise ApiError(409, "uniqueness_error", f"{RESOURCES[kind]} name is already used")
        return name

    @staticmethod
    def _labels(labels: Any) -> dict:
        """Labels as Hetzner checks them: 400 invalid_input for a key or value its rules refuse."""
        if labels is None:
            return {}
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and _label_key_ok(k) and _LABEL_VALUE_RE.match(v)
            for k, v in labels.items()
        ):
            raise ApiError(400, "invalid_input", "invalid labels")
        return dict(labels)

    def _locked(self, kind: str, resource_id: int) -> bool:
        singular = RESOURCES[kind]
        return any(
            action["status"] == "running" and {"id": resource_id, "type": singular} in action["resources"]
            for action in self.state["actions"].values()
        )

    def _ensure_unlocked(self, kind: str, resource_id: int) -> None:
        if self._locked(kind, resource_id):
            raise ApiError(423, "locked", f"{RESOURCES[kind]} {resource_id} is locked by a running action")

    def _catalog_item(self, kind: str, id_or_name, architecture: str | None = None) -> dict:
        items = getattr(catalog, kind)()
        if architecture:
            items = [item for item in items if item["architecture"] == architecture]
        item = catalog.find(items, id_or_name)
        if item is None:
            raise ApiError(400, "invalid_input", f"unknown {CATALOG[kind]} {id_or_name!r}")
        return item

    # -- actions --------------------------------------------------------------------------------------
    def take_failure(self, command: str) -> bool:
        """Whether this resource action (the URL's verb) is one that was told to fail (fail_commands)."""
        if self.fail_commands.get(command, 0) <= 0:
            return False
        self.fail_commands[command] -= 1
        return True

    def action(self, command: str, resources: list[tuple[str, int]], work: Callable[[], None] | None = None,
               finish: list | None = None, fail: bool = False) -> dict:
        """Start an action: `work` (hooks) runs in a worker thread after the latency; then `finish`
        ([kind, id, field, value] assignments) is applied and the action succeeds (or ends in error: fail)."""
        action = {
            "id": self._new_id(), "command": command, "status": "running", "progress": 0,
            "started": _now(), "finished": None, "error": None,
            "resources": [{"id": rid, "type": RESOURCES[kind]} for kind, rid in resources],
            "_finish": finish or [], "_t0": time.time(),
        }
        self.state["actions"][action["id"]] = action
        if fail:
            action["_fail"] = True
        threading.Thread(target=self._run_action, args=(action, work), daemon=True).start()
        return action

    def _run_action(self, action: dict, work: Callable[[], None] | None) -> None:
        error = None
        try:
            if self.action_latency:
                time.sleep(self.action_latency)
            if action.get("_fail"):
                raise RuntimeError("injected failure")
            if work:
                work()
        except Exception as exc:  # a hook that raises turns the action into an error, as a failed host would
            error = {"code": "action_failed", "message": f"{action['command']} failed: {exc}"}
        with self.lock:
            if self.crashed:
                return
            self._finish(self.state, action, error)
            self.save()

    @staticmethod
    def _finish(state: dict, action: dict, error: dict | None) -> None:
        if error is None:
            for kind, rid, field, value in action.get("_finish", []):
                if rid in state[kind]:
                    state[kind][rid][field] = value
        action.update(status="error" if error else "success", progress=100, finished=_now(), error=error)

    def render_action(self, action: dict) -> dict:
        rendered = _public(action)
        if action["status"] == "running" and self.action_latency:
            elapsed = time.time() - action["_t0"]
            rendered["progress"] = min(99, int(100 * elapsed / self.action_latency))
        return rendered

    # -- rendering ------------------------------------------------------------------------------------
    def render(self, kind: str, obj: dict) -> dict:
        rendered = _public(obj)
        renderer = getattr(self, f"_render_{kind}", None)
        if renderer:
            renderer(rendered)
        return rendered

    def _render_servers(self, server: dict) -> None:
        sid = server["id"]
        server["volumes"] = sorted(v["id"] for v in self.state["volumes"].values() if v["server"] == sid)
        server["public_net"]["firewalls"] = [
            {"id": fw["id"], "status": "applied"} for fw in self.state["firewalls"].values() if sid in fw["_servers"]
        ]
        group = self.state["placement_groups"].get(server["placement_group"])
        server["placement_group"] = self.render("placement_groups", group) if group else None
        server["locked"] = self._locked("servers", sid)

    def _render_networks(self, network: dict) -> None:
        network["servers"] = sorted(
            s["id"] for s in self.state["servers"].values()
            if any(net["network"] == network["id"] for net in s["private_net"])
        )

    def _render_firewalls(self, firewall: dict) -> None:
        servers = sorted(self.state["firewalls"][firewall["id"]]["_servers"])
        firewall["applied_to"] = [
            {"type": "server", "server": {"id": sid}, "applied_to_resources": []} for sid in servers
        ]

    def _render_placement_groups(self, group: dict) -> None:
        group["servers"] = sorted(s["id"] for s in self.state["servers"].values() if s["placement_group"] == group["id"])

    def _render_zones(self, zone: dict) -> None:
        zone["record_count"] = sum(len(rrset["records"]) for rrset in self.state["zones"][zone["id"]]["_rrsets"])

    # -- listing --------------------------------------------------------------------------------------
    def list(self, kind: str, query: dict[str, list[str]]) -> tuple[list[dict], dict]:
        items = sorted(self.state[kind].values(), key=lambda item: item["id"])
        rendered = [self.render(kind, item) for item in items]
        return self._filter_page(rendered, query)

    @staticmethod
    def _filter_page(items: list[dict], query: dict[str, list[str]]) -> tuple[list[dict], dict]:
        def one(name):
            return query.get(name, [None])[0]

        if one("label_selector") is not None:
            try:
                predicate = selectors.parse(one("label_selector"))
            except selectors.SelectorError as error:
                raise ApiError(400, "invalid_input", str(error)) from None
            items = [item for item in items if predicate(item.get("labels") or {})]
        for field in ("name", "fingerprint", "status", "type", "architecture", "mode"):
            if field in query:
                items = [item for item in items if str(item.get(field)) in query[field]]
        try:
            page = int(one("page") or 1)
            per_page = min(MAX_PER_PAGE, int(one("per_page") or DEFAULT_PER_PAGE))
        except ValueError:
            raise ApiError(400, "invalid_input", "page and per_page must be numbers") from None
        if page < 1 or per_page < 1:
            raise ApiError(400, "invalid_input", "page and per_page must be positive")
        last = max(1, -(-len(items) // per_page))
        pagination = {
            "page": page, "per_page": per_page, "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page < last else None, "last_page": last, "total_entries": len(items),
        }
        return items[(page - 1) * per_page: page * per_page], {"pagination": pagination}

    # -- generic create / update / delete -----------------------------------------------------------------
    def _base(self, kind: str, body: dict) -> dict:
        return {"id": self._new_id(), "name": self._unique_name(kind, body.get("name")),
                "labels": self._labels(body.get("labels")), "created": _now()}

    def update(self, kind: str, id_or_name, body: dict) -> dict:
        item = self._get(kind, id_or_name)
        if "name" in body and kind != "zones":
            item["name"] = self._unique_name(kind, body["name"], exclude=item["id"])
        if "labels" in body:
            item["labels"] = self._labels(body["labels"])
        return {RESOURCES[kind]: self.render(kind, item)}

    def delete(self, kind: str, id_or_name) -> dict | None:
        item = self._get(kind, id_or_name)
        if (item.get("protection") or {}).get("delete"):
            raise ApiError(423, "protected", f"{RESOURCES[kind]} {item['id']} is protected against deletion")
        self._ensure_unlocked(kind, item["id"])
        return getattr(self, f"_delete_{kind}", self._delete_plain)(kind, item)

    def _delete_plain(self, kind: str, item: dict) -> None:
        if kind == "firewalls" and item["_servers"]:
            raise ApiError(422, "resource_in_use", "firewall is still applied to servers")
        rendered = self.render(kind, item)
        if rendered.get("servers"):
            raise ApiError(422, "resource_in_use", f"{RESOURCES[kind]} still has servers")
        del self.state[kind][item["id"]]
        return None

    # -- ssh keys, networks, firewalls, placement groups ------------------------------------------------
    def create_ssh_keys(self, body: dict) -> dict:
        key = self._base("ssh_keys", body)
        public_key = str(body.get("public_key") or "").strip()
        key.update(public_key=public_key, fingerprint=md5_fingerprint(public_key))
        if any(other["fingerprint"] == key["fingerprint"] for other in self.state["ssh_keys"].values()):
            raise ApiError(409, "uniqueness_error", "SSH key with the same fingerprint already exists")
        self.state["ssh_keys"][key["id"]] = key
        return {"ssh_key": self.render("ssh_keys", key)}

    def create_networks(self, body: dict) -> dict:
        network = self._base("networks", body)
        ip_range = self._cidr(body.get("ip_range"))
        network.update(ip_range=str(ip_range), subnets=[], routes=[], protection={"delete": False},
                       expose_routes_to_vswitch=False, load_balancers=[])
        for subnet in body.get("subnets") or []:
            self._add_subnet(network, subnet)
        self.state["networks"][network["id"]] = network
        return {"network": self.render("networks", network)}

    @staticmethod
    def _cidr(value: Any) -> ipaddress.IPv4Network:
        try:
            return ipaddress.IPv4Network(str(value))
        except ValueError:
            raise ApiError(400, "invalid_input", f"invalid ip_range {value!r}") from None

    def _add_subnet(self, network: dict, subnet: dict) -> None:
        ip_range = self._cidr(subnet.get("ip_range"))
        if not ip_range.subnet_of(ipaddress.IPv4Network(network["ip_range"])):
            raise ApiError(400, "invalid_input", f"subnet {ip_range} is outside {network['ip_range']}")
        if any(ipaddress.IPv4Network(s["ip_range"]).overlaps(ip_range) for s in network["subnets"]):
            raise ApiError(409, "uniqueness_error", f"subnet {ip_range} overlaps an existing subnet")
        network["subnets"].append({
            "type": subnet.get("type", "cloud"), "ip_range": str(ip_range),
            "network_zone": subnet.get("network_zone", "eu-central"),
            "gateway": str(ipaddress.IPv4Network(network["ip_range"])[1]), "vswitch_id": None,
        })

    def networks_add_subnet(self, network: dict, body: dict) -> dict:
        self._add_subnet(network, body)
        return {"action": self.action("add_subnet", [("networks", network["id"])])}

    def networks_change_protection(self, network: dict, body: dict) -> dict:
        network["protection"]["delete"] = bool(body.get("delete", network["protection"]["delete"]))
        return {"action": self.action("change_protection", [("networks", network["id"])])}

    @staticmethod
    def _rules(rules: Any) -> list[dict]:
        result = []
        for rule in rules or []:
            direction, protocol = rule.get("direction"), rule.get("protocol")
            if direction not in ("in", "out") or protocol not in ("tcp", "udp", "icmp", "esp", "gre"):
                raise ApiError(400, "invalid_input", "invalid firewall rule direction or protocol")
            if protocol in ("tcp", "udp") and not rule.get("port"):
                raise ApiError(400, "invalid_input", "tcp and udp rules need a port")
            ips = rule.get("source_ips" if direction == "in" else "destination_ips") or []
            for ip in ips:
                try:
                    ipaddress.ip_network(ip)
                except ValueError:
                    raise ApiError(400, "invalid_input", f"invalid address {ip!r} in firewall rule") from None
            if not ips:
                raise ApiError(400, "invalid_input", "firewall rule needs addresses")
            result.append({"direction": direction, "protocol": protocol, "port": rule.get("port"),
                           "source_ips": rule.get("source_ips") or [],
                           "destination_ips": rule.get("destination_ips") or [],
                           "description": rule.get("description")})
        return result

    def create_firewalls(self, body: dict) -> dict:
        firewall = self._base("firewalls", body)
        firewall.update(rules=self._rules(body.get("rules")), _servers=[])
        self.state["firewalls"][firewall["id"]] = firewall
        actions = [self._apply_firewall(firewall, resource) for resource in body.get("apply_to") or []]
        return {"firewall": self.render("firewalls", firewall), "actions": actions}

    def _firewall_server(self, resource: dict) -> dict:
        if resource.get("type") != "server":
            raise ApiError(400, "invalid_input", "the fake only applies firewalls to servers")
        return self._get("servers", (resource.get("server") or {}).get("id"))

    def _apply_firewall(self, firewall: dict, resource: dict) -> dict:
        server = self._firewall_server(resource)
        if server["id"] in firewall["_servers"]:
            raise ApiError(422, "firewall_already_applied", "firewall is already applied to the server")
        firewall["_servers"].append(server["id"])
        return self.action("apply_firewall", [("firewalls", firewall["id"]), ("servers", server["id"])])

    def firewalls_set_rules(self, firewall: dict, body: dict) -> dict:
        firewall["rules"] = self._rules(body.get("rules"))
        return {"actions": [self.action("set_firewall_rules", [("firewalls", firewall["id"])])]}

    def firewalls_apply_to_resources(self, firewall: dict, body: dict) -> dict:
        return {"actions": [self._apply_firewall(firewall, r) for r in body.get("apply_to") or []]}

    def firewalls_remove_from_resources(self, firewall: dict, body: dict) -> dict:
        actions = []
        for resource in body.get("remove_from") or []:
            server = self._firewall_server(resource)
            if server["id"] not in firewall["_servers"]:
                raise ApiError(422, "firewall_resource_not_found", "firewall is not applied to the server")
            firewall["_servers"].remove(server["id"])
            actions.append(self.action("remove_firewall", [("firewalls", firewall["id"]), ("servers", server["id"])]))
        return {"actions": actions}

    def create_placement_groups(self, body: dict) -> dict:
        group = self._base("placement_groups", body)
        if body.get("type") != "spread":
            raise ApiError(400, "invalid_input", "placement group type must be spread")
        group["type"] = "spread"
        self.state["placement_groups"][group["id"]] = group
        return {"placement_group": self.render("placement_groups", group), "action": None}

    # -- servers --------------------------------------------------------------------------------------
    def _next_public_ips(self) -> tuple[str, str]:
        n = self.state["next_ip"]
        self.state["next_ip"] += 1
        return f"203.0.{113 + n // 250}.{n % 250 + 1}", f"2001:db8:{n:x}::/64"

    def create_servers(self, body: dict) -> dict:
        server = self._base("servers", body)
        location = self._catalog_item("locations", body.get("location") or "fsn1")
        server_type = self._catalog_item("server_types", body.get("server_type"))
        image = self._catalog_item("images", body.get("image"), server_type["architecture"])
        keys = [self._get_key(key) for key in body.get("ssh_keys") or []]
        firewalls = [self._get("firewalls", (ref or {}).get("firewall")) for ref in body.get("firewalls") or []]
        networks = [self._get("networks", nid) for nid in body.get("networks") or []]
        volumes = [self._get("volumes", vid) for vid in body.get("volumes") or []]
        group = self._get("placement_groups", body["placement_group"]) if body.get("placement_group") else None
        if group and len(self.render("placement_groups", group)["servers"]) >= 10:
            raise ApiError(412, "placement_error", "spread placement group is full (10 servers)")
        for volume in volumes:
            self._check_attachable(volume, location["name"])
        public = body.get("public_net") or {}
        ipv4, ipv6 = self._next_public_ips()
        server.update(
            status="initializing", server_type=server_type, location=location, image=image, iso=None,
            rescue_enabled=False, backup_window=None, outgoing_traffic=0, ingoing_traffic=0,
            included_traffic=server_type["included_traffic"], protection={"delete": False, "rebuild": False},
            primary_disk_size=server_type["disk"], placement_group=group["id"] if group else None,
            private_net=[], load_balancers=[],
            public_net={
                "ipv4": {"id": self._new_id(), "ip": ipv4, "blocked": False, "dns_ptr": f"static.{ipv4}.example"}
                if public.get("enable_ipv4", True) else None,
                "ipv6": {"id": self._new_id(), "ip": ipv6, "blocked": False, "dns_ptr": []}
                if public.get("enable_ipv6", True) else None,
                "floating_ips": [],
            },
            _public_keys=[key["public_key"] for key in keys], _user_data=body.get("user_data"),
        )
        sid = server["id"]
        self.state["servers"][sid] = server
        for firewall in firewalls:
            firewall["_servers"].append(sid)
        attached_ips = [self._join_network(server, network, None) for network in networks]
        for volume in volumes:
            volume["server"] = sid
        hooks, labels, public_keys = self.hooks, dict(server["labels"]), list(server["_public_keys"])

        def work():
            addresses = hooks.server_created(sid, server["name"], labels, public_keys)
            if addresses:
                self._set_public_ips(sid, addresses)
            for ip in attached_ips:
                hooks.network_attached(sid, ip)
            for volume in volumes:
                hooks.volume_attached(volume["id"], sid)

        status = "running" if body.get("start_after_create", True) else "off"
        action = self.action("create_server", [("servers", sid)], work, [["servers", sid, "status", status]])
        root_password = None if keys else secrets.token_urlsafe(16)
        return {"server": self.render("servers", server), "action": action, "next_actions": [],
                "root_password": root_password}

    def _set_public_ips(self, sid: int, addresses: dict) -> None:
        with self.lock:
            server = self.state["servers"].get(sid)
            if not server:
                return
            net = server["public_net"]
            if addresses.get("ipv4") and net["ipv4"]:
                net["ipv4"]["ip"] = addresses["ipv4"]
            if addresses.get("ipv6") and net["ipv6"]:
                net["ipv6"]["ip"] = str(ipaddress.IPv6Network(f"{addresses['ipv6'].split('/')[0]}/64", strict=False))

    def _get_key(self, id_or_name) -> dict:
        for key in self.state["ssh_keys"].values():
            if str(key["id"]) == str(id_or_name) or key["name"] == id_or_name:
                return key
        raise ApiError(404, "not_found", f"ssh_key {id_or_name} not found")

    def _delete_servers(self, kind: str, server: dict) -> dict:
        sid = server["id"]
        volumes = [v["id"] for v in self.state["volumes"].values() if v["server"] == sid]
        for vid in volumes:
            self.state["volumes"][vid]["server"] = None
        for firewall in self.state["firewalls"].values():
            if sid in firewall["_servers"]:
                firewall["_servers"].remove(sid)
        del self.state["servers"][sid]

        def work():
            for vid in volumes:
                self.hooks.volume_detached(vid, sid)
            self.hooks.server_deleted(sid)

        return {"action": self.action("delete_server", [("servers", sid)], work)}

    def _power(self, server: dict, command: str, on: bool, transition: str) -> dict:
        sid = server["id"]
        server["status"] = transition
        final = "running" if on else "off"
        work = (lambda: self.hooks.server_powered(sid, on))
        return {"action": self.action(command, [("servers", sid)], work, [["servers", sid, "status", final]])}

    def servers_poweron(self, server: dict, body: dict) -> dict:
        return self._power(server, "start_server", True, "starting")

    def servers_poweroff(self, server: dict, body: dict) -> dict:
        return self._power(server, "stop_server", False, "stopping")

    def servers_shutdown(self, server: dict, body: dict) -> dict:
        return self._power(server, "shutdown_server", False, "stopping")

    def servers_reboot(self, server: dict, body: dict) -> dict:
        sid = server["id"]
        return {"action": self.action("reboot_server", [("servers", sid)], lambda: self.hooks.server_rebooted(sid))}

    def servers_change_type(self, server: dict, body: dict) -> dict:
        new_type = self._catalog_item("server_types", body.get("server_type"))
        if server["status"] != "off":
            raise ApiError(409, "server_not_stopped", "server must be powered off to change its type")
        if new_type["architecture"] != server["server_type"]["architecture"]:
            raise ApiError(422, "invalid_input", "server type has another architecture")
        disk = new_type["disk"] if body.get("upgrade_disk") else server["primary_disk_size"]
        if new_type["disk"] < server["primary_disk_size"]:
            raise ApiError(422, "invalid_input", f"{new_type['name']} has a smaller disk than the server's "
                                                 f"{server['primary_disk_size']} GB")
        server.update(server_type=new_type, primary_disk_size=disk)
        return {"action": self.action("change_server_type", [("servers", server["id"])])}

    def servers_enable_backup(self, server: dict, body: dict) -> dict:
        server["backup_window"] = "22-02"
        return {"action": self.action("enable_backup", [("servers", server["id"])])}

    def servers_disable_backup(self, server: dict, body: dict) -> dict:
        server["backup_window"] = None
        return {"action": self.action("disable_backup", [("servers", server["id"])])}

    def servers_change_protection(self, server: dict, body: dict) -> dict:
        delete, rebuild = body.get("delete", server["protection"]["delete"]), body.get("rebuild", server["protection"]["rebuild"])
        if delete != rebuild:
            raise ApiError(400, "invalid_input", "delete and rebuild protection must be the same")
        server["protection"] = {"delete": bool(delete), "rebuild": bool(rebuild)}
        return {"action": self.action("change_protection", [("servers", server["id"])])}

    def _join_network(self, server: dict, network: dict, ip: str | None) -> str:
        if any(net["network"] == network["id"] for net in server["private_net"]):
            raise ApiError(422, "server_already_attached", "server is already attached to the network")
        used = {n["ip"] for s in self.state["servers"].values() for n in s["private_net"] if n["network"] == network["id"]}
        subnets = [ipaddress.IPv4Network(s["ip_range"]) for s in network["subnets"]]
        if not subnets:
            raise ApiError(422, "no_subnet_available", "network has no subnet")
        if ip is None:
            ip = next(str(host) for host in list(subnets[0].hosts())[1:] if str(host) not in used)
        try:
            address = ipaddress.IPv4Address(ip)
        except ValueError:
            raise ApiError(400, "invalid_input", f"invalid ip {ip!r}") from None
        if not any(address in subnet for subnet in subnets) or address == subnets[0][1]:
            raise ApiError(422, "invalid_input", f"ip {ip} is not usable in the network's subnets")
        if ip in used:
            raise ApiError(409, "ip_not_available", f"ip {ip} is already used in the network")
        mac = "86:00:00:%02x:%02x:%02x" % tuple(secrets.token_bytes(3))
        server["private_net"].append({"network": network["id"], "ip": ip, "alias_ips": [], "mac_address": mac})
        return ip

    def servers_attach_to_network(self, server: dict, body: dict) -> dict:
        network = self._get("networks", body.get("network"))
        ip = self._join_network(server, network, body.get("ip"))
        sid = server["id"]
        work = (lambda: self.hooks.network_attached(sid, ip))
        return {"action": self.action("attach_to_network", [("servers", sid), ("networks", network["id"])], work)}

    def servers_detach_from_network(self, server: dict, body: dict) -> dict:
        network = self._get("networks", body.get("network"))
        joined = [net for net in server["private_net"] if net["network"] == network["id"]]
        if not joined:
            raise ApiError(422, "server_not_attached", "server is not attached to the network")
        server["private_net"].remove(joined[0])
        sid, ip = server["id"], joined[0]["ip"]
        work = (lambda: self.hooks.network_detached(sid, ip))
        return {"action": self.action("detach_from_network", [("servers", sid), ("networks", network["id"])], work)}

    def servers_add_to_placement_group(self, server: dict, body: dict) -> dict:
        group = self._get("placement_groups", body.get("placement_group"))
        if server["status"] != "off":
            raise ApiError(409, "server_not_stopped", "server must be powered off to join a placement group")
        server["placement_group"] = group["id"]
        return {"action": self.action("add_to_placement_group", [("servers", server["id"])])}

    def servers_remove_from_placement_group(self, server: dict, body: dict) -> dict:
        server["placement_group"] = None
        return {"action": self.action("remove_from_placement_group", [("servers", server["id"])])}

    # -- volumes --------------------------------------------------------------------------------------
    def _check_attachable(self, volume: dict, location: str) -> None:
        if volume["server"] is not None:
            raise ApiError(422, "volume_already_attached", f"volume {volume['id']} is already attached")
        if volume["location"]["name"] != location:
            raise ApiError(422, "invalid_input", "volume and server must be in the same location")

    def create_volumes(self, body: dict) -> dict:
        volume = self._base("volumes", body)
        size = body.get("size")
        if not isinstance(size, int) or not 10 <= size <= 10240:
            raise ApiError(400, "invalid_input", "size must be 10 to 10240 GB")
        server = self._get("servers", body["server"]) if body.get("server") else None
        if not server and not body.get("location"):
            raise ApiError(400, "invalid_input", "location or server is required")
        location = server["location"] if server else self._catalog_item("locations", body["location"])
        if body.get("format") not in (None, "ext4", "xfs"):
            raise ApiError(400, "invalid_input", "format must be ext4 or xfs")
        vid = volume["id"]
        volume.update(size=size, location=location, server=None, status="creating", format=body.get("format"),
                      linux_device=f"{VOLUME_DEVICE_PREFIX}{vid}", protection={"delete": False})
        self.state["volumes"][vid] = volume
        next_actions = [self._attach_volume(volume, server)] if server else []

        def work():
            self.hooks.volume_created(vid, size)

        action = self.action("create_volume", [("volumes", vid)], work, [["volumes", vid, "status", "available"]])
        return {"volume": self.render("volumes", volume), "action": action, "next_actions": next_actions}

    def _attach_volume(self, volume: dict, server: dict) -> dict:
        self._check_attachable(volume, server["location"]["name"])
        volume["server"] = sid = server["id"]
        vid = volume["id"]
        work = (lambda: self.hooks.volume_attached(vid, sid))
        return self.action("attach_volume", [("volumes", vid), ("servers", sid)], work)

    def volumes_attach(self, volume: dict, body: dict) -> dict:
        server = self._get("servers", body.get("server"))
        self._ensure_unlocked("servers", server["id"])
        return {"action": self._attach_volume(volume, server)}

    def volumes_detach(self, volume: dict, body: dict) -> dict:
        sid, vid = volume["server"], volume["id"]
        if sid is None:
            raise ApiError(422, "volume_not_attached", "volume is not attached")
        volume["server"] = None
        work = (lambda: self.hooks.volume_detached(vid, sid))
        return {"action": self.action("detach_volume", [("volumes", vid), ("servers", sid)], work)}

    def volumes_resize(self, volume: dict, body: dict) -> dict:
        size = body.get("size")
        if not isinstance(size, int) or size <= volume["size"] or size > 10240:
            raise ApiError(422, "invalid_input", f"a volume can only grow (now {volume['size']} GB)")
        volume["size"] = size
        vid = volume["id"]
        return {"action": self.action("resize_volume", [("volumes", vid)], lambda: self.hooks.volume_resized(vid, size))}

    def volumes_change_protection(self, volume: dict, body: dict) -> dict:
        volume["protection"]["delete"] = bool(body.get("delete", volume["protection"]["delete"]))
        return {"action": self.action("change_protection", [("volumes", volume["id"])])}

    def _delete_volumes(self, kind: str, volume: dict) -> None:
        if volume["server"] is not None:
            raise ApiError(423, "locked", "volume is attached to a server; detach it first")
        del self.state["volumes"][volume["id"]]
        vid = volume["id"]
        threading.Thread(target=self.hooks.volume_deleted, args=(vid,), daemon=True).start()
        return None

    # -- DNS zones and rrsets ---------------------------------------------------------------------------
    def create_zones(self, body: dict) -> dict:
        zone = self._base("zones", body)
        zone.update(mode=body.get("mode", "primary"), ttl=int(body.get("ttl") or 3600), status="ok",
                    protection={"delete": False}, registrar="other", primary_nameservers=[],
                    authoritative_nameservers={"assigned": ["hydrogen.ns.hetzner.com."], "delegated": [],
                                               "delegation_last_check": None, "delegation_status": "unknown"},
                    _rrsets=[])
        self.state["zones"][zone["id"]] = zone
        return {"zone": self.render("zones", zone), "action": self.action("create_zone", [("zones", zone["id"])])}

    def _delete_zones(self, kind: str, zone: dict) -> dict:
        del self.state["zones"][zone["id"]]
        return {"action": self.action("delete_zone", [("zones", zone["id"])])}

    def render_rrset(self, zone: dict, rrset: dict) -> dict:
        return {**copy.deepcopy(rrset), "id": f"{rrset['name']}/{rrset['type']}", "zone": zone["id"]}

    def _rrset(self, zone: dict, name: str, rtype: str) -> dict:
        for rrset in zone["_rrsets"]:
            if rrset["name"] == name and rrset["type"] == rtype:
                return rrset
        raise ApiError(404, "not_found", f"rrset {name}/{rtype} not found")

    def list_rrsets(self, zone_ref, query: dict[str, list[str]]) -> tuple[list[dict], dict]:
        zone = self._get("zones", zone_ref)
        rrsets = [self.render_rrset(zone, rrset) for rrset in sorted(zone["_rrsets"], key=lambda r: (r["name"], r["type"]))]
        return self._filter_page(rrsets, query)

    def get_rrset(self, zone_ref, name: str, rtype: str) -> dict:
        zone = self._get("zones", zone_ref)
        return {"rrset": self.render_rrset(zone, self._rrset(zone, name, rtype))}

    @staticmethod
    def _records(records: Any) -> list[dict]:
        if not isinstance(records, list) or not all(isinstance(r, dict) and r.get("value") for r in records):
            raise ApiError(400, "invalid_input", "records must be a list of {value, comment}")
        return [{"value": str(r["value"]), "comment": r.get("comment")} for r in records]

    def _zone_changed(self, zone: dict, command: str) -> dict:
        name = zone["name"]
        snapshot = [{"name": r["name"], "type": r["type"], "records": [x["value"] for x in r["records"]]}
                    for r in zone["_rrsets"]]
        return self.action(command, [("zones", zone["id"])], lambda: self.hooks.dns_rrsets_changed(name, snapshot))

    def create_rrset(self, zone_ref, body: dict) -> dict:
        zone = self._get("zones", zone_ref)
        name, rtype = body.get("name"), body.get("type")
        if not name or rtype not in ("A", "AAAA", "CNAME", "MX", "TXT", "NS", "CAA", "SRV"):
            raise ApiError(400, "invalid_input", "rrset needs a name and a known type")
        if any(r["name"] == name and r["type"] == rtype for r in zone["_rrsets"]):
            raise ApiError(409, "uniqueness_error", f"rrset {name}/{rtype} already exists")
        rrset = {"name": name, "type": rtype, "ttl": body.get("ttl"), "labels": self._labels(body.get("labels")),
                 "protection": {"change": False}, "records": self._records(body.get("records"))}
        zone["_rrsets"].append(rrset)
        return {"rrset": self.render_rrset(zone, rrset), "action": self._zone_changed(zone, "create_rrset")}

    def update_rrset(self, zone_ref, name: str, rtype: str, body: dict) -> dict:
        zone = self._get("zones", zone_ref)
        rrset = self._rrset(zone, name, rtype)
        if "labels" in body:
            rrset["labels"] = self._labels(body["labels"])
        return {"rrset": self.render_rrset(zone, rrset)}

    def delete_rrset(self, zone_ref, name: str, rtype: str) -> dict:
        zone = self._get("zones", zone_ref)
        zone["_rrsets"].remove(self._rrset(zone, name, rtype))
        return {"action": self._zone_changed(zone, "delete_rrset")}

    def rrset_action(self, zone_ref, name: str, rtype: str, command: str, body: dict) -> dict:
        zone = self._get("zones", zone_ref)
        rrset = self._rrset(zone, name, rtype)
        if command == "set_records":
            rrset["records"] = self._records(body.get("records"))
        elif command == "change_ttl":
            rrset["ttl"] = body.get("ttl")
        else:
            raise ApiError(404, "not_found", f"unknown rrset action {command!r}")
        return {"action": self._zone_changed(zone, command)}
