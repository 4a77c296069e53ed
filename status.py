"""Status of the whole fleet: `pyinfra inventory.py status.py` (read-only: it runs no operation).

One table for every host (reachable, uptime, load, memory, disk of / and the volume, reboot required), the
platform's services (container, health, port, /health), its certificate, Prometheus' scrape targets, the alerts
firing in Alertmanager and the newest backup per host (tasks/fleet.py). Each host answers in one round trip; the
last host to answer prints the table. Any FAIL row ends the run with a pyinfra error line (exit status 1).
"""

from pyinfra import host, state
from pyinfra.api.exceptions import PyinfraError

from tasks.fleet import HostHealth, host_rows, platform_rows, print_table
from tasks.inventory_hosts import platform_host

platform = platform_host()
limits = platform.data.monitoring if platform else None
# Rows of every host, kept with pyinfra's state: the hosts are read in parallel, each runs this file once.
reports = state.__dict__.setdefault("mindroom_status", {})
rows = host_rows(host.name, host.get_fact(HostHealth, mounts=["/", host.data.mount_point]), limits)
if "platform" in host.groups:
    rows += platform_rows(host.data)
reports[host.name] = rows

active = {member.name for member in state.inventory.get_active_hosts()}
if active <= set(reports):
    unreachable = [("host", member.name, "FAIL", "unreachable over SSH") for member in state.inventory
                   if member.name not in reports]
    table = unreachable + [row for member in state.inventory if member.name in reports for row in reports[member.name]]
    print_table(table)
    failing = sum(row[2] == "FAIL" for row in table)
    if failing:
        raise PyinfraError(f"status: {failing} check(s) FAIL (see the table)")
