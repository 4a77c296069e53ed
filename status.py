"""Status of the platform host: `pyinfra inventory.py status.py` (read-only: it runs no operation).

Prints per service its container state and health, whether its host port answers, its /health result,
and the TLS certificate's names and expiry. One fact gathers everything in one round trip per host.
"""

import shlex

from pyinfra import host
from pyinfra.api import FactBase

from settings import PLATFORM_SERVICES
from tasks.facts import Certificate
from tasks.tls import certificate_path


class PlatformStatus(FactBase):
    """Lines "service|container state|health|port HTTP status|/health body" for every service."""

    def command(self, project, services):
        checks = []
        for name, port, health in services:
            container = f"{project}-{name}-1"
            health_cmd = (f"curl -s -m 5 http://127.0.0.1:{port}{health} | head -c 40 | tr -d '\\n'" if health
                          else "echo -")
            checks.append(
                f"printf '%s|%s|%s|%s|%s\\n' {shlex.quote(name)} "
                f"\"$(docker inspect -f '{{{{.State.Status}}}}' {container} 2>/dev/null || echo missing)\" "
                f"\"$(docker inspect -f '{{{{if .State.Health}}}}{{{{.State.Health.Status}}}}{{{{else}}}}-{{{{end}}}}' "
                f"{container} 2>/dev/null || echo -)\" "
                f"\"$(curl -s -m 5 -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port}/ || true)\" "
                f"\"$({health_cmd} || true)\""
            )
        return "; ".join(checks)

    def process(self, output):
        return [line.split("|") for line in output]


if "platform" in host.groups:
    rows = host.get_fact(
        PlatformStatus, project=host.data.platform_compose_project,
        services=[(service.name, service.host_port, service.health_path) for service in PLATFORM_SERVICES],
    )
    certificate = host.get_fact(Certificate, path=certificate_path(host.data.domain))
    lines = [f"{host.name}:", f"  {'service':<20}{'container':<12}{'health':<12}{'port':<12}/health"]
    for service, (name, state, health, port_status, health_body) in zip(PLATFORM_SERVICES, rows):
        lines.append(f"  {name:<20}{state:<12}{health:<12}{service.host_port}:{port_status or '---':<7}{health_body}")
    if certificate:
        lines.append(f"  TLS certificate: {', '.join(certificate['names'])}; expires {certificate['not_after']}")
    else:
        lines.append(f"  TLS certificate: none yet for {host.data.domain} (TLS pending: nginx serves plain HTTP)")
    print("\n".join(lines), flush=True)
