"""A stateful fake of the part of Stripe's API v1 that bootstrap uses, for the real `stripe` library.

What it keeps as the real API does (sources: docs.stripe.com/api/webhook_endpoints, /api/errors,
/api/idempotent_requests, /api/pagination, /rate-limits; stripe/stripe-python v15.4.0b1 `stripe/_encode.py` and
`stripe/_api_requestor.py`, which the pinned stripe 16.1.0 matches; recorded in tests/test_fakestripe.py):
- auth: `Authorization: Bearer <secret key>`; a missing or unknown key is a 401. Objects belong to the key's
  mode (sk_live_/sk_test_): the other mode's objects are "No such ..." with Stripe's hint.
- bodies are form-encoded with brackets (`metadata[environment]=x`, `enabled_events[0]=...`); anything else,
  unknown or missing parameters are 400 `invalid_request_error` (`parameter_unknown`, `parameter_missing`).
- the error envelope `{"error": {"type", "code", "message", "param"}}`; a missing object is 404
  `resource_missing`; 429 `rate_limit`; 500 `api_error`.
- Idempotency-Key on POSTs: the first result is saved and replayed (header `Idempotent-Replayed: true`) for
  the same parameters; other parameters with the same key are a 400 `idempotency_error`.
- lists are newest first, `limit` (1-100, default 10), `starting_after`, `has_more`.
- a webhook endpoint's `secret` is in the creation's answer only.

Faults: `fake.fail_next(method, path, *outcomes)` answers the next matching requests with 429, 500, 503 or
"lost" (the request is carried out, the connection closed without an answer).
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from tests.fakecloud.server import serve_in_thread, stop_server

API_VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
KEY_RE = re.compile(r"^[sr]k_(live|test)_[A-Za-z0-9_]+$")
# The events this fake knows (a subset of Stripe's list, enough for the platform and the tests).
KNOWN_EVENTS = {
    "*", "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
    "invoice.payment_succeeded", "invoice.payment_failed", "invoice.paid", "checkout.session.completed",
    "customer.created",
}
PREFIXES = {"webhook_endpoints": "we", "prices": "price", "products": "prod"}
OBJECT_NAMES = {"webhook_endpoints": "webhook endpoint", "prices": "price", "products": "product"}
OBJECTS = {"webhook_endpoints": "webhook_endpoint", "prices": "price", "products": "product"}
CREATE_PARAMS = {
    "webhook_endpoints": ({"url", "enabled_events"}, {"api_version", "description", "metadata", "connect", "expand"}),
    "products": ({"name"}, {"active", "description", "metadata", "expand"}),
    "prices": ({"currency", "product"}, {"unit_amount", "recurring", "lookup_key", "nickname", "active", "metadata",
                                         "expand"}),
}
UPDATE_PARAMS = {
    "webhook_endpoints": {"url", "enabled_events", "description", "metadata", "disabled", "expand"},
    "products": {"name", "active", "description", "metadata", "expand"},
    "prices": {"active", "nickname", "lookup_key", "metadata", "expand"},
}
FAULT_BODIES = {
    429: {"type": "invalid_request_error", "code": "rate_limit",
          "message": "Request rate limit exceeded. Learn more about rate limits here "
                     "https://stripe.com/docs/rate-limits."},
    500: {"type": "api_error", "message": "An unknown error occurred"},
    503: {"type": "api_error", "message": "Stripe is temporarily unavailable"},
}
MUTATING = ("POST", "DELETE")


class StripeError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.status, self.body = status, {"type": type, "message": message}
        if code:
            self.body.update(code=code, doc_url=f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}")
        if param:
            self.body["param"] = param


def decode_form(pairs: list[tuple[str, str]]) -> dict:
    """`a[b]=1&c[0]=x&c[1]=y` -> {"a": {"b": "1"}, "c": ["x", "y"]} (Stripe's bracket notation)."""
    root: dict = {}
    for key, value in pairs:
        match = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
        if not match:
            raise StripeError(400, f"Invalid form key: {key}")
        parts = [match.group(1)] + re.findall(r"\[([^\[\]]*)\]", match.group(2))
        node = root
        for part, following in zip(parts, parts[1:]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise StripeError(400, f"Invalid array or hash: {key}", param=parts[0])
        last = parts[-1]
        if last == "":
            raise StripeError(400, f"Use indexed arrays ({parts[0]}[0]=...), as the libraries do: {key}",
                              param=parts[0])
        node[last] = value
    return {key: _arrays(value) for key, value in root.items()}


def _arrays(value):
    """Hashes whose keys are 0..n-1 are arrays."""
    if not isinstance(value, dict):
        return value
    value = {key: _arrays(item) for key, item in value.items()}
    if value and all(key.isdigit() for key in value) and sorted(map(int, value)) == list(range(len(value))):
        return [value[str(index)] for index in range(len(value))]
    return value


def _bool(name: str, raw) -> bool:
    if raw in ("true", "false"):
        return raw == "true"
    raise StripeError(400, f"Invalid boolean: {raw}", code="parameter_invalid_boolean", param=name)


class Account:
    """One Stripe account: its objects (each in live or test mode) and the saved idempotent results."""

    def __init__(self, state_file: str | Path | None = None):
        self.lock = threading.RLock()
        self.state_file = Path(state_file) if state_file else None
        self.state = {"webhook_endpoints": {}, "prices": {}, "products": {}, "idempotency": {}}
        if self.state_file and self.state_file.exists():
            self.state = json.loads(self.state_file.read_text())

    def save(self) -> None:
        if self.state_file:
            temporary = self.state_file.with_suffix(".tmp")
            temporary.write_text(json.dumps(self.state))
            temporary.replace(self.state_file)

    def _new_id(self, kind: str) -> str:
        return f"{PREFIXES[kind]}_{secrets.token_hex(12)}"

    def get(self, kind: str, object_id: str, live: bool) -> dict:
        item = self.state[kind].get(object_id)
        if item is None or item["livemode"] != live:
            hint = ""
            if item is not None:
                hint = (f"; a similar object exists in {'live' if item['livemode'] else 'test'} mode, but a "
                        f"{'live' if live else 'test'} mode key was used to make this request.")
            raise StripeError(404, f"No such {OBJECT_NAMES[kind]}: '{object_id}'{hint}", code="resource_missing",
                              param="id")
        return item

    @staticmethod
    def render(item: dict) -> dict:
        return {key: value for key, value in item.items() if key != "secret"}

    def list(self, kind: str, query: dict, live: bool) -> dict:
        unknown = set(query) - {"limit", "starting_after", "ending_before", "expand", "lookup_keys", "active"}
        if unknown:
            name = sorted(unknown)[0]
            raise StripeError(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
        # newest first: objects are kept in creation order (dicts keep insertion order, also through JSON)
        items = [item for item in reversed(self.state[kind].values()) if item["livemode"] == live]
        if "lookup_keys" in query:
            items = [item for item in items if item.get("lookup_key") in query["lookup_keys"]]
        if "active" in query:
            items = [item for item in items if item.get("active") == _bool("active", query["active"])]
        try:
            limit = int(query.get("limit", 10))
        except ValueError:
            raise StripeError(400, "Invalid integer: limit", code="parameter_invalid_integer", param="limit") from None
        if not 1 <= limit <= 100:
            raise StripeError(400, "This value must be between 1 and 100 (it currently is %d)." % limit, param="limit")
        if "starting_after" in query:
            self.get(kind, query["starting_after"], live)
            ids = [item["id"] for item in items]
            items = items[ids.index(query["starting_after"]) + 1:]
        page = items[:limit]
        return {"object": "list", "url": f"/v1/{kind}", "has_more": len(items) > limit,
                "data": [self.render(item) for item in page]}

    def create(self, kind: str, params: dict, live: bool) -> dict:
        required, optional = CREATE_PARAMS[kind]
        _check_params(params, required | optional, required)
        item = {"id": self._new_id(kind), "object": OBJECTS[kind], "created": int(time.time()), "livemode": live,
                "metadata": _metadata({}, params.get("metadata", {}))}
        getattr(self, f"_fill_{kind}")(item, params, live)
        self.state[kind][item["id"]] = item
        return dict(item)  # with the secret: the creation's answer is the only one that has it

    def update(self, kind: str, object_id: str, params: dict, live: bool) -> dict:
        item = self.get(kind, object_id, live)
        _check_params(params, UPDATE_PARAMS[kind], set())
        candidate = {**item, "metadata": _metadata(item["metadata"], params.get("metadata", {}))}
        getattr(self, f"_fill_{kind}")(candidate, params, live)
        item.update(candidate)
        return self.render(item)

    def delete(self, kind: str, object_id: str, live: bool) -> dict:
        self.get(kind, object_id, live)
        del self.state[kind][object_id]
        return {"id": object_id, "object": OBJECTS[kind], "deleted": True}

    # -- per kind ---------------------------------------------------------------------------------------
    def _fill_webhook_endpoints(self, item: dict, params: dict, live: bool) -> None:
        if "url" in params:
            url = urlsplit(params["url"])
            if url.scheme not in ("http", "https") or not url.hostname:
                raise StripeError(400, f"Invalid URL: {params['url']}", code="url_invalid", param="url")
            if live and url.scheme != "https":
                raise StripeError(400, "Live mode webhook endpoints must use HTTPS", code="url_invalid", param="url")
            item["url"] = params["url"]
        if "enabled_events" in params:
            events = params["enabled_events"]
            if not isinstance(events, list) or not events:
                raise StripeError(400, "Invalid array", code="parameter_invalid_empty", param="enabled_events")
            unknown = [event for event in events if event not in KNOWN_EVENTS]
            if unknown:
                raise StripeError(400, f"Invalid enabled_events[0]: must be one of ... ({unknown[0]})",
                                  param="enabled_events")
            item["enabled_events"] = events
        if "api_version" in params and not API_VERSION_RE.match(params["api_version"]):
            raise StripeError(400, f"Invalid Stripe API version: {params['api_version']}", param="api_version")
        if "secret" not in item:  # a creation
            item.update(api_version=params.get("api_version"), application=None, status="enabled",
                        secret=f"whsec_{secrets.token_urlsafe(24)}", description=None)
        if "description" in params:
            item["description"] = params["description"] or None
        if "disabled" in params:
            item["status"] = "disabled" if _bool("disabled", params["disabled"]) else "enabled"

    def _fill_products(self, item: dict, params: dict, live: bool) -> None:
        item.setdefault("active", True)
        for name in ("name", "description"):
            if name in params:
                item[name] = params[name]
        if "active" in params:
            item["active"] = _bool("active", params["active"])

    def _fill_prices(self, item: dict, params: dict, live: bool) -> None:
        if "product" in params:
            self.get("products", params["product"], live)
            if not str(params.get("unit_amount", "0")).isdigit():
                raise StripeError(400, "Invalid integer: unit_amount", code="parameter_invalid_integer",
                                  param="unit_amount")
            item.update(product=params["product"], currency=params["currency"].lower(), active=True, type="one_time",
                        unit_amount=int(params.get("unit_amount", 0)), recurring=None, lookup_key=None, nickname=None)
            if "recurring" in params:
                item.update(type="recurring", recurring={"interval": params["recurring"].get("interval", "month")})
        for name in ("lookup_key", "nickname"):
            if name in params:
                item[name] = params[name] or None
        if "active" in params:
            item["active"] = _bool("active", params["active"])


def _check_params(params: dict, allowed: set, required: set) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise StripeError(400, f"Received unknown parameter: {unknown[0]}", code="parameter_unknown", param=unknown[0])
    missing = sorted(required - set(params))
    if missing:
        raise StripeError(400, f"Missing required param: {missing[0]}.", code="parameter_missing", param=missing[0])


def _metadata(current: dict, changes) -> dict:
    """Stripe merges metadata; an empty value unsets a key, an empty `metadata` unsets all."""
    if changes == "":
        return {}
    if not isinstance(changes, dict):
        raise StripeError(400, "Invalid hash", code="parameter_invalid_hash", param="metadata")
    merged = {**current, **changes}
    return {key: value for key, value in merged.items() if value != ""}


ROUTES = [
    ("GET", re.compile(r"^/v1/(?P<kind>webhook_endpoints|prices|products)$"), "list"),
    ("POST", re.compile(r"^/v1/(?P<kind>webhook_endpoints|prices|products)$"), "create"),
    ("GET", re.compile(r"^/v1/(?P<kind>webhook_endpoints|prices|products)/(?P<id>[^/]+)$"), "retrieve"),
    ("POST", re.compile(r"^/v1/(?P<kind>webhook_endpoints|prices|products)/(?P<id>[^/]+)$"), "update"),
    ("DELETE", re.compile(r"^/v1/(?P<kind>webhook_endpoints)/(?P<id>[^/]+)$"), "delete"),
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_HTTPServer"

    def setup(self):
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_DELETE(self):
        self._serve("DELETE")

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Request-Id", f"req_{secrets.token_hex(7)}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _serve(self, method: str) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode(errors="replace") if length else ""
        url = urlsplit(self.path)
        entry = {"method": method, "path": url.path, "query": url.query, "body": raw, "status": None,
                 "idempotency_key": self.headers.get("Idempotency-Key"), "replayed": False,
                 "stripe_version": self.headers.get("Stripe-Version")}
        fake.log(entry)
        fault = fake.take_fault(method, url.path)
        if fault in FAULT_BODIES:
            entry["status"] = fault
            return self._send(fault, {"error": FAULT_BODIES[fault]})
        try:
            status, payload, headers = fake.dispatch(method, url.path, url.query, raw, self.headers, entry)
        except Exception:  # a bug of the fake: answered like Stripe's own 500, the traceback kept in the log
            entry["error"] = traceback.format_exc()
            status, payload, headers = 500, {"error": FAULT_BODIES[500]}, {}
        entry["status"] = status
        if fault == "lost":
            entry["status"] = "lost"
            self.close_connection = True  # carried out, saved; the answer never arrives
            return
        self._send(status, payload, headers)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: "FakeStripe"


class FakeStripe:
    """Stripe's API on 127.0.0.1 (STRIPE_API_BASE = .start()). keys: accepted secret keys (default: any key of
    Stripe's shape)."""

    def __init__(self, state_file: str | Path | None = None, keys: set[str] | None = None,
                 listen: tuple[str, int] = ("127.0.0.1", 0)):
        self.account = Account(state_file)
        self.keys = keys
        self.listen = listen
        self.requests: list[dict] = []
        self.faults: list[tuple[str, str, object]] = []
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self.url = ""

    def start(self) -> str:
        self._httpd, self.url = serve_in_thread(_HTTPServer, self.listen, _Handler, self)
        return self.url

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        stop_server(httpd)

    # -- requests ---------------------------------------------------------------------------------------
    def log(self, entry: dict) -> None:
        with self._lock:
            self.requests.append(entry)

    def fail_next(self, method: str, path: str, *outcomes) -> None:
        """The next requests of method to path (a regex) get these outcomes: 429, 500, 503 or "lost"."""
        with self._lock:
            self.faults += [(method, path, outcome) for outcome in outcomes]

    def take_fault(self, method: str, path: str):
        with self._lock:
            for index, (fault_method, pattern, outcome) in enumerate(self.faults):
                if fault_method == method and re.fullmatch(pattern, path):
                    del self.faults[index]
                    return outcome
        return None

    def dispatch(self, method: str, path: str, query: str, raw: str, headers, entry: dict):
        try:
            live, api_key = self._authenticate(headers.get("Authorization", ""))
            if method == "POST" and raw and "application/x-www-form-urlencoded" not in headers.get("Content-Type", ""):
                raise StripeError(400, "Invalid request: Stripe's v1 API takes form-encoded bodies "
                                  "(application/x-www-form-urlencoded)")
            params = decode_form(parse_qsl(raw if method == "POST" else query, keep_blank_values=True))
            with self.account.lock:
                key = entry["idempotency_key"]
                saved = self.account.state["idempotency"].get(f"{api_key}:{key}") if key and method == "POST" else None
                if saved is not None:
                    if saved["request"] != [method, path, params]:
                        raise StripeError(400, "Keys for idempotent requests can only be used with the same "
                                          "parameters they were first used with. Try using a key other than "
                                          f"'{key}' if you meant to execute a different request.",
                                          type="idempotency_error")
                    entry["replayed"] = True
                    return saved["status"], saved["payload"], {"Idempotent-Replayed": "true"}
                status, payload = self._route(method, path, params, live)
                if key and method == "POST":
                    self.account.state["idempotency"][f"{api_key}:{key}"] = {
                        "request": [method, path, params], "status": status, "payload": payload}
                if method in MUTATING:
                    self.account.save()
                headers = {"Idempotency-Key": key} if key and method == "POST" else {}
                return status, payload, headers
        except StripeError as error:
            return error.status, {"error": error.body}, {}

    def _authenticate(self, authorization: str) -> tuple[bool, str]:
        if not authorization.startswith("Bearer ") or not authorization[7:].strip():
            raise StripeError(401, "You did not provide an API key. You need to provide your API key in the "
                              "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').")
        key = authorization[7:].strip()
        match = KEY_RE.match(key)
        if not match or (self.keys is not None and key not in self.keys):
            raise StripeError(401, f"Invalid API Key provided: {key[:8]}{'*' * 12}{key[-4:]}")
        return match.group(1) == "live", key

    def _route(self, method: str, path: str, params: dict, live: bool) -> tuple[int, dict]:
        for route_method, pattern, action in ROUTES:
            match = pattern.match(path)
            if match and route_method == method:
                kind, object_id = match.group("kind"), match.groupdict().get("id")
                if action == "list":
                    return 200, self.account.list(kind, params, live)
                if action == "create":
                    return 200, self.account.create(kind, params, live)
                if action == "retrieve":
                    return 200, self.account.render(self.account.get(kind, object_id, live))
                if action == "update":
                    return 200, self.account.update(kind, object_id, params, live)
                return 200, self.account.delete(kind, object_id, live)
        raise StripeError(404, f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
                          "or we can help at https://support.stripe.com/.")

    # -- conveniences for tests -------------------------------------------------------------------------
    def objects(self, kind: str) -> list[dict]:
        with self.account.lock:
            return [dict(item) for item in self.account.state[kind].values()]

    def mutating_requests(self) -> list[dict]:
        return [entry for entry in self.requests if entry["method"] in MUTATING]
