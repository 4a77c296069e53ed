"""The Stripe side: the platform's webhook endpoint (URL, events, API version) and its signing secret, through
Stripe's official library, only when STRIPE_SECRET_KEY is set.

The endpoint is this environment's when its metadata carries our labels (managed-by, project, environment), so
staging and production sharing an account never see each other's. An endpoint with our URL made by hand is
adopted (kept in sync, never deleted) only when STRIPE_WEBHOOK_SECRET holds its secret. Stripe returns the
signing secret only at creation: apply writes it to SECRETS_DIR (0600) for the platform's .env and never shows
it. The prices the platform sells must exist and be active. Everything is read before anything is changed.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import time
from dataclasses import dataclass

import stripe

from local_secrets import write_private
from settings import STRIPE_PRICE_SETTINGS, STRIPE_WEBHOOK_API_VERSION, STRIPE_WEBHOOK_EVENTS, Settings, SettingsError

from .api import BootstrapError
from .steps import Context, Step

RESOURCE = "stripe webhook"
TARGET = "stripe"
# The library retries connection errors, 409 and 5xx itself (a POST keeps its Idempotency-Key through them); it
# leaves 429 to the caller, so _call retries those.
MAX_RETRIES = 6
RETRY_CAP_SECONDS = 30.0

# The library's debug log carries response bodies, which at creation include the signing secret.
logging.getLogger("stripe").setLevel(logging.INFO)


@dataclass
class StripeObserved:
    client: stripe.StripeClient
    live: bool
    ours: list[dict]  # this environment's endpoints (our metadata), newest first
    by_hand: dict | None  # an endpoint with our URL and no managed-by metadata


def _describe(error: stripe.StripeError, settings: Settings) -> str:
    if isinstance(error, stripe.APIConnectionError):
        return f"cannot reach Stripe at {settings.stripe_api_base} ({type(error).__name__}); run the command again"
    body = error.json_body.get("error", {}) if isinstance(error.json_body, dict) else {}
    kind = body.get("code") or body.get("type") or type(error).__name__
    return f"Stripe API error {error.http_status} {kind}: {' '.join(str(error.user_message or error).split())}"


def _call(settings: Settings, request, *args, **kwargs):
    """One API call; a failure becomes a one-line BootstrapError. 429s are retried with exponential backoff and
    jitter (a creation passes its own Idempotency-Key, so every try is the same request to Stripe)."""
    for attempt in range(MAX_RETRIES + 1):
        try:
            return request(*args, **kwargs)
        except stripe.RateLimitError as error:
            if attempt == MAX_RETRIES:
                raise BootstrapError(_describe(error, settings)) from None
            delay = min(settings.stripe_retry_backoff * 2 ** attempt, RETRY_CAP_SECONDS)
            time.sleep(delay * random.uniform(0.5, 1.0))
        except stripe.StripeError as error:
            raise BootstrapError(_describe(error, settings)) from None


def connect(settings: Settings) -> stripe.StripeClient:
    if os.environ.get("STRIPE_LOG") == "debug":
        raise SettingsError("STRIPE_LOG=debug prints Stripe's responses, which include the webhook signing "
                            "secret; unset STRIPE_LOG (or use info)")
    settings.stripe_retry_backoff, settings.stripe_allow_mode_mismatch  # noqa: B018 - validated before any request
    return stripe.StripeClient(settings.required("STRIPE_SECRET_KEY"), base_addresses={"api": settings.stripe_api_base},
                               max_network_retries=MAX_RETRIES)


def _endpoints(settings: Settings, client: stripe.StripeClient) -> list[dict]:
    """Every webhook endpoint of the account in the key's mode, as plain dicts (all pages)."""
    def fetch():
        return [endpoint.to_dict() for endpoint in client.v1.webhook_endpoints.list(params={"limit": 100})
                .auto_paging_iter()]
    return _call(settings, fetch)


def _is_ours(endpoint: dict, settings: Settings) -> bool:
    metadata = endpoint.get("metadata") or {}
    return all(metadata.get(key) == value for key, value in settings.labels().items())


def _price(client: stripe.StripeClient, price_id: str) -> dict | None:
    try:
        return client.v1.prices.retrieve(price_id).to_dict()
    except stripe.InvalidRequestError as error:
        if error.http_status == 404:
            return None
        raise


def observe(settings: Settings) -> StripeObserved | None:
    """None without STRIPE_SECRET_KEY. Local checks first, then the prices, then the endpoints (GETs only)."""
    live = settings.stripe_live_mode
    if live is None:
        return None
    price_ids = {name: settings.required(name, "the id of an active Stripe price (price_...), checked when "
                                               "STRIPE_SECRET_KEY is set") for name in STRIPE_PRICE_SETTINGS}
    client = connect(settings)
    for name, price_id in price_ids.items():
        price = _call(settings, _price, client, price_id)
        if price is None:
            raise SettingsError(f"{name}={price_id!r} is not a price of this Stripe account in "
                                f"{'live' if live else 'test'} mode")
        if not price.get("active"):
            raise SettingsError(f"{name}={price_id!r} is archived in Stripe (active=false); use an active price")
    endpoints = _endpoints(settings, client)
    by_hand = next((endpoint for endpoint in endpoints if endpoint["url"] == settings.stripe_webhook_url
                    and not (endpoint.get("metadata") or {}).get("managed-by")), None)
    return StripeObserved(client=client, live=live, ours=[e for e in endpoints if _is_ours(e, settings)],
                          by_hand=by_hand)


def mode_mismatch(settings: Settings, observed: StripeObserved | None) -> str:
    """A live key outside production, or a test key in production: the warning, or ""."""
    if observed is None or observed.live == (settings.environment == "production"):
        return ""
    mode = "live" if observed.live else "test"
    return f"STRIPE_SECRET_KEY is a {mode}-mode key and ENVIRONMENT={settings.environment}"


def refuse_mode_mismatch(ctx: Context) -> None:
    """apply goes on with a mismatched key only when STRIPE_ALLOW_MODE_MISMATCH=true."""
    mismatch = mode_mismatch(ctx.settings, ctx.stripe)
    if mismatch and not ctx.settings.stripe_allow_mode_mismatch:
        raise SettingsError(f"{mismatch}: use the other key, or set STRIPE_ALLOW_MODE_MISMATCH=true to go on")


# -- plan ----------------------------------------------------------------------------------------------------
def plan_stripe(ctx: Context) -> list[Step]:
    settings, observed = ctx.settings, ctx.stripe
    if observed is None:
        return []
    url, steps = settings.stripe_webhook_url, []
    mismatch = mode_mismatch(settings, observed)
    if mismatch:
        allowed = ("allowed by STRIPE_ALLOW_MODE_MISMATCH" if settings.stripe_allow_mode_mismatch
                   else "apply refuses unless STRIPE_ALLOW_MODE_MISMATCH=true")
        steps.append(Step("warning", RESOURCE, url, f"{mismatch}: {allowed}"))
    # Two of ours (another apply at the same time, a copy by hand): the oldest stays, the first one made.
    *duplicates, current = observed.ours or [None]
    steps += [Step("delete", RESOURCE, endpoint["id"], f"a second endpoint of this environment ({current['id']} stays)",
                   lambda ctx, endpoint=endpoint: _delete(ctx, endpoint), target=TARGET) for endpoint in duplicates]
    setting_secret = settings.get("STRIPE_WEBHOOK_SECRET")
    if current is None and observed.by_hand is not None:
        if not setting_secret:
            raise BootstrapError(
                f"a Stripe webhook endpoint for {url} made by hand exists ({observed.by_hand['id']}): set "
                "STRIPE_WEBHOOK_SECRET to its signing secret (Stripe dashboard) to adopt it, or delete it there")
        return steps + _sync(settings, observed.by_hand, adopted=True)
    if current is None:
        if setting_secret:
            steps.append(Step("warning", RESOURCE, url, "STRIPE_WEBHOOK_SECRET is set and wins over the new "
                              "endpoint's secret in the platform's .env: unset it after apply"))
        return steps + [Step("create", RESOURCE, url, f"{len(STRIPE_WEBHOOK_EVENTS)} events, api version "
                             f"{STRIPE_WEBHOOK_API_VERSION}; signing secret kept in "
                             f"{settings.stripe_webhook_secret_file}", _create, target=TARGET)]
    if not settings.stripe_webhook_secret():
        raise BootstrapError(
            f"the Stripe webhook endpoint {current['id']} is this environment's, but its signing secret is in neither "
            f"{settings.stripe_webhook_secret_file} nor STRIPE_WEBHOOK_SECRET (Stripe returns it only at creation): "
            "set STRIPE_WEBHOOK_SECRET from Stripe's dashboard, or delete the endpoint there and apply again")
    return steps + _sync(settings, current, adopted=False)


def _sync(settings: Settings, endpoint: dict, adopted: bool) -> list[Step]:
    """Update drift in place. The API version cannot be: our endpoint is replaced, an adopted one warned about."""
    name, events = endpoint["id"], endpoint.get("enabled_events") or []
    changes, drift, steps = {}, [], []
    if endpoint["url"] != settings.stripe_webhook_url:
        changes["url"] = settings.stripe_webhook_url
        drift.append(f"url {endpoint['url']} -> {settings.stripe_webhook_url}")
    if sorted(events) != sorted(STRIPE_WEBHOOK_EVENTS):
        changes["enabled_events"] = list(STRIPE_WEBHOOK_EVENTS)
        added = [f"+{event}" for event in sorted(set(STRIPE_WEBHOOK_EVENTS) - set(events))]
        removed = [f"-{event}" for event in sorted(set(events) - set(STRIPE_WEBHOOK_EVENTS))]
        drift.append("events " + " ".join(added + removed))
    if endpoint.get("status") == "disabled":
        changes["disabled"] = False
        drift.append("disabled -> enabled")
    owner = "made by hand, adopted: never deleted" if adopted else "this environment's"
    if endpoint.get("api_version") != STRIPE_WEBHOOK_API_VERSION:
        versions = f"api version {endpoint.get('api_version') or '(account default)'} -> {STRIPE_WEBHOOK_API_VERSION}"
        if not adopted:
            return [Step("replace", RESOURCE, name, f"{versions}, which Stripe cannot change in place: a new endpoint, "
                         "then this one deleted; deploy the platform afterwards (new signing secret)",
                         lambda ctx: _replace(ctx, endpoint), target=TARGET)]
        steps.append(Step("warning", RESOURCE, name, f"{versions}: Stripe cannot change it in place; delete the "
                          "endpoint in Stripe's dashboard and apply again for a new one"))
    if changes:
        steps.append(Step("update", RESOURCE, name, f"{'; '.join(drift)} ({owner})",
                          lambda ctx: _call(settings, ctx.stripe.client.v1.webhook_endpoints.update, name,
                                            params=changes), target=TARGET))
    return steps or [Step("unchanged", RESOURCE, name, f"{endpoint['url']}, {len(events)} events ({owner})")]


# -- apply and destroy ---------------------------------------------------------------------------------------------
def _create(ctx: Context) -> None:
    """One creation: every retry (the library's and ours) sends the same Idempotency-Key, so Stripe replays a
    lost answer instead of making a second endpoint. The secret goes straight to SECRETS_DIR."""
    settings = ctx.settings
    params = {"url": settings.stripe_webhook_url, "enabled_events": list(STRIPE_WEBHOOK_EVENTS),
              "api_version": STRIPE_WEBHOOK_API_VERSION, "metadata": settings.labels(),
              "description": f"MindRoom {settings.environment}: kept by mindroom-infra (bootstrap.py apply)"}
    endpoint = _call(settings, ctx.stripe.client.v1.webhook_endpoints.create, params=params,
                     options={"idempotency_key": f"mindroom-infra-{secrets.token_hex(16)}"})
    write_private(settings.stripe_webhook_secret_file, endpoint.secret + "\n")


def _replace(ctx: Context, endpoint: dict) -> None:
    _create(ctx)
    _delete(ctx, endpoint)


def _delete(ctx: Context, endpoint: dict) -> None:
    def delete():
        try:
            ctx.stripe.client.v1.webhook_endpoints.delete(endpoint["id"])
        except stripe.InvalidRequestError as error:
            if error.http_status != 404:  # 404: gone already (a retry after a lost answer), as wanted
                raise
    _call(ctx.settings, delete)


def plan_destroy(ctx: Context, phase: int) -> list[Step]:
    """Delete this environment's endpoints (never one made by hand) and the secret kept for them. Fills in
    ctx.stripe (no price check: destroy needs none)."""
    settings = ctx.settings
    live = settings.stripe_live_mode
    if live is None:
        return []
    client = connect(settings)
    ours = [endpoint for endpoint in _endpoints(settings, client) if _is_ours(endpoint, settings)]
    ctx.stripe = StripeObserved(client=client, live=live, ours=ours, by_hand=None)
    return [Step("delete", RESOURCE, endpoint["id"], f"{endpoint['url']}, and {settings.stripe_webhook_secret_file}",
                 lambda ctx, endpoint=endpoint: _destroy(ctx, endpoint), phase, TARGET) for endpoint in ours]


def _destroy(ctx: Context, endpoint: dict) -> None:
    _delete(ctx, endpoint)
    ctx.settings.stripe_webhook_secret_file.unlink(missing_ok=True)
