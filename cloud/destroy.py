"""Teardown of what bootstrap owns (found by its labels only): servers first, then what they used.
Volumes are kept, still protected, unless include_volumes. Adopted SSH keys carry no labels of ours, so
they are never even listed here. A firewall of ours that also protects something we do not own (applied
there by hand) is kept: deleting our servers takes it off them, and it stays where it was put by hand."""

from __future__ import annotations

from hcloud import APIException
from hcloud.firewalls.domain import FirewallResource

from .api import BootstrapError, wait
from .observe import is_ours
from .steps import Context, Step

SERVERS, REST = range(2)


def plan_destroy(ctx: Context, include_volumes: bool) -> list[Step]:
    observed = ctx.observed
    steps = [Step("delete", "server", name, "lift delete protection, delete",
                  lambda ctx, server=server: _delete_server(ctx, server), SERVERS)
             for name, server in sorted(observed.servers.items())]
    for name, volume in sorted(observed.volumes.items()):
        attached_elsewhere = volume.server is not None and observed.server_by_id(volume.server.id) is None
        if not include_volumes:
            steps.append(Step("unchanged", "volume", name, f"kept ({volume.size} GB, delete protection stays); "
                              "--include-volumes deletes it"))
        elif attached_elsewhere:
            steps.append(Step("warning", "volume", name, "attached to a server bootstrap does not own: not deleted"))
        else:
            steps.append(Step("delete", "volume", name, f"{volume.size} GB: lift delete protection, delete",
                              lambda ctx, volume=volume: _delete_volume(ctx, volume), REST))
    steps += [_firewall_step(ctx, name, firewall) for name, firewall in sorted(observed.firewalls.items())]
    steps += [Step("delete", "network", name, "", lambda ctx, net=net: ctx.client.networks.delete(net), REST)
              for name, net in sorted(observed.networks.items())]
    steps += [Step("delete", "placement group", name, "", lambda ctx, pg=pg: ctx.client.placement_groups.delete(pg),
                   REST) for name, pg in sorted(observed.placement_groups.items())]
    steps += [Step("delete", "ssh key", name, "", lambda ctx, key=key: ctx.client.ssh_keys.delete(key), REST)
              for name, key in sorted(observed.keys.items())]
    steps += [Step("delete", "dns record", f"{rtype} {name}", "",
                   lambda ctx, rrset=rrset: wait(ctx.client.zones.delete_rrset(rrset).action), REST, "dns")
              for (name, rtype), rrset in sorted(observed.rrsets.items()) if is_ours(rrset, ctx.settings)]
    return steps


def _delete_server(ctx: Context, server) -> None:
    wait(ctx.client.servers.change_protection(server, delete=False, rebuild=False))
    wait(ctx.client.servers.delete(server))


def _delete_volume(ctx: Context, volume) -> None:
    wait(ctx.client.volumes.change_protection(volume, delete=False))
    ctx.client.volumes.delete(volume)


def _foreign_uses(ctx: Context, firewall) -> list[str]:
    """What the firewall is applied to besides our servers (which destroy deletes, taking it off them)."""
    uses = []
    for resource in firewall.applied_to or []:
        if resource.server is not None and ctx.observed.server_by_id(resource.server.id) is None:
            uses.append(_server_title(ctx, resource.server.id))
        elif resource.label_selector is not None:
            uses.append(f"the servers matching label selector {resource.label_selector.selector!r}")
    return uses


def _server_title(ctx: Context, server_id: int) -> str:
    try:
        return f"server {ctx.client.servers.get_by_id(server_id).name} (id {server_id})"
    except APIException:  # deleted meanwhile, or not visible to this token
        return f"server id {server_id}"


def _firewall_step(ctx: Context, name: str, firewall) -> Step:
    foreign = _foreign_uses(ctx, firewall)
    if foreign:
        return Step("warning", "firewall", name, f"also applied to {', '.join(foreign)}, which bootstrap does not "
                    "own: kept, and left on them (our servers lose it as they are deleted); take it off them by "
                    "hand, then run destroy again")
    return Step("delete", "firewall", name, "applied to our servers only", lambda ctx: _delete_firewall(ctx, firewall),
                REST)


def _delete_firewall(ctx: Context, firewall) -> None:
    current = ctx.client.firewalls.get_by_id(firewall.id)  # our servers were deleted since it was listed
    foreign = _foreign_uses(ctx, current)
    if foreign:  # applied to something else since the plan: never stripped from it
        raise BootstrapError(f"firewall {current.name} is now also applied to {', '.join(foreign)}, which bootstrap "
                             "does not own: kept; take it off by hand, then run destroy again")
    ours = [FirewallResource(type=FirewallResource.TYPE_SERVER, server=resource.server)
            for resource in current.applied_to or [] if resource.server is not None]
    if ours:
        wait(*ctx.client.firewalls.remove_from_resources(current, ours))
    ctx.client.firewalls.delete(current)
