"""Planning the project-wide resources: the SSH keys, the network, the firewalls and the placement group, each
compared with the settings as steps (cloud/steps.py); servers.py and dns.py plan the rest."""

from __future__ import annotations

from hcloud.networks.domain import NetworkSubnet

from settings import NETWORK_IP_RANGE, NETWORK_ZONE, ROLES, SUBNET_IP_RANGE

from .api import wait
from .desired import KeySpec, firewall_rules, rule_key
from .observe import is_ours
from .steps import Context, Step, labels_step, update_labels

# -- SSH keys -------------------------------------------------------------------------------------------
KEYS_TARGET = "ssh keys"  # one target: a freed name is taken only after the delete or rename that frees it
ADMIN_KEY_SETTINGS = "SSH_PUBLIC_KEY_PATH, SSH_EXTRA_PUBLIC_KEY_PATHS"


def plan_keys(ctx: Context) -> list[Step]:
    """The project's SSH keys are the admin keys (desired.key_specs). Hetzner uses them only when it creates a
    server: a key added or deleted here changes no existing server (the deploy manages root's authorized_keys)."""
    wanted = {spec.md5_fingerprint for spec in ctx.keys}
    deletes = [Step("delete", "ssh key", name, f"fingerprint {key.fingerprint} is not an admin key "
                    f"({ADMIN_KEY_SETTINGS}); existing servers keep it until the next deploy writes root's "
                    "authorized_keys",
                    lambda ctx, key=key: ctx.client.ssh_keys.delete(key), target=KEYS_TARGET)
               for name, key in sorted(ctx.observed.keys.items()) if key.fingerprint not in wanted]
    renames, onto_held_names, creates, steps = [], [], [], []
    for spec in ctx.keys:
        found = ctx.observed.keys_by_md5_fingerprint.get(spec.md5_fingerprint)
        if found is None:
            creates.append(Step("create", "ssh key", spec.name, f"{spec.setting}, fingerprint {spec.md5_fingerprint}; "
                                "given to servers created from now on, existing ones get it from the deploy",
                                lambda ctx, spec=spec: _create_key(ctx, spec), target=KEYS_TARGET))
            creates += _new_admin_key_warning(ctx, spec)
        elif not is_ours(found, ctx.settings):
            steps.append(Step("unchanged", "ssh key", spec.name,
                              f"the project's key {found.name!r} has the same fingerprint: adopted, never deleted"))
        else:
            drift = labels_step("ssh key", found, ctx.settings.labels(), update_labels("ssh_keys"), target=KEYS_TARGET)
            renames += drift
            if found.name != spec.name:
                # onto a name another of our keys still holds (an extra key promoted): after that one moved away
                (onto_held_names if spec.name in ctx.observed.keys else renames).append(Step(
                    "update", "ssh key", found.name, f"rename to {spec.name} ({spec.setting})",
                    lambda ctx, key=found, name=spec.name: ctx.client.ssh_keys.update(key, name=name),
                    target=KEYS_TARGET))
            elif not drift:
                steps.append(Step("unchanged", "ssh key", spec.name, f"fingerprint {spec.md5_fingerprint}"))
    return deletes + renames + onto_held_names + creates + steps


def _new_admin_key_warning(ctx: Context, spec: KeySpec) -> list[Step]:
    """SSH_PUBLIC_KEY_PATH switched straight from our key to one the project does not know: bootstrap never
    changes existing servers' keys, so unless a deploy gave them the new key first, logging in with it fails."""
    if spec.setting != "SSH_PUBLIC_KEY_PATH" or spec.name not in ctx.observed.keys or not ctx.observed.servers:
        return []
    return [Step("warning", "ssh key", spec.name, f"SSH_PUBLIC_KEY_PATH names a new key: the "
                 f"{len(ctx.observed.servers)} existing servers were not created with it and bootstrap never changes "
                 "their keys; unless a deploy gave it to them from SSH_EXTRA_PUBLIC_KEY_PATHS, a deploy logging in "
                 "with it fails (README: rotating the admin key)")]


def _create_key(ctx: Context, spec: KeySpec) -> None:
    key = ctx.client.ssh_keys.create(name=spec.name, public_key=spec.public_key, labels=ctx.settings.labels())
    ctx.observed.keys_by_md5_fingerprint[spec.md5_fingerprint] = key


# -- network ----------------------------------------------------------------------------------------------
def plan_network(ctx: Context) -> list[Step]:
    name = ctx.settings.network_name
    network = ctx.observed.networks.get(name)
    if network is None:
        return [Step("create", "network", name, f"{NETWORK_IP_RANGE}, subnet {SUBNET_IP_RANGE} ({NETWORK_ZONE})",
                     _create_network)]
    steps = labels_step("network", network, ctx.settings.labels(), update_labels("networks"))
    if network.ip_range != NETWORK_IP_RANGE:
        steps.append(Step("warning", "network", name, f"ip range is {network.ip_range}, settings ask "
                          f"{NETWORK_IP_RANGE}: a network's range is not changed in place"))
    if not any(subnet.ip_range == SUBNET_IP_RANGE for subnet in network.subnets or []):
        steps.append(Step("update", "network", name, f"add subnet {SUBNET_IP_RANGE} ({NETWORK_ZONE})",
                          lambda ctx: wait(ctx.client.networks.add_subnet(network, _subnet()))))
    return steps or [Step("unchanged", "network", name, f"{network.ip_range}, id {network.id}")]


def _subnet() -> NetworkSubnet:
    return NetworkSubnet(type=NetworkSubnet.TYPE_CLOUD, ip_range=SUBNET_IP_RANGE, network_zone=NETWORK_ZONE)


def _create_network(ctx: Context) -> None:
    network = ctx.client.networks.create(name=ctx.settings.network_name, ip_range=NETWORK_IP_RANGE,
                                         subnets=[_subnet()], labels=ctx.settings.labels())
    ctx.observed.networks[network.name] = network


# -- firewalls and placement group -------------------------------------------------------------------------
def plan_firewalls(ctx: Context) -> list[Step]:
    steps = []
    for role in ROLES:
        name, rules = ctx.settings.firewall_name(role), firewall_rules(ctx.settings, role)
        firewall = ctx.observed.firewalls.get(name)
        summary = "; ".join(f"{rule.port} from {', '.join(rule.source_ips)}" for rule in rules)
        if firewall is None:
            steps.append(Step("create", "firewall", name, summary, lambda ctx, role=role: _create_firewall(ctx, role)))
            continue
        drift = labels_step("firewall", firewall, ctx.settings.labels(role), update_labels("firewalls"))
        if sorted(map(rule_key, firewall.rules or [])) != sorted(map(rule_key, rules)):
            drift.append(Step("update", "firewall", name, f"rules -> {summary}",
                              lambda ctx, fw=firewall, rules=rules: wait(*ctx.client.firewalls.set_rules(fw, rules))))
        steps += drift or [Step("unchanged", "firewall", name, summary)]
    return steps


def _create_firewall(ctx: Context, role: str) -> None:
    response = ctx.client.firewalls.create(name=ctx.settings.firewall_name(role), labels=ctx.settings.labels(role),
                                           rules=firewall_rules(ctx.settings, role))
    wait(*(response.actions or []))
    ctx.observed.firewalls[response.firewall.name] = response.firewall


def plan_placement_group(ctx: Context) -> list[Step]:
    name = ctx.settings.placement_group_name
    group = ctx.observed.placement_groups.get(name)
    if group is None:
        return [Step("create", "placement group", name, "spread: Dokku servers on different hosts",
                     _create_placement_group)]
    steps = labels_step("placement group", group, ctx.settings.labels("dokku"), update_labels("placement_groups"))
    return steps or [Step("unchanged", "placement group", name, "spread")]


def _create_placement_group(ctx: Context) -> None:
    response = ctx.client.placement_groups.create(name=ctx.settings.placement_group_name, type="spread",
                                                  labels=ctx.settings.labels("dokku"))
    wait(response.action)
    ctx.observed.placement_groups[response.placement_group.name] = response.placement_group
