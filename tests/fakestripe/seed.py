"""The prices the platform sells, made in a (fake) Stripe account through the real library, as an operator
would in the dashboard. Idempotent: prices are found again by their lookup keys."""

from __future__ import annotations

import stripe

from settings import STRIPE_PRICE_SETTINGS

PLANS = {"STRIPE_PRICE_STARTER": 900, "STRIPE_PRICE_PROFESSIONAL": 2900, "STRIPE_PRICE_ENTERPRISE": 9900}


def ensure_prices(api_base: str, secret_key: str) -> dict[str, str]:
    """{STRIPE_PRICE_*: price id}, creating the product and the monthly prices that are missing."""
    client = stripe.StripeClient(secret_key, base_addresses={"api": api_base})
    lookup_keys = {name: f"mindroom-{name.removeprefix('STRIPE_PRICE_').lower()}" for name in STRIPE_PRICE_SETTINGS}
    found = {price.lookup_key: price.id for price in client.v1.prices.list(
        params={"lookup_keys": list(lookup_keys.values()), "active": True, "limit": 100}).auto_paging_iter()}
    missing = [name for name in STRIPE_PRICE_SETTINGS if lookup_keys[name] not in found]
    if missing:
        product = client.v1.products.create(params={"name": "MindRoom"})
        for name in missing:
            price = client.v1.prices.create(params={
                "product": product.id, "currency": "eur", "unit_amount": PLANS[name],
                "recurring": {"interval": "month"}, "lookup_key": lookup_keys[name]})
            found[lookup_keys[name]] = price.id
    return {name: found[lookup_keys[name]] for name in STRIPE_PRICE_SETTINGS}
