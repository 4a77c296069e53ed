"""tasks/tls.py on the platform host: one certificate for every platform name, served over HTTPS, HTTP
redirecting, renewals by certbot.timer with the nginx deploy hook."""

import time

import pytest

from settings import load_settings
from tasks.tls import CERTBOT_DROP_IN, DEPLOY_HOOK, certificate_path
from tests.hosts import live

testinfra_hosts = live.hosts("platform")
SETTINGS = load_settings()
NAMES = SETTINGS.platform_hostnames()


def test_certificate_covers_every_name(host):
    san = host.check_output(f"openssl x509 -in {certificate_path(SETTINGS.domain)} -noout -ext subjectAltName")
    for name in NAMES:
        assert f"DNS:{name}" in san


@pytest.mark.parametrize("name", NAMES)
def test_https_serves_the_certificate(host, name):
    san = host.check_output(
        f"openssl s_client -connect 127.0.0.1:443 -servername {name} </dev/null 2>/dev/null "
        "| openssl x509 -noout -ext subjectAltName")
    assert f"DNS:{name}" in san


@pytest.mark.parametrize("name", NAMES)
def test_http_redirects_to_https(host, name):
    answer = host.check_output(
        f"curl -s -o /dev/null -w '%{{http_code}} %{{redirect_url}}' -H 'Host: {name}' http://127.0.0.1/x")
    assert answer == f"301 https://{name}/x"


def test_acme_server_setting(host):
    assert f"server = {SETTINGS.acme_server}" in host.file("/etc/letsencrypt/cli.ini").content_string


def test_renewal_timer_and_hook(host):
    assert host.service("certbot.timer").is_enabled
    assert host.service("certbot.timer").is_running
    hook = host.file(DEPLOY_HOOK)
    assert hook.is_file and hook.mode & 0o111


def test_renewal_trusts_the_acme_ca(host):
    drop_in = host.file(CERTBOT_DROP_IN)
    if SETTINGS.acme_ca_bundle:
        assert "REQUESTS_CA_BUNDLE=" in drop_in.content_string
    else:
        assert not drop_in.exists


def test_renewal_dry_run(host):
    """certbot renew --dry-run against the configured ACME server, the way the timer's service runs it."""
    env = f"REQUESTS_CA_BUNDLE={host.file(CERTBOT_DROP_IN).content_string.split('=', 2)[2].strip()} " \
        if SETTINGS.acme_ca_bundle else ""
    for _ in range(3):  # certbot.timer may hold certbot's lock at that moment: try again shortly after
        result = host.run(f"{env}certbot renew --dry-run --no-random-sleep-on-renew")
        if "Another instance of Certbot is already running" not in result.stderr:
            break
        time.sleep(10)
    log = host.run("tail -n 40 /var/log/letsencrypt/letsencrypt.log").stdout
    assert result.rc == 0, f"{result.stdout[-1000:]}\n{result.stderr[-2000:]}\nletsencrypt.log:\n{log}"
