"""The fake Stripe API keeps the promises of the real one that bootstrap relies on, spoken to through the real
`stripe` library (pinned 16.1.0).

Facts it is built on, with their sources:
- stripe/stripe-python v15.4.0b1 (same code in 16.1.0): `stripe/_encode.py` "Always use indexed format for
  arrays" (`enabled_events[0]=...`), nested hashes as `metadata[key]=value`; `stripe/_api_requestor.py` sends
  `Authorization: Bearer <key>`, form-encoded POST bodies and an Idempotency-Key on every POST, kept for the
  library's own retries; `stripe/_http_client.py` `_should_retry` retries connection errors, 409 and >= 500
  but not 429 (unless `Stripe-Should-Retry: true`), sleeping 0.5 s doubling to 5 s.
- docs.stripe.com/api/errors: the envelope `{"error": {"type", "code", "message", "param"}}`, 404 for a
  missing object (`resource_missing`); /rate-limits: 429; /api/idempotent_requests: the first result is
  saved and replayed, other parameters with the same key are an error; /api/webhook_endpoints: `secret`
  "Only returned at creation"; /api/pagination: newest first, `limit`, `starting_after`, `has_more`.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import stripe

from tests.fakestripe import decode_form

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk_test_facts"


def client(fake_stripe, key=KEY, retries=0) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": fake_stripe.url}, max_network_retries=retries)


def create_endpoint(fake_stripe, **params):
    return client(fake_stripe).v1.webhook_endpoints.create(params={
        "url": "https://webhooks.example.org/stripe", "enabled_events": ["invoice.paid"], **params})


def test_the_library_sends_form_bodies_with_indexed_arrays_bearer_auth_and_an_idempotency_key(fake_stripe):
    endpoint = create_endpoint(fake_stripe, metadata={"environment": "staging"})
    [request] = fake_stripe.requests
    assert request["body"] == ("url=https%3A%2F%2Fwebhooks.example.org%2Fstripe&enabled_events[0]=invoice.paid"
                               "&metadata[environment]=staging")
    assert request["idempotency_key"] and request["stripe_version"] == stripe.api_version
    assert endpoint.secret.startswith("whsec_"), "the creation's answer has the secret"
    retrieved = client(fake_stripe).v1.webhook_endpoints.retrieve(endpoint.id)
    assert "secret" not in retrieved.to_dict(), "no other answer has it"


def test_bracket_notation_decodes_as_stripe_reads_it():
    assert decode_form([("a[b]", "1"), ("c[0]", "x"), ("c[1]", "y"), ("d", "")]) == {
        "a": {"b": "1"}, "c": ["x", "y"], "d": ""}


@pytest.mark.parametrize("call, status, code, message", [
    (lambda c: c.v1.prices.retrieve("price_missing"), 404, "resource_missing", "No such price: 'price_missing'"),
    (lambda c: c.v1.webhook_endpoints.create(params={"url": "https://x.org/s", "enabled_events": ["invoice.paid"],
                                                     "colour": "red"}), 400, "parameter_unknown",
     "Received unknown parameter: colour"),
    (lambda c: c.v1.webhook_endpoints.create(params={"url": "https://x.org/s"}), 400, "parameter_missing",
     "Missing required param: enabled_events."),
    (lambda c: c.v1.webhook_endpoints.create(params={"url": "not a url", "enabled_events": ["invoice.paid"]}),
     400, "url_invalid", "Invalid URL: not a url"),
])
def test_error_envelopes(fake_stripe, call, status, code, message):
    with pytest.raises(stripe.InvalidRequestError) as error:
        call(client(fake_stripe))
    assert (error.value.http_status, error.value.code, error.value.user_message) == (status, code, message)
    assert error.value.json_body["error"]["type"] == "invalid_request_error"


def test_keys_and_modes(fake_stripe):
    fake_stripe.keys = {KEY}
    with pytest.raises(stripe.AuthenticationError, match="Invalid API Key provided: sk_test_"):
        client(fake_stripe, "sk_test_other").v1.webhook_endpoints.list()
    fake_stripe.keys = None
    endpoint = create_endpoint(fake_stripe)
    with pytest.raises(stripe.InvalidRequestError, match="a similar object exists in test mode, but a live mode key"):
        client(fake_stripe, "sk_live_facts").v1.webhook_endpoints.retrieve(endpoint.id)
    assert list(client(fake_stripe, "sk_live_facts").v1.webhook_endpoints.list().auto_paging_iter()) == []


def test_idempotency_replays_the_first_result_and_refuses_other_parameters(fake_stripe):
    endpoints = client(fake_stripe).v1.webhook_endpoints
    first = endpoints.create(params={"url": "https://a.org/s", "enabled_events": ["invoice.paid"]},
                             options={"idempotency_key": "k1"})
    again = endpoints.create(params={"url": "https://a.org/s", "enabled_events": ["invoice.paid"]},
                             options={"idempotency_key": "k1"})
    assert again.id == first.id and again.secret == first.secret and fake_stripe.requests[-1]["replayed"]
    assert len(fake_stripe.objects("webhook_endpoints")) == 1
    with pytest.raises(stripe.IdempotencyError, match="same parameters"):
        endpoints.create(params={"url": "https://b.org/s", "enabled_events": ["invoice.paid"]},
                         options={"idempotency_key": "k1"})


def test_the_library_retries_5xx_and_lost_answers_with_the_same_key_but_not_429(fake_stripe):
    fake_stripe.fail_next("POST", "/v1/webhook_endpoints", 500, "lost")
    endpoint = client(fake_stripe, retries=3).v1.webhook_endpoints.create(params={
        "url": "https://a.org/s", "enabled_events": ["invoice.paid"]})
    assert [r["status"] for r in fake_stripe.requests] == [500, "lost", 200] and fake_stripe.requests[-1]["replayed"]
    assert len({r["idempotency_key"] for r in fake_stripe.requests}) == 1
    assert [e["id"] for e in fake_stripe.objects("webhook_endpoints")] == [endpoint.id]
    fake_stripe.fail_next("GET", "/v1/webhook_endpoints", 429)
    with pytest.raises(stripe.RateLimitError):
        client(fake_stripe, retries=3).v1.webhook_endpoints.list()


def test_lists_are_newest_first_and_paginated(fake_stripe):
    ids = [create_endpoint(fake_stripe).id for _ in range(7)]
    page = client(fake_stripe).v1.webhook_endpoints.list(params={"limit": 3})
    assert [e.id for e in page.data] == ids[::-1][:3] and page.has_more
    assert [e.id for e in page.auto_paging_iter()] == ids[::-1]
    assert [r["query"] for r in fake_stripe.requests[-3:]] == [
        "limit=3", f"limit=3&starting_after={ids[4]}", f"limit=3&starting_after={ids[1]}"]


def test_update_merges_metadata_and_delete_answers_deleted(fake_stripe):
    endpoint = create_endpoint(fake_stripe, metadata={"a": "1", "b": "2"})
    endpoints = client(fake_stripe).v1.webhook_endpoints
    updated = endpoints.update(endpoint.id, params={"metadata": {"b": "", "c": "3"}, "disabled": True})
    assert updated.metadata.to_dict() == {"a": "1", "c": "3"} and updated.status == "disabled"
    deleted = endpoints.delete(endpoint.id)
    assert deleted.deleted is True and fake_stripe.objects("webhook_endpoints") == []


def test_daemon_prints_its_url_and_keeps_its_state(tmp_path):
    state = tmp_path / "stripe.json"
    process = subprocess.Popen([sys.executable, "-m", "tests.fakestripe", "--listen", "127.0.0.1:0",
                                "--state", str(state), "--key", KEY], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        created = stripe.StripeClient(KEY, base_addresses={"api": url}).v1.webhook_endpoints.create(params={
            "url": "https://a.org/s", "enabled_events": ["invoice.paid"]})
        assert created.id in state.read_text()
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
