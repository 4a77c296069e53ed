"""The hcloud client as bootstrap uses it: retries that cover Hetzner's transient errors and dropped
connections, action waiting, and the catalog check (server types, image, location) that runs before anything
is created."""

from __future__ import annotations

import time
from dataclasses import dataclass
from http import HTTPStatus

import hcloud
import requests
from hcloud import APIException
from hcloud._client import exponential_backoff_function
from hcloud.actions import ActionFailedException, ActionTimeoutException, BoundAction
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError

from settings import Settings, SettingsError

APPLICATION = "mindroom-infra"
# hcloud 2.27 retries only 429, 502, 504 and a few codes; Hetzner also answers 500 and 503 (maintenance,
# unavailable) for transient trouble. These codes and statuses are retried with exponential backoff + jitter.
TRANSIENT_CODES = {"rate_limit_exceeded", "conflict", "bad_gateway", "timeout", "server_error", "service_error",
                   "unavailable", "maintenance"}
TRANSIENT_STATUSES = {HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.INTERNAL_SERVER_ERROR, HTTPStatus.BAD_GATEWAY,
                      HTTPStatus.SERVICE_UNAVAILABLE, HTTPStatus.GATEWAY_TIMEOUT}
MAX_RETRIES = 6
RETRY_CAP_SECONDS = 30.0
ACTION_TIMEOUT_SECONDS = 1800  # a change_type of a large server can take many minutes
SHUTDOWN_TIMEOUT_SECONDS = 120
# Requests that mean the same when sent twice. Any other request whose answer was lost may have been carried
# out (a server created, a network attached): it is never re-sent, see ResponseLost.
REPEATABLE_METHODS = frozenset({"GET", "HEAD", "PUT"})


class BootstrapError(Exception):
    """A one-line failure of a bootstrap run (str is the message)."""


class ResponseLost(requests.ConnectionError):
    """The connection broke after a mutating request was sent: the API may have carried it out. Not a
    Timeout, so the SDK does not re-send it either; bootstrap reads the project again and continues."""

    def __init__(self, request: requests.PreparedRequest, cause: BaseException):
        path = requests.utils.urlparse(request.url).path
        super().__init__(f"the answer to {request.method} {path} was lost ({type(_innermost(cause)).__name__})",
                         request=request)


def _innermost(error: BaseException) -> BaseException:
    """requests and urllib3 wrap the socket's error in their own, as an argument."""
    inner = next((arg for arg in error.args if isinstance(arg, BaseException)), None)
    return _innermost(inner) if inner else error


def _never_sent(error: requests.ConnectionError) -> bool:
    """Refused or unresolvable: no connection was made, so the API cannot have seen the request."""
    reason = error.args[0] if error.args else None
    return isinstance(reason, MaxRetryError) and isinstance(reason.reason, NewConnectionError)


class RetryingTransport(HTTPAdapter):
    """Connection errors (refused, reset, dropped mid-response) are retried like transient API errors, with
    the same backoff; but a mutating request the API may have received is never re-sent (ResponseLost).
    Timeouts of repeatable requests are left to the SDK, which retries them itself."""

    def __init__(self, backoff):
        super().__init__()
        self.backoff = backoff

    def send(self, request, **kwargs):
        for attempt in range(MAX_RETRIES + 1):
            try:
                response = super().send(request, **kwargs)
                response.content  # noqa: B018 - read the body here, so a connection dropped mid-body is seen here
                return response
            except requests.ConnectTimeout:
                raise  # the SDK retries timeouts
            except requests.ReadTimeout as error:
                if request.method not in REPEATABLE_METHODS:
                    raise ResponseLost(request, error) from error
                raise
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as error:
                sent = not (isinstance(error, requests.ConnectionError) and _never_sent(error))
                if sent and request.method not in REPEATABLE_METHODS:
                    raise ResponseLost(request, error) from error
                if attempt == MAX_RETRIES:
                    raise
            time.sleep(self.backoff(attempt))


def describe(error: BaseException, endpoint: str = "the Hetzner API") -> str:
    """One line for any failure a run can meet."""
    if isinstance(error, APIException):
        text = f"Hetzner API error {error.code}: {error.message}"
    elif isinstance(error, requests.RequestException):
        text = f"cannot reach {endpoint} ({type(error).__name__}); run the command again when it answers"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def is_transient(exception: APIException) -> bool:
    if isinstance(exception.code, str):
        return exception.code in TRANSIENT_CODES
    return exception.code in TRANSIENT_STATUSES


def connect(settings: Settings) -> hcloud.Client:
    client = hcloud.Client(
        token=settings.hcloud_token,
        api_endpoint=settings.hcloud_endpoint,
        application_name=APPLICATION,
        poll_interval=settings.hcloud_poll_interval,
        poll_max_retries=int(ACTION_TIMEOUT_SECONDS / max(settings.hcloud_poll_interval, 0.01)),
        timeout=settings.hcloud_timeout,
    )
    # The SDK has no public option for its retry policy; its request loop (pinned hcloud==2.27.0) reads these
    # three attributes of the base client every resource client shares, and sends through its requests
    # session, where the transport for connection errors is mounted. tests/test_bootstrap_faults.py proves
    # both are in effect.
    base = client._client
    backoff = exponential_backoff_function(base=settings.hcloud_retry_backoff, multiplier=2, cap=RETRY_CAP_SECONDS,
                                           jitter=True)
    base._retry_policy = is_transient
    base._retry_interval_func = backoff
    base._retry_max_retries = MAX_RETRIES
    for scheme in ("https://", "http://"):
        base._session.mount(scheme, RetryingTransport(backoff))
    return client


def wait(*actions: BoundAction | None) -> None:
    """Wait for actions to finish; a failed action becomes a BootstrapError naming it."""
    for action in actions:
        if action is None:
            continue
        try:
            action.wait_until_finished()
        except ActionFailedException as failure:
            error = failure.action.error or {}
            raise BootstrapError(f"action {failure.action.command} ({failure.action.id}) failed: "
                                 f"{error.get('message', 'no reason given')}") from None
        except ActionTimeoutException as timeout:
            raise BootstrapError(f"action {timeout.action.command} ({timeout.action.id}) is still running after "
                                 f"{ACTION_TIMEOUT_SECONDS} s; run apply again later") from None


def settle(actions) -> None:
    """Wait for actions whatever their outcome (the next read of the project shows what they left)."""
    for action in actions:
        try:
            action.wait_until_finished()
        except (ActionFailedException, ActionTimeoutException):
            pass


def wait_for_status(client: hcloud.Client, server, status: str, seconds: float, interval: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if client.servers.get_by_id(server.id).status == status:
            return True
        time.sleep(interval)
    return False


@dataclass
class Catalog:
    """The validated server type and image per role, and the location."""

    server_types: dict
    images: dict
    location: object


def check_catalog(client: hcloud.Client, settings: Settings) -> Catalog:
    """Ask the API whether the server types, image and location exist; SettingsError names the setting."""
    types = {server_type.name: server_type for server_type in client.server_types.get_all()}
    locations = {location.name: location for location in client.locations.get_all()}
    if settings.location not in locations:
        raise SettingsError(f"LOCATION={settings.location!r} is not a Hetzner location; "
                            f"available: {', '.join(sorted(locations))}")
    chosen = {}
    for role, setting in (("dokku", "DOKKU_SERVER_TYPE"), ("platform", "PLATFORM_SERVER_TYPE")):
        server_type = types.get(settings.server_type(role))
        if server_type is None:
            raise SettingsError(f"{setting}={settings.server_type(role)!r} is not a Hetzner server type; "
                                f"available: {', '.join(sorted(types))}")
        offered = {entry.location.name: entry.available is not False for entry in server_type.locations or []}
        if offered and not offered.get(settings.location):
            raise SettingsError(f"{setting}={server_type.name!r} is not available in LOCATION={settings.location!r}")
        chosen[role] = server_type
    images = {}
    for architecture in sorted({server_type.architecture for server_type in chosen.values()}):
        images[architecture] = client.images.get_by_name_and_architecture(settings.server_image, architecture)
        if images[architecture] is None:
            raise SettingsError(f"SERVER_IMAGE={settings.server_image!r} is not a Hetzner system image for "
                                f"{architecture} servers, such as debian-13")
    return Catalog(server_types=chosen, images={role: images[t.architecture] for role, t in chosen.items()},
                   location=locations[settings.location])
