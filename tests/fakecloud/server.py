"""The HTTP face of the fake cloud: routing, auth, error envelopes, fault injection and a request log."""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .cloud import CATALOG, RESOURCES, ApiError, Cloud
from .hooks import CloudHooks
from . import catalog

MUTATING = ("POST", "PUT", "DELETE")
# Resource actions whose answer is a list of actions ({"actions": [...]}), as in Hetzner's API reference and
# hcloud-python 2.27 (hcloud/firewalls/client.py reads response["actions"] for these three).
ACTION_LISTS = {("firewalls", "set_rules"), ("firewalls", "apply_to_resources"),
                ("firewalls", "remove_from_resources")}
_KINDS = "|".join(RESOURCES)
_RRSET = r"/zones/(?P<zone>[^/]+)/rrsets/(?P<name>[^/]+)/(?P<type>[A-Z]+)"
ROUTES = [
    ("GET", r"/actions/(?P<id>\d+)", "get_action"),
    ("GET", r"/actions", "list_actions"),
    ("GET", rf"/(?P<kind>{'|'.join(CATALOG)})", "list_catalog"),
    ("GET", rf"/(?P<kind>{'|'.join(CATALOG)})/(?P<id>[^/]+)", "get_catalog"),
    ("GET", rf"/(?P<kind>{_KINDS})/actions", "list_kind_actions"),
    ("GET", rf"/(?P<kind>{_KINDS})/(?P<id>\d+)/actions", "list_resource_actions"),
    ("GET", r"/zones/(?P<zone>[^/]+)/rrsets", "list_rrsets"),
    ("POST", r"/zones/(?P<zone>[^/]+)/rrsets", "create_rrset"),
    ("GET", _RRSET, "get_rrset"),
    ("PUT", _RRSET, "update_rrset"),
    ("DELETE", _RRSET, "delete_rrset"),
    ("POST", _RRSET + r"/actions/(?P<command>\w+)", "rrset_action"),
    ("GET", rf"/(?P<kind>{_KINDS})", "list_resources"),
    ("POST", rf"/(?P<kind>{_KINDS})", "create_resource"),
    ("GET", rf"/(?P<kind>{_KINDS})/(?P<id>[^/]+)", "get_resource"),
    ("PUT", rf"/(?P<kind>{_KINDS})/(?P<id>[^/]+)", "update_resource"),
    ("DELETE", rf"/(?P<kind>{_KINDS})/(?P<id>[^/]+)", "delete_resource"),
    ("POST", rf"/(?P<kind>{_KINDS})/(?P<id>\d+)/actions/(?P<command>\w+)", "resource_action"),
]
# Error codes as hcloud-go names them (hetznercloud/hcloud-go, hcloud/error.go): server_error is "Error within
# the API backend" (500), unavailable and rate_limit_exceeded are answered with 503 and 429.
_FAULT_BODIES = {
    429: {"error": {"code": "rate_limit_exceeded", "message": "limit of 3600 requests per hour reached", "details": {}}},
    500: {"error": {"code": "server_error", "message": "internal server error", "details": {}}},
    503: {"error": {"code": "unavailable", "message": "service temporarily unavailable", "details": {}}},
}
# Faults that are no HTTP answer: "timeout" (no answer in time, the request not carried out), "reset" (the
# connection reset before the request is carried out), "drop" (carried out, the answer cut off mid-body),
# "late" (carried out, the answer sent only after timeout_delay, when the client has given up).
CONNECTION_FAULTS = ("timeout", "reset", "drop", "late")


@dataclass
class Faults:
    """Transient failures drawn per request, answers lost on purpose, and a crash after N successful mutations.

    lose_answers: {"METHOD path regex": n}: the next n matching requests are carried out and their answers
    lost the `lost_answer` way ("drop" or "late"), e.g. {"POST /servers": 1}.
    """

    rate: float = 0.0
    statuses: tuple = (429, 503)  # also 500, 502 (a bare gateway page, no JSON) and CONNECTION_FAULTS
    seed: int = 0
    crash_after: int | None = None
    timeout_delay: float = 1.0
    lose_answers: dict = field(default_factory=dict)
    lost_answer: str = "drop"
    _random: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self):
        unknown = set(self.statuses) - set(_FAULT_BODIES) - {502, *CONNECTION_FAULTS}
        if unknown or self.lost_answer not in ("drop", "late"):
            raise ValueError(f"the fake cannot inject {sorted(map(str, unknown)) or self.lost_answer}")
        self._random = random.Random(self.seed)

    def draw(self, method: str, path: str):
        with self._lock:
            for pattern, left in self.lose_answers.items():
                if left > 0 and re.fullmatch(pattern, f"{method} {path}"):
                    self.lose_answers[pattern] -= 1
                    return self.lost_answer
            if self.rate and self._random.random() < self.rate:
                return self._random.choice(self.statuses)
        return None


class _Router:
    def __init__(self, cloud: Cloud):
        self.cloud = cloud
        self.routes = [(method, re.compile(f"^{pattern}$"), name) for method, pattern, name in ROUTES]

    def handle(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict | None]:
        for route_method, pattern, name in self.routes:
            match = pattern.match(path)
            if match and route_method == method:
                return getattr(self, name)(query=query, body=body, **match.groupdict())
        raise ApiError(404, "not_found", f"no route for {method} {path}")

    # -- routes ---------------------------------------------------------------------------------------
    def get_action(self, id, **_):
        action = self.cloud.state["actions"].get(int(id))
        if action is None:
            raise ApiError(404, "not_found", f"action {id} not found")
        return 200, {"action": self.cloud.render_action(action)}

    def list_actions(self, query, **_):
        wanted = {int(i) for i in query.get("id", [])}
        actions = [self.cloud.render_action(a) for a in self.cloud.state["actions"].values() if not wanted or a["id"] in wanted]
        items, meta = self.cloud._filter_page(actions, {k: v for k, v in query.items() if k != "id"})
        return 200, {"actions": items, "meta": meta}

    def list_catalog(self, kind, query, **_):
        items = getattr(catalog, kind)()
        if kind == "images" and query.get("include_deprecated", ["false"])[0] != "true":
            items = [item for item in items if not item["deprecated"]]
        items, meta = self.cloud._filter_page(items, query)
        return 200, {kind: items, "meta": meta}

    def get_catalog(self, kind, id, **_):
        item = catalog.find(getattr(catalog, kind)(), id)
        if item is None:
            raise ApiError(404, "not_found", f"{CATALOG[kind]} {id} not found")
        return 200, {CATALOG[kind]: item}

    def list_resources(self, kind, query, **_):
        items, meta = self.cloud.list(kind, query)
        return 200, {kind: items, "meta": meta}

    def create_resource(self, kind, body, **_):
        return 201, getattr(self.cloud, f"create_{kind}")(body)

    def get_resource(self, kind, id, **_):
        return 200, {RESOURCES[kind]: self.cloud.render(kind, self.cloud._get(kind, id))}

    def update_resource(self, kind, id, body, **_):
        return 200, self.cloud.update(kind, id, body)

    def delete_resource(self, kind, id, **_):
        payload = self.cloud.delete(kind, id)
        return (200, payload) if payload else (204, None)

    def resource_action(self, kind, id, command, body, **_):
        item = self.cloud._get(kind, id)
        handler = getattr(self.cloud, f"{kind}_{command}", None)
        if handler is None:
            raise ApiError(404, "not_found", f"unknown action {command!r} for {kind}")
        self.cloud._ensure_unlocked(kind, item["id"])
        if self.cloud.take_failure(command):  # an action that ends in error, having changed nothing
            failed = self.cloud.action(command, [(kind, item["id"])], fail=True)
            return 201, {"actions": [failed]} if (kind, command) in ACTION_LISTS else {"action": failed}
        return 201, handler(item, body)

    def list_kind_actions(self, kind, query, **_):
        return self._actions(query, lambda action: any(r["type"] == RESOURCES[kind] for r in action["resources"]))

    def list_resource_actions(self, kind, id, query, **_):
        item = self.cloud._get(kind, id)
        return self._actions(query, lambda action: {"id": item["id"], "type": RESOURCES[kind]} in action["resources"])

    def _actions(self, query, predicate):
        actions = [self.cloud.render_action(a) for a in self.cloud.state["actions"].values() if predicate(a)]
        items, meta = self.cloud._filter_page(actions, query)
        return 200, {"actions": items, "meta": meta}

    def list_rrsets(self, zone, query, **_):
        items, meta = self.cloud.list_rrsets(zone, query)
        return 200, {"rrsets": items, "meta": meta}

    def create_rrset(self, zone, body, **_):
        return 201, self.cloud.create_rrset(zone, body)

    def get_rrset(self, zone, name, type, **_):
        return 200, self.cloud.get_rrset(zone, name, type)

    def update_rrset(self, zone, name, type, body, **_):
        return 200, self.cloud.update_rrset(zone, name, type, body)

    def delete_rrset(self, zone, name, type, **_):
        return 201, self.cloud.delete_rrset(zone, name, type)

    def rrset_action(self, zone, name, type, command, body, **_):
        return 201, self.cloud.rrset_action(zone, name, type, command, body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_HTTPServer"

    def setup(self):
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls per answer

    def log_message(self, *args):  # the request log below replaces the noisy stderr log
        pass

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_DELETE(self):
        self._serve("DELETE")

    def _send(self, status: int, payload: dict | None, raw: bytes | None = None):
        body = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else b"")
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if raw is None else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self, method: str):
        fake = self.server.fake
        if fake.cloud.crashed:
            self.close_connection = True
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        path = url.path[len("/v1"):] if url.path.startswith("/v1/") else url.path
        query = parse_qs(url.query)
        entry = {"method": method, "path": path, "query": query, "status": None,
                 "body": raw_body.decode(errors="replace"),
                 "token": self.headers.get("Authorization", "").removeprefix("Bearer ").strip()}
        fake.log(entry)
        fault = fake.faults.draw(method, path)
        if fault == "timeout":
            entry["status"] = "timeout"
            time.sleep(fake.faults.timeout_delay)
            self.close_connection = True
            return
        if fault == "reset":
            entry["status"] = "reset"
            return self._reset()
        if fault == 502:
            entry["status"] = 502
            return self._send(502, None, raw=b"<html><body><h1>502 Bad Gateway</h1></body></html>")
        if fault in _FAULT_BODIES:
            entry["status"] = fault
            return self._send(fault, _FAULT_BODIES[fault])
        status, payload = fake.dispatch(method, path, query, raw_body, self.headers.get("Authorization", ""))
        entry["status"] = status
        if method in MUTATING:
            entry["answer"] = payload  # what a created resource's id was, even when the answer is lost below
        if fault in ("drop", "late"):
            entry.update(status=fault, answered=status)  # what the lost answer would have said
        if method in MUTATING and status < 400 and fake.count_mutation():
            self.close_connection = True  # the change is on disk, the answer is lost: a crash mid-request
            return
        if fault == "drop":
            return self._drop(status, payload)
        if fault == "late":
            time.sleep(fake.faults.timeout_delay)
            self.close_connection = True
            with contextlib.suppress(OSError):  # the client may have closed the connection already
                self._send(status, payload)
            return
        self._send(status, payload)

    def _reset(self):
        """Close with an RST (linger 0): the client reads ECONNRESET, the request was not carried out."""
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.request.close()  # closed for real once the handler's files are closed, before any FIN

    def _drop(self, status: int, payload: dict | None):
        """The request was carried out; the answer stops halfway through its body (or, without a body,
        never comes)."""
        self.close_connection = True
        if payload is None:
            return
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: "FakeCloud"


def serve_in_thread(server_class: type[ThreadingHTTPServer], listen: tuple[str, int], handler, fake):
    """Start server_class on listen in a daemon thread, `fake` reachable from its handlers; (server, base URL)."""
    httpd = server_class(listen, handler)
    httpd.fake = fake
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    host, port = httpd.server_address[:2]
    return httpd, f"http://{host}:{port}"


def stop_server(httpd: ThreadingHTTPServer | None) -> None:
    if httpd:
        httpd.shutdown()
        httpd.server_close()


class FakeCloud:
    """A stateful Hetzner Cloud API on 127.0.0.1 for the real hcloud SDK (HCLOUD_ENDPOINT = .start())."""

    def __init__(self, state_file=None, hooks: CloudHooks | None = None, action_latency: float = 0.0,
                 token: str | None = None, faults: Faults | None = None, listen: tuple[str, int] = ("127.0.0.1", 0)):
        self.cloud = Cloud(hooks=hooks, action_latency=action_latency, state_file=state_file)
        self.router = _Router(self.cloud)
        self.token = token
        self.faults = faults or Faults()
        self.listen = listen
        self.requests: list[dict] = []
        self.mutations = 0
        self._log_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self.url = ""

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> str:
        self._httpd, base = serve_in_thread(_HTTPServer, self.listen, _Handler, self)
        self.url = f"{base}/v1"
        return self.url

    def stop(self) -> None:
        with self._log_lock:
            httpd, self._httpd = self._httpd, None
        stop_server(httpd)

    def crash(self) -> None:
        """Die like a killed process: state stays as last saved, running actions never finish here."""
        with self.cloud.lock:
            self.cloud.crashed = True
        threading.Thread(target=self.stop, daemon=True).start()

    # -- requests ---------------------------------------------------------------------------------------
    def log(self, entry: dict) -> None:
        with self._log_lock:
            self.requests.append(entry)

    def count_mutation(self) -> bool:
        """Count a successful mutation; True when it is the one to crash after."""
        with self._log_lock:
            self.mutations += 1
            crash = self.faults.crash_after is not None and self.mutations >= self.faults.crash_after
        if crash:
            self.crash()
        return crash

    def dispatch(self, method: str, path: str, query: dict, raw_body: bytes, authorization: str):
        token = authorization.removeprefix("Bearer ").strip()
        if not token or (self.token and token != self.token):
            return 401, {"error": {"code": "unauthorized", "message": "unable to authenticate", "details": {}}}
        try:
            body = json.loads(raw_body) if raw_body else {}
        except ValueError:
            return 400, {"error": {"code": "json_error", "message": "invalid JSON", "details": {}}}
        with self.cloud.lock:
            try:
                status, payload = self.router.handle(method, path, query, body)
            except ApiError as error:
                return error.status, {"error": {"code": error.code, "message": error.message, "details": {}}}
            if method in MUTATING:
                self.cloud.save()
            return status, payload

    # -- conveniences for tests ---------------------------------------------------------------------------
    def mutating_requests(self) -> list[dict]:
        return [entry for entry in self.requests if entry["method"] in MUTATING]

    def fail_next(self, command: str, times: int = 1) -> None:
        """Make the next `times` requests of this resource action (the URL's verb, e.g. attach_to_network)
        answer with an action that ends in error, having changed nothing."""
        with self.cloud.lock:
            self.cloud.fail_commands[command] = times

    def resources(self, kind: str) -> list[dict]:
        with self.cloud.lock:
            return [self.cloud.render(kind, item) for item in self.cloud.state[kind].values()]
