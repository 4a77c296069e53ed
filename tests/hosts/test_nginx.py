"""tasks/nginx.py on the platform host: valid config, every vhost routed by Host header, basic auth on admin."""

import base64
import http.client
import ssl

import pytest

from settings import PLATFORM_SERVICES, load_settings
from admin_password import admin_credentials
from tests.hosts import live
from tests.hosts.roles import group_data

testinfra_hosts = live.hosts("platform")
SETTINGS = load_settings()
DATA = group_data("platform")
DOMAIN = SETTINGS.domain
PORTS = {service.name: service.host_port for service in PLATFORM_SERVICES}
# (vhost, path, what answers): the stand-in images name themselves on / and /provision.
ROUTES = [
    (f"app.{DOMAIN}", "/provision", "customer-portal"),
    (f"api.{DOMAIN}", "/provision", "dokku-provisioner"),
    (f"api.{DOMAIN}", "/health", "ok"),
    (f"webhooks.{DOMAIN}", "/provision", "dokku-provisioner"),
    (f"webhooks.{DOMAIN}", "/", "stripe-handler"),
]


def _curl(host, name: str, path: str, *options: str) -> str:
    """Fetch https://name/path from the host itself (HTTPS once issued, else HTTP), following nothing."""
    if host.file(f"/etc/letsencrypt/live/{DOMAIN}/fullchain.pem").exists:
        url, resolve = f"https://{name}{path}", f"--resolve {name}:443:127.0.0.1 -k"
    else:
        url, resolve = f"http://{name}{path}", f"--resolve {name}:80:127.0.0.1"
    return host.check_output(f"curl -s {resolve} {' '.join(options)} {url}")


def test_nginx_config_valid(host):
    assert host.run("nginx -t").rc == 0


def test_nginx_running(host):
    assert host.service("nginx").is_enabled
    assert host.service("nginx").is_running


def test_server_tokens_off(host):
    headers = _curl(host, DOMAIN, "/", "-D -", "-o /dev/null")
    server = [line for line in headers.splitlines() if line.lower().startswith("server:")]
    assert server and server[0].strip().lower() == "server: nginx"


@pytest.mark.parametrize("name", [DOMAIN, f"www.{DOMAIN}"])
def test_landing_page(host, name):
    assert "<h1>MindRoom</h1>" in _curl(host, name, "/")


@pytest.mark.parametrize("name,path,expected", ROUTES)
def test_vhost_routes(host, name, path, expected):
    assert expected in _curl(host, name, path)


def test_api_body_limit(host):
    assert f"client_max_body_size {DATA['nginx_api_max_body_size']};" in host.check_output("nginx -T 2>/dev/null")


def test_htpasswd_file(host):
    htpasswd = host.file(DATA["nginx_htpasswd"])
    assert (htpasswd.user, htpasswd.group, htpasswd.mode) == ("root", "www-data", 0o640)
    assert htpasswd.content_string.startswith(f"{DATA['nginx_admin_user']}:$2")


def test_admin_requires_auth(host):
    status = _curl(host, f"admin.{DOMAIN}", "/", "-o /dev/null", "-w '%{http_code}'")
    assert status == "401"


def _admin_status(host_data, authorization: str | None) -> int:
    """Ask admin.DOMAIN from this machine (the password never reaches a command line)."""
    tls = not host_data.get("_http_only")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # test_tls checks the certificate
    connection = (http.client.HTTPSConnection(host_data["public_ipv4"], 443, context=context, timeout=10)
                  if tls else http.client.HTTPConnection(host_data["public_ipv4"], 80, timeout=10))
    headers = {"Host": f"admin.{DOMAIN}"}
    if authorization:
        headers["Authorization"] = authorization
    connection.request("GET", "/", headers=headers)
    return connection.getresponse().status


def test_admin_with_generated_password(host, host_data):
    host_data = {**host_data, "_http_only": not host.file(f"/etc/letsencrypt/live/{DOMAIN}/fullchain.pem").exists}
    password, _ = admin_credentials(SETTINGS.secrets_dir)
    good = "Basic " + base64.b64encode(f"{DATA['nginx_admin_user']}:{password}".encode()).decode()
    bad = "Basic " + base64.b64encode(f"{DATA['nginx_admin_user']}:wrong-{password}".encode()).decode()
    assert _admin_status(host_data, None) == 401
    assert _admin_status(host_data, bad) == 401
    assert _admin_status(host_data, good) == 200
