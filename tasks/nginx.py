"""nginx on the platform host: the landing page, the four vhosts, basic auth for admin, safe reloads.

Both variants of the vhosts are always rendered: /etc/nginx/mindroom/http.conf (before certificates: the
sites over plain HTTP) and https.conf (TLS, with HTTP redirecting to HTTPS). /usr/local/sbin/mindroom-nginx-apply
enables the variant the certificate allows, validates with `nginx -t` and reloads; if nginx rejects the new
configuration it restores the last good one and fails, so an invalid template never takes nginx down.
The script runs only when a file changed, and from certbot's deploy hook once a certificate is issued.

The admin password is generated locally by the first deploy of the platform (SECRETS_DIR/admin-password, 0600;
the directory is created 0700, an existing one must be private) with its bcrypt hash beside it, so re-runs upload
the same hash; only the hash reaches the host. Group data names the directory only (`nginx_admin_secrets_dir`):
loading it writes nothing. `python -m tasks.nginx admin-password` prints it;
`python -m tasks.nginx rotate-admin-password` makes a new one (the next deploy installs it).
"""

from __future__ import annotations

import re
import secrets
import sys
from pathlib import Path

import bcrypt
from pyinfra import host
from pyinfra.api import DeployError, deploy
from pyinfra.operations import server
from pyinfra.operations.util import any_changed

from local_secrets import private_directory, write_atomically
from settings import PLATFORM_SERVICES, SettingsError, load_settings
from tasks import ops

APPLY_SCRIPT = "/usr/local/sbin/mindroom-nginx-apply"
CONFIG_DIR = "/etc/nginx/mindroom"
PASSWORD_FILE = "admin-password"
HASH_FILE = "admin-password.bcrypt"


# -- the admin password, kept locally ----------------------------------------------------------------------
BCRYPT_MAX_BYTES = 72  # bcrypt reads no further (bcrypt 5 refuses longer passwords)
_BCRYPT_HASH_RE = re.compile(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}")


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode().strip()
    except UnicodeDecodeError:
        raise SettingsError(f"{path} is not UTF-8 text; delete it to generate a new one") from None


def admin_credentials(secrets_dir: Path, rotate: bool = False) -> tuple[str, str]:
    """(password, bcrypt hash) of the admin dashboard, generated once in SECRETS_DIR. A password bcrypt cannot
    take or a hash file that is not a bcrypt hash stops with one line: neither is ever deployed."""
    password_path, hash_path = secrets_dir / PASSWORD_FILE, secrets_dir / HASH_FILE
    private_directory(secrets_dir)
    if rotate or not password_path.is_file():
        write_atomically(password_path, secrets.token_urlsafe(18) + "\n")
    password = _read(password_path)
    if not password:
        raise SettingsError(f"{password_path} is empty; delete it to generate a new admin password")
    if len(password.encode()) > BCRYPT_MAX_BYTES:
        raise SettingsError(f"the admin password in {password_path} is {len(password.encode())} bytes; bcrypt takes "
                            f"at most {BCRYPT_MAX_BYTES}: shorten it, or delete it to generate one")
    hashed = _read(hash_path) if hash_path.is_file() else ""
    if hashed and not _BCRYPT_HASH_RE.fullmatch(hashed):
        raise SettingsError(f"{hash_path} is not a bcrypt hash; delete it (the next deploy hashes the password "
                            "again)")
    # bcrypt is slow by design (about 0.2 s per check, on every deploy): check only a hash not newer than the
    # password file (made before the password was last written) and mark a hash that still matches (touch).
    if hashed and hash_path.stat().st_mtime_ns > password_path.stat().st_mtime_ns:
        return password, hashed
    if hashed and bcrypt.checkpw(password.encode(), hashed.encode()):
        hash_path.touch()
        return password, hashed
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
    write_atomically(hash_path, hashed + "\n")
    return password, hashed


# -- the deploy ------------------------------------------------------------------------------------------------
def _template(name: str, dest: str, mode: str = "644", **data):
    return ops.template(name=f"Render {dest}", src=f"templates/nginx/{name}", dest=dest, mode=mode, **data)


@deploy("Nginx: configure")
def configure():
    data = host.data
    services = {service.name: service for service in PLATFORM_SERVICES}
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
    server.shell(name="Validate and reload nginx (mindroom-nginx-apply)", commands=[APPLY_SCRIPT],
                 _if=any_changed(*changes))


def main(argv: list[str]) -> int:
    commands = {"admin-password": False, "rotate-admin-password": True}
    if len(argv) != 1 or argv[0] not in commands:
        print("usage: python -m tasks.nginx admin-password | rotate-admin-password", file=sys.stderr)
        return 2
    try:
        password, _ = admin_credentials(load_settings().secrets_dir, rotate=commands[argv[0]])
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(password)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
