"""Teardown of what bootstrap owns (found by its labels only): servers first, then what they used.
Volumes are kept, still protected, unless include_volumes. Adopted SSH keys carry no labels of ours, so
they are never even listed here."""

from __future__ import annotations

from hcloud.firewalls.domain import FirewallResource

from .api import wait
from .observe import is_ours
from .plan import Context, Step

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
    steps += [Step("delete", "firewall", name, "", lambda ctx, fw=fw: _delete_firewall(ctx, fw), REST)
              for name, fw in sorted(observed.firewalls.items())]
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


def _delete_firewall(ctx: Context, firewall) -> None:
    current = ctx.client.firewalls.get_by_id(firewall.id)  # servers were deleted since it was listed
    applied = [FirewallResource(type=FirewallResource.TYPE_SERVER, server=resource.server)
               for resource in current.applied_to or [] if resource.server is not None]
    if applied:
        wait(*ctx.client.firewalls.remove_from_resources(current, applied))
    ctx.client.firewalls.delete(current)
