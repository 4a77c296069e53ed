"""bootstrap.py's Stripe webhook endpoint, against the fake Stripe API (tests/fakestripe) through the real
`stripe` library, next to the fake Hetzner Cloud."""

import secrets
import stat

import pytest
import stripe

from settings import STRIPE_WEBHOOK_API_VERSION, STRIPE_WEBHOOK_EVENTS, SettingsError, load_settings
from tests.fakecloud.harness import Harness
from tests.fakestripe.seed import ensure_prices

# Keys of the fake's two modes, made at run time: only their prefix means anything to Stripe.
TEST_KEY, LIVE_KEY = f"sk_test_{secrets.token_hex(12)}", f"sk_live_{secrets.token_hex(12)}"
URL = "https://webhooks.mindroom.test/stripe"
LABELS = {"managed-by": "mindroom-infra", "project": "mindroom", "environment": "staging"}


def stripe_settings(tmp_path, fake_stripe, key=TEST_KEY, environment="staging") -> dict:
    return {"ENVIRONMENT": environment, "STRIPE_SECRET_KEY": key, "STRIPE_API_BASE": fake_stripe.url,
            "SECRETS_DIR": str(tmp_path / "secrets" / environment), "STRIPE_RETRY_BACKOFF": "0.01",
            "OUTPUTS_FILE": str(tmp_path / f"outputs.{environment}.json"),
            **ensure_prices(fake_stripe.url, key)}


@pytest.fixture
def h(tmp_path, fake_cloud, fake_stripe):
    return Harness(tmp_path, fake_cloud, **stripe_settings(tmp_path, fake_stripe))


def operator(fake_stripe, key=TEST_KEY) -> stripe.StripeClient:
    """Someone else using the same account (the dashboard, by hand)."""
    return stripe.StripeClient(key, base_addresses={"api": fake_stripe.url})


def stripe_run(h, fake_stripe, *argv, **overrides):
    """bootstrap.py, plus the Stripe requests it sent (and the mutating ones among them)."""
    start = len(fake_stripe.requests)
    result = h.run(*argv, **overrides)
    sent = fake_stripe.requests[start:]
    return result, sent, [entry for entry in sent if entry["method"] in ("POST", "DELETE")]


def endpoints(fake_stripe) -> list[dict]:
    return fake_stripe.objects("webhook_endpoints")


def secret_file(h):
    return load_settings(h.env).stripe_webhook_secret_file


def rows(output: str, kind: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip().startswith(f"{kind} ") and "stripe" in line]


def test_plan_then_apply_creates_the_endpoint_and_keeps_its_secret_private(h, fake_stripe):
    plan, _, mutations = stripe_run(h, fake_stripe, "plan")
    assert plan.code == 2 and mutations == []
    assert any(URL in row for row in rows(plan.out, "create")), plan.out
    applied, _, mutations = stripe_run(h, fake_stripe, "apply", "--yes")
    assert applied.code == 0, applied.err
    assert [(m["method"], m["path"]) for m in mutations] == [("POST", "/v1/webhook_endpoints")]
    [endpoint] = endpoints(fake_stripe)
    assert endpoint["url"] == URL and endpoint["enabled_events"] == list(STRIPE_WEBHOOK_EVENTS)
    assert endpoint["api_version"] == STRIPE_WEBHOOK_API_VERSION and endpoint["metadata"] == LABELS
    path = secret_file(h)
    assert path.read_text() == endpoint["secret"] + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    texts = [applied.out, applied.err, plan.out, (h.tmp_path / "outputs.staging.json").read_text()]
    assert not any(endpoint["secret"] in text for text in texts), "the signing secret is never shown"
    assert load_settings(h.env).stripe_webhook_secret() == endpoint["secret"]


def test_second_apply_sends_no_mutating_request(h, fake_stripe):
    assert h.run("apply", "--yes").code == 0
    again, sent, mutations = stripe_run(h, fake_stripe, "apply", "--yes")
    assert again.code == 0 and mutations == [] and again.mutations == []
    assert sent, "it did look"
    assert any(endpoints(fake_stripe)[0]["id"] in row for row in rows(again.out, "unchanged"))
    assert stripe_run(h, fake_stripe, "plan")[0].code == 0


def test_drifted_events_and_a_disabled_endpoint_are_updated_in_one_request(h, fake_stripe):
    assert h.run("apply", "--yes").code == 0
    [endpoint] = endpoints(fake_stripe)
    operator(fake_stripe).v1.webhook_endpoints.update(endpoint["id"], params={
        "enabled_events": ["invoice.payment_failed", "invoice.paid"], "disabled": True})
    plan, _, _ = stripe_run(h, fake_stripe, "plan")
    assert plan.code == 2
    [update] = rows(plan.out, "update")
    assert "+customer.subscription.created" in update and "-invoice.paid" in update and "disabled -> enabled" in update
    applied, _, mutations = stripe_run(h, fake_stripe, "apply", "--yes")
    assert applied.code == 0 and [m["path"] for m in mutations] == [f"/v1/webhook_endpoints/{endpoint['id']}"]
    [after] = endpoints(fake_stripe)
    assert sorted(after["enabled_events"]) == sorted(STRIPE_WEBHOOK_EVENTS) and after["status"] == "enabled"
    assert stripe_run(h, fake_stripe, "apply", "--yes")[2] == []


def test_a_changed_url_is_updated(h, fake_stripe):
    assert h.run("apply", "--yes").code == 0
    moved, _, mutations = stripe_run(h, fake_stripe, "apply", "--yes", DOMAIN="staging.mindroom.test")
    assert moved.code == 0 and len(mutations) == 1 and "url " in "".join(rows(moved.out, "update"))
    assert [e["url"] for e in endpoints(fake_stripe)] == ["https://webhooks.staging.mindroom.test/stripe"]


def test_another_api_version_replaces_our_endpoint_with_a_new_secret(h, fake_stripe):
    assert h.run("apply", "--yes").code == 0
    [old] = endpoints(fake_stripe)
    with fake_stripe.account.lock:
        fake_stripe.account.state["webhook_endpoints"][old["id"]]["api_version"] = "2024-06-20"
    plan = h.run("plan")
    assert plan.code == 2 and "2024-06-20 -> " + STRIPE_WEBHOOK_API_VERSION in "".join(rows(plan.out, "replace"))
    applied, _, mutations = stripe_run(h, fake_stripe, "apply", "--yes")
    assert applied.code == 0 and [m["method"] for m in mutations] == ["POST", "DELETE"]  # new one first
    [new] = endpoints(fake_stripe)
    assert new["id"] != old["id"] and new["api_version"] == STRIPE_WEBHOOK_API_VERSION
    assert secret_file(h).read_text().strip() == new["secret"] != old["secret"]


def test_an_endpoint_made_by_hand_is_adopted_only_with_its_secret(h, fake_stripe):
    by_hand = operator(fake_stripe).v1.webhook_endpoints.create(params={
        "url": URL, "enabled_events": ["invoice.payment_failed"], "api_version": STRIPE_WEBHOOK_API_VERSION})
    for command in (["plan"], ["apply", "--yes"]):
        refused, _, mutations = stripe_run(h, fake_stripe, *command)
        assert refused.code == 1 and mutations == [] and refused.mutations == []
        assert refused.err == (f"error: a Stripe webhook endpoint for {URL} made by hand exists ({by_hand.id}): set "
                               "STRIPE_WEBHOOK_SECRET to its signing secret (Stripe dashboard) to adopt it, or "
                               "delete it there\n")
    h.env["STRIPE_WEBHOOK_SECRET"] = by_hand.secret
    adopted, _, mutations = stripe_run(h, fake_stripe, "apply", "--yes")
    assert adopted.code == 0, adopted.err
    assert [m["path"] for m in mutations] == [f"/v1/webhook_endpoints/{by_hand.id}"], "events updated, nothing created"
    assert "adopted" in "".join(rows(adopted.out, "update"))
    [endpoint] = endpoints(fake_stripe)
    assert endpoint["metadata"] == {} and sorted(endpoint["enabled_events"]) == sorted(STRIPE_WEBHOOK_EVENTS)
    assert not secret_file(h).exists(), "the secret stays where the operator put it"
    destroyed, _, mutations = stripe_run(h, fake_stripe, "destroy", "--yes")
    assert destroyed.code == 0 and mutations == [] and len(endpoints(fake_stripe)) == 1, "never deleted"


def test_our_endpoint_without_its_secret_stops_with_what_to_do(h, fake_stripe):
    assert h.run("apply", "--yes").code == 0
    secret = secret_file(h).read_text().strip()
    secret_file(h).unlink()
    lost, _, mutations = stripe_run(h, fake_stripe, "apply", "--yes")
    assert lost.code == 1 and mutations == [] and len(lost.err.splitlines()) == 1
    assert "nor STRIPE_WEBHOOK_SECRET" in lost.err and "set STRIPE_WEBHOOK_SECRET" in lost.err
    assert h.run("plan", STRIPE_WEBHOOK_SECRET=secret).code == 0


def test_environments_sharing_an_account_never_touch_each_others_endpoint(tmp_path, fake_cloud, fake_stripe):
    (tmp_path / "staging").mkdir()
    (tmp_path / "qa").mkdir()
    staging = Harness(tmp_path / "staging", fake_cloud, **stripe_settings(tmp_path, fake_stripe))
    qa = Harness(tmp_path / "qa", fake_cloud, DOMAIN="qa.mindroom.test",
                 **stripe_settings(tmp_path, fake_stripe, environment="qa"))
    for harness in (staging, qa, staging, qa):
        assert harness.run("apply", "--yes").code == 0
    assert sorted(e["metadata"]["environment"] for e in endpoints(fake_stripe)) == ["qa", "staging"]
    assert secret_file(staging).read_text() != secret_file(qa).read_text()
    destroyed, _, mutations = stripe_run(staging, fake_stripe, "destroy", "--yes", "--include-volumes")
    assert destroyed.code == 0 and [m["method"] for m in mutations] == ["DELETE"]
    assert [e["metadata"]["environment"] for e in endpoints(fake_stripe)] == ["qa"]
    assert not secret_file(staging).exists() and secret_file(qa).exists()
    assert stripe_run(qa, fake_stripe, "apply", "--yes")[2] == []


def test_a_second_endpoint_of_this_environment_is_deleted_the_first_one_stays(h, fake_stripe):
    assert h.run("apply", "--yes").code == 0
    [first] = endpoints(fake_stripe)
    duplicate = operator(fake_stripe).v1.webhook_endpoints.create(params={
        "url": URL, "enabled_events": list(STRIPE_WEBHOOK_EVENTS), "metadata": LABELS,
        "api_version": STRIPE_WEBHOOK_API_VERSION})
    plan = h.run("plan")
    assert plan.code == 2 and [row.split()[3] for row in rows(plan.out, "delete")] == [duplicate.id]
    assert h.run("apply", "--yes").code == 0
    assert [e["id"] for e in endpoints(fake_stripe)] == [first["id"]]


def test_destroy_deletes_our_endpoint_and_its_secret(h, fake_stripe):
    assert h.run("apply", "--yes").code == 0
    plan = h.run("destroy", stdin="no\n")
    assert plan.code == 1 and len(endpoints(fake_stripe)) == 1 and rows(plan.out, "delete")[-1].split()[3] == (
        endpoints(fake_stripe)[0]["id"])
    assert h.run("destroy", "--yes").code == 0
    assert endpoints(fake_stripe) == [] and not secret_file(h).exists()
    again, _, mutations = stripe_run(h, fake_stripe, "destroy", "--yes")
    assert again.code == 0 and mutations == [] and "Nothing to destroy." in again.out


def test_transient_errors_are_retried_and_a_lost_answer_makes_no_second_endpoint(h, fake_stripe):
    fake_stripe.fail_next("GET", "/v1/webhook_endpoints", 500, 429)
    fake_stripe.fail_next("POST", "/v1/webhook_endpoints", 429, 503, "lost")
    applied, sent, _ = stripe_run(h, fake_stripe, "apply", "--yes")
    assert applied.code == 0, applied.err
    creations = [entry for entry in sent if entry["method"] == "POST"]
    assert [entry["status"] for entry in creations] == [429, 503, "lost", 200]
    assert len({entry["idempotency_key"] for entry in creations}) == 1, "every try is the same request"
    assert creations[-1]["replayed"], "Stripe answered the last try from the lost one's saved result"
    [endpoint] = endpoints(fake_stripe)
    assert secret_file(h).read_text().strip() == endpoint["secret"]
    listings = [e["status"] for e in sent if e["method"] == "GET" and e["path"] == "/v1/webhook_endpoints"]
    assert listings[:3] == [500, 429, 200]


def test_a_lost_delete_is_done(h, fake_stripe):
    assert h.run("apply", "--yes").code == 0
    fake_stripe.fail_next("DELETE", "/v1/webhook_endpoints/.*", "lost")
    destroyed, sent, _ = stripe_run(h, fake_stripe, "destroy", "--yes")
    assert destroyed.code == 0, destroyed.err
    assert [e["status"] for e in sent if e["method"] == "DELETE"] == ["lost", 404]
    assert endpoints(fake_stripe) == []


def test_rate_limits_give_up_with_one_line(h, fake_stripe):
    fake_stripe.fail_next("GET", "/v1/prices/.*", *[429] * 7)
    result, _, _ = stripe_run(h, fake_stripe, "plan")
    assert result.code == 1 and result.requests == []
    assert result.err == ("error: Stripe API error 429 rate_limit: Request rate limit exceeded. Learn more about rate "
                          "limits here https://stripe.com/docs/rate-limits.\n")


@pytest.mark.parametrize("change, message", [
    ({"STRIPE_PRICE_PROFESSIONAL": None}, "STRIPE_PRICE_PROFESSIONAL is required: the id of an active Stripe price"),
    ({"STRIPE_PRICE_STARTER": "price_nope"}, "STRIPE_PRICE_STARTER='price_nope' is not a price of this Stripe "
                                             "account in test mode"),
    ("archive", "STRIPE_PRICE_ENTERPRISE="),
    ({"STRIPE_SECRET_KEY": "pk_test_123"}, "STRIPE_SECRET_KEY is not a Stripe secret key"),
    ({"STRIPE_SECRET_KEY": "sk_test_wrong"}, "Stripe API error 401 invalid_request_error: Invalid API Key provided"),
    ({"STRIPE_RETRY_BACKOFF": "soon"}, "STRIPE_RETRY_BACKOFF='soon' is not a number"),
    ({"STRIPE_ALLOW_MODE_MISMATCH": "maybe"}, "STRIPE_ALLOW_MODE_MISMATCH='maybe' is not a boolean"),
    ({"STRIPE_API_BASE": "http://api.stripe.com"}, "STRIPE_API_BASE='http://api.stripe.com' is not https"),
])
def test_bad_stripe_settings_stop_before_anything_is_sent_to_hetzner(h, fake_stripe, change, message):
    if change == "archive":
        operator(fake_stripe).v1.prices.update(h.env["STRIPE_PRICE_ENTERPRISE"], params={"active": False})
        change, message = {}, f"{message}'{h.env['STRIPE_PRICE_ENTERPRISE']}' is archived in Stripe (active=false)"
    fake_stripe.keys = {TEST_KEY}
    for command in (["plan"], ["apply", "--yes"]):
        result, _, mutations = stripe_run(h, fake_stripe, *command, **change)
        assert result.code == 1 and result.err.startswith("error: ") and len(result.err.splitlines()) == 1
        assert message in result.err and "Traceback" not in result.err
        assert result.requests == [] and mutations == [], "Hetzner is asked only after the Stripe checks"


@pytest.mark.parametrize("environment, key", [("staging", LIVE_KEY), ("production", TEST_KEY)])
def test_a_key_of_the_other_mode_is_a_warning_and_apply_needs_the_setting(tmp_path, fake_cloud, fake_stripe,
                                                                         environment, key):
    h = Harness(tmp_path, fake_cloud, **stripe_settings(tmp_path, fake_stripe, key=key, environment=environment))
    plan = h.run("plan")
    assert plan.code == 2 and any("STRIPE_ALLOW_MODE_MISMATCH=true" in row for row in rows(plan.out, "warning"))
    refused, _, mutations = stripe_run(h, fake_stripe, "apply", "--yes")
    assert refused.code == 1 and mutations == [] and refused.mutations == []
    assert refused.err.startswith(f"error: STRIPE_SECRET_KEY is a {'live' if key == LIVE_KEY else 'test'}-mode key "
                                  f"and ENVIRONMENT={environment}: ") and "STRIPE_ALLOW_MODE_MISMATCH" in refused.err
    allowed = h.run("apply", "--yes", STRIPE_ALLOW_MODE_MISMATCH="true")
    assert allowed.code == 0 and len(endpoints(fake_stripe)) == 1


def test_matching_modes_give_no_warning(tmp_path, fake_cloud, fake_stripe):
    h = Harness(tmp_path, fake_cloud, **stripe_settings(tmp_path, fake_stripe, key=LIVE_KEY, environment="production"))
    applied = h.run("apply", "--yes")
    assert applied.code == 0 and rows(applied.out, "warning") == []
    assert endpoints(fake_stripe)[0]["livemode"] is True


def test_without_a_stripe_key_stripe_is_not_asked(tmp_path, fake_cloud, fake_stripe):
    h = Harness(tmp_path, fake_cloud, STRIPE_API_BASE=fake_stripe.url)
    assert h.run("apply", "--yes").code == 0 and h.run("destroy", "--yes").code == 0
    assert fake_stripe.requests == []


def test_stripe_debug_log_is_refused(h, fake_stripe, monkeypatch):
    monkeypatch.setenv("STRIPE_LOG", "debug")
    result, sent, _ = stripe_run(h, fake_stripe, "plan")
    assert result.code == 1 and "STRIPE_LOG=debug" in result.err and sent == []


def test_the_platform_env_takes_the_secret_from_secrets_dir_unless_the_setting_is_set(h, fake_stripe):
    with pytest.raises(SettingsError, match="STRIPE_WEBHOOK_SECRET is required: run `python bootstrap.py apply`"):
        load_settings({**h.env, "SUPABASE_URL": "https://db.mindroom.test", "SUPABASE_SERVICE_KEY": "x",
                       "STRIPE_PUBLISHABLE_KEY": "x", "REGISTRY": "ghcr.io/mindroom", "REGISTRY_USER": "x",
                       "REGISTRY_TOKEN": "x", "LETSENCRYPT_EMAIL": "ops@mindroom.test"}).platform_secrets()
    assert h.run("apply", "--yes").code == 0
    settings = load_settings(h.env)
    assert settings.stripe_webhook_secret() == endpoints(fake_stripe)[0]["secret"]
    assert settings.stripe_webhook_secret() in settings.secret_values()
    assert load_settings({**h.env, "STRIPE_WEBHOOK_SECRET": "whsec_by_hand"}).stripe_webhook_secret() == "whsec_by_hand"


def test_a_secrets_dir_open_to_others_is_refused(h, fake_stripe):
    directory = secret_file(h).parent
    directory.mkdir(parents=True, mode=0o755)
    directory.chmod(0o755)
    result, _, _ = stripe_run(h, fake_stripe, "apply", "--yes")
    assert result.code == 1 and "SECRETS_DIR=" in result.err and "is not private (mode 0755" in result.err


def test_local_checks_come_before_any_stripe_request(h, fake_stripe):
    result, sent, _ = stripe_run(h, fake_stripe, "plan", HCLOUD_TOKEN=None)
    assert result.code == 1 and "HCLOUD_TOKEN is required" in result.err and sent == []
