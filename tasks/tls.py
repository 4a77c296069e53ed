"""TLS for the platform host: Let's Encrypt certificates via certbot, HTTP-01 through nginx's webroot.

- One certificate (cert name = DOMAIN) for DOMAIN, app., admin., api. and webhooks.; the ACME directory is
  the ACME_SERVER setting (Let's Encrypt production by default, staging with LETSENCRYPT_STAGING=true, Pebble in
  the testbed). certbot --webroot, not --nginx: the vhosts are ours (templates), certbot must not edit them.
- /etc/letsencrypt/cli.ini carries the server, email and authenticator for every certbot run, including
  the renewals of certbot.timer; a CA bundle for the ACME server (ACME_CA_BUNDLE, testbed only) is trusted
  through REQUESTS_CA_BUNDLE, for the deploy's run and for certbot.service through a drop-in.
- certbot runs only when no certificate covers all the names (read with the host snapshot, tasks/facts.py).
  When validation fails (DNS not pointing here yet) the deploy does not fail: nginx keeps serving HTTP and the
  deploy says that TLS is pending.
- Once issued, mindroom-nginx-apply (tasks/nginx.py) switches nginx to HTTPS with HTTP redirecting; the
  deploy hook runs it again after every renewal.
"""

from __future__ import annotations

import logging

from pyinfra import host
from pyinfra.api import FunctionCommand, QuoteString, StringCommand, deploy
from pyinfra.operations import systemd

from tasks import ops, snapshot
from tasks.nginx import APPLY_SCRIPT
from tasks.snapshot import snapshot_operation

logger = logging.getLogger("pyinfra")
CERTBOT_DROP_IN = "/etc/systemd/system/certbot.service.d/mindroom-ca.conf"
DEPLOY_HOOK = "/etc/letsencrypt/renewal-hooks/deploy/mindroom-nginx"


def certificate_path(domain: str) -> str:
    return f"/etc/letsencrypt/live/{domain}/fullchain.pem"


def _obtain(state, host, command: StringCommand, names: list[str]):
    """Run certbot; on failure warn that TLS is pending instead of failing the deploy."""
    ok, output = host.run_shell_command(command)
    if ok:
        host.run_shell_command(StringCommand(APPLY_SCRIPT))
        logger.info(f"[{host.name}] TLS: certificate issued for {', '.join(names)}; nginx serves HTTPS")
        return
    reason = " ".join(line for line in output.stderr_lines[-4:])
    logger.warning(
        f"[{host.name}] TLS PENDING: certbot could not get a certificate for {', '.join(names)}; nginx serves "
        f"plain HTTP. Point the DNS records at this host and deploy again. certbot said: {reason}"
    )


@snapshot_operation(lambda domain, **_: {"certs": [certificate_path(domain)]})
def certificate(domain: str, names: list[str], webroot: str, ca_bundle: str | None):
    """Obtain the certificate `domain` for names unless one already covers them all. Custom: pyinfra has no
    certbot operation."""
    current = snapshot.read()["certs"].get(certificate_path(domain))
    if current and set(names) <= set(current["names"]):
        host.noop(f"certificate {domain} covers {', '.join(names)} (until {current['not_after']})")
        return
    # Host data in a command line is always quoted (QuoteString), however it was validated.
    env = ["env", QuoteString(f"REQUESTS_CA_BUNDLE={ca_bundle}")] if ca_bundle else []
    domains = [arg for name in names for arg in ("-d", QuoteString(name))]
    command = StringCommand(*env, "certbot", "certonly", "--cert-name", QuoteString(domain), "--expand", "--webroot",
                            "-w", QuoteString(webroot), *domains)
    yield FunctionCommand(_obtain, (command, names), {})


@deploy("TLS: certificates")
def certificates():
    data = host.data
    bundle = data.tls_ca_bundle_path if data.acme_ca_bundle else None

    if data.acme_ca_bundle:
        ops.put(name=f"Upload the ACME server's CA to {bundle}", src=data.acme_ca_bundle, dest=bundle, mode="644")
    else:
        ops.absent(name=f"Remove {data.tls_ca_bundle_path}", path=data.tls_ca_bundle_path)
    drop_in = ops.template(
        name=f"Render {CERTBOT_DROP_IN}", src="templates/tls/certbot-ca.conf.j2", dest=CERTBOT_DROP_IN,
        mode="644", ca_bundle=bundle,
    ) if bundle else ops.absent(name=f"Remove {CERTBOT_DROP_IN}", path=CERTBOT_DROP_IN)
    ops.template(name="Render /etc/letsencrypt/cli.ini", src="templates/tls/cli.ini.j2",
                 dest="/etc/letsencrypt/cli.ini", mode="644", server=data.acme_server, email=data.letsencrypt_email)
    ops.template(name=f"Render {DEPLOY_HOOK}", src="templates/tls/mindroom-nginx.j2", dest=DEPLOY_HOOK,
                 mode="755", apply_script=APPLY_SCRIPT)
    ops.on_change(name="Reload systemd for certbot's drop-in", changes=[drop_in], operation=systemd.daemon_reload)
    ops.services(name="Enable certbot.timer (renewals)", units=["certbot.timer"])
    certificate(name=f"Obtain the certificate for {data.domain} (certbot, only if missing)",
                domain=data.domain, names=data.platform_hostnames, webroot=data.nginx_acme_root,
                ca_bundle=bundle)
