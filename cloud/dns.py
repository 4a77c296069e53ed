"""DNS records in Hetzner's DNS (the Cloud API's zones): created and updated when DNS_ZONE is set and exists.

Records bootstrap creates carry its labels; only those are ever deleted (when no longer wanted, or by destroy).
A record set that exists without our labels (made by hand) gets its values updated, its labels left alone.
A record set labelled for another environment (staging with production's DOMAIN) is never changed: it is a
conflict, and plan and apply stop before anything is sent.
"""

from __future__ import annotations

from collections import defaultdict

from hcloud.zones.domain import ZoneRecord

from settings import MANAGED_BY, Settings

from .api import wait
from .desired import dns_records, ipv6_address
from .observe import is_ours
from .steps import DNS, Context, Step


def addresses(servers: dict) -> dict[str, tuple[str | None, str | None]]:
    return {
        name: (server.public_net.ipv4.ip if server.public_net.ipv4 else None,
               ipv6_address(server.public_net.ipv6.ip if server.public_net.ipv6 else None))
        for name, server in servers.items()
    }


def relative(fqdn: str, zone: str) -> str:
    return "@" if fqdn == zone else fqdn[: -len(zone) - 1]


def wanted_rrsets(settings: Settings, servers: dict) -> dict[tuple[str, str], list[str]] | None:
    """(relative name, type) -> sorted values; None while a server the records point at does not exist."""
    rrsets = defaultdict(list)
    for record in dns_records(settings, addresses(servers)):
        if record.value is None:
            return None
        rrsets[(relative(record.name, settings.dns_zone), record.type)].append(record.value)
    return {key: sorted(values) for key, values in rrsets.items()}


def _title(name: str, rtype: str, zone: str) -> str:
    return f"{rtype} {zone if name == '@' else name + '.' + zone}"


def other_environment(rrset, settings: Settings) -> str | None:
    """The environment a record set bootstrap made belongs to, when it is not this one."""
    labels = rrset.labels or {}
    if labels.get("managed-by") != MANAGED_BY or is_ours(rrset, settings):
        return None
    return labels.get("environment") or "(none)"


def conflict_steps(ctx: Context) -> list[Step]:
    """Our record names that another environment's record sets hold (rrset_steps never meets those)."""
    settings = ctx.settings
    names = {(relative(record.name, settings.dns_zone), record.type) for record in dns_records(settings, {})}
    steps = []
    for name, rtype in sorted(names):
        rrset = ctx.observed.rrsets.get((name, rtype))
        owner = other_environment(rrset, settings) if rrset else None
        if owner:
            steps.append(Step("conflict", "dns record", _title(name, rtype, settings.dns_zone),
                              f"belongs to environment {owner} and is never changed from ENVIRONMENT="
                              f"{settings.environment}; give this environment a DOMAIN of its own (e.g. "
                              "staging.<domain>) or unset DNS_ZONE"))
    return steps


def plan_dns(ctx: Context) -> list[Step]:
    zone_name = ctx.settings.dns_zone
    if not zone_name:
        return []
    if ctx.observed.zone is None:
        return [Step("warning", "dns zone", zone_name, "DNS_ZONE does not exist in Hetzner DNS: create the records "
                     "that `python bootstrap.py output` lists by hand")]
    conflicts = conflict_steps(ctx)  # checked by name, also before the servers (and so the values) exist
    if conflicts:
        return conflicts
    wanted = wanted_rrsets(ctx.settings, ctx.observed.servers)
    if wanted is None:
        return [Step("create", "dns records", zone_name, "A/AAAA for the domain, app, admin, api, webhooks and the "
                     "wildcard, once the servers exist", _sync_after_create, DNS, "dns")]
    return rrset_steps(ctx, wanted)


def _sync_after_create(ctx: Context) -> None:
    servers = {server.name: server for server in ctx.client.servers.get_all(label_selector=ctx.settings.label_selector)}
    for step in rrset_steps(ctx, wanted_rrsets(ctx.settings, servers) or {}):
        if step.run:
            step.run(ctx)


def rrset_steps(ctx: Context, wanted: dict) -> list[Step]:
    zone, existing, settings = ctx.observed.zone, ctx.observed.rrsets, ctx.settings
    steps = []
    for (name, rtype), values in sorted(wanted.items()):
        fqdn = _title(name, rtype, settings.dns_zone)
        records = [ZoneRecord(value=value) for value in values]
        rrset = existing.get((name, rtype))
        if rrset is None:
            steps.append(Step("create", "dns record", fqdn, " ".join(values), lambda ctx, name=name, rtype=rtype,
                              records=records: wait(ctx.client.zones.create_rrset(
                                  zone, name=name, type=rtype, records=records, labels=settings.labels()).action),
                              DNS, "dns"))
        elif sorted(record.value for record in rrset.records or []) != values:
            current = " ".join(record.value for record in rrset.records or [])
            steps.append(Step("update", "dns record", fqdn, f"{current} -> {' '.join(values)}",
                              lambda ctx, rrset=rrset, records=records: wait(
                                  ctx.client.zones.set_rrset_records(rrset, records)), DNS, "dns"))
        else:
            steps.append(Step("unchanged", "dns record", fqdn, " ".join(values)))
    for (name, rtype), rrset in sorted(existing.items()):
        if (name, rtype) not in wanted and is_ours(rrset, settings):
            steps.append(Step("delete", "dns record", _title(name, rtype, settings.dns_zone), "no longer wanted",
                              lambda ctx, rrset=rrset: wait(ctx.client.zones.delete_rrset(rrset).action), DNS, "dns"))
    return steps
