"""nginx on the platform host: the landing page, the four vhosts, basic auth for admin, safe reloads.

Both variants of the vhosts are always rendered: /etc/nginx/mindroom/http.conf (before certificates: the
sites over plain HTTP) and https.conf (TLS, with HTTP redirecting to HTTPS). /usr/local/sbin/mindroom-nginx-apply
enables the variant the certificate allows, validates with `nginx -t` and reloads; if nginx rejects the new
configuration it restores the last good one and fails, so an invalid template never takes nginx down.
The script runs only when a file changed, and from certbot's deploy hook once a certificate is issued.

Basic auth for admin: the password is kept locally (admin_password.py) and made by this task's first run, not
when group data is loaded (`nginx_admin_secrets_dir` names the directory only); only its bcrypt hash reaches the
host.
"""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import DeployError, deploy
from pyinfra.operations import server

from admin_password import admin_credentials
from settings import SettingsError
from tasks import ops

APPLY_SCRIPT = "/usr/local/sbin/mindroom-nginx-apply"
CONFIG_DIR = "/etc/nginx/mindroom"


def _template(name: str, dest: str, mode: str = "644", **data):
    return ops.template(name=f"Render {dest}", src=f"templates/nginx/{name}", dest=dest, mode=mode, **data)


@deploy("Nginx: configure")
def configure():
    data = host.data
    services = {service.name: service for service in data.platform_services}
    context = dict(
        domain=data.domain, services=services, landing_root=data.nginx_landing_root,
        acme_root=data.nginx_acme_root, htpasswd=data.nginx_htpasswd, api_max_body_size=data.nginx_api_max_body_size,
        cert_dir=f"/etc/letsencrypt/live/{data.domain}",
    )

    for directory in (data.nginx_landing_root, data.nginx_acme_root, CONFIG_DIR):
        ops.directory(name=f"Create {directory}", path=directory)
    # The landing page and .htpasswd are read per request: they need no reload.
    ops.put(name=f"Upload {data.nginx_landing_root}/index.html", src="files/landing/index.html",
            dest=f"{data.nginx_landing_root}/index.html", mode="644")
    try:
        # Made here, where the platform's tasks run, not when group data is loaded: other deploys write nothing.
        password_hash = admin_credentials(Path(data.nginx_admin_secrets_dir))[1]
    except SettingsError as error:
        raise DeployError(str(error)) from None
    ops.secret_file(name=f"Write {data.nginx_htpasswd}", dest=data.nginx_htpasswd,
                    content=f"{data.nginx_admin_user}:{password_hash}\n", group="www-data", mode="640")
    changes = [
        _template("mindroom.conf.j2", "/etc/nginx/conf.d/mindroom.conf"),
        _template("mindroom-proxy.conf.j2", "/etc/nginx/snippets/mindroom-proxy.conf"),
        _template("sites.conf.j2", f"{CONFIG_DIR}/http.conf", tls=False, **context),
        _template("sites.conf.j2", f"{CONFIG_DIR}/https.conf", tls=True, **context),
        _template("mindroom-nginx-apply.j2", APPLY_SCRIPT, mode="755", domain=data.domain, config_dir=CONFIG_DIR),
        ops.absent(name="Remove the stock default site", path="/etc/nginx/sites-enabled/default"),
    ]
    ops.services(name="Enable nginx", units=["nginx"])
    ops.on_change(name="Validate and reload nginx (mindroom-nginx-apply)", changes=changes, operation=server.shell,
                  commands=[APPLY_SCRIPT])

