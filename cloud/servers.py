"""Servers and their volumes: create what is missing, reconcile what drifted, warn about what cannot change.

A server that exists is compared as a ServerView; a server about to be created is compared as the view of
what its create call makes, so the follow-up steps (private IP, backups, protection, volume) are the same
code for a new server and for a drifted one. Nothing here ever replaces or deletes a server or a volume.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hcloud.firewalls.domain import FirewallResource
from hcloud.servers.domain import ServerCreatePublicNetwork

from settings import SSH_PORT

from .api import SHUTDOWN_TIMEOUT_SECONDS, BootstrapError, settle, wait, wait_for_status
from .desired import ServerSpec
from .steps import CONVERGE, CREATE, ROLL, Context, Step, labels_step, update_labels

ROLLING = "rolling resize"  # the one target of every resize step: they run one after another, in plan order
SSH_WAIT_SECONDS = 300  # after power-on, how long a resized server may take to answer SSH before the roll stops


@dataclass
class ServerView:
    type: str
    image: str | None
    location: str
    labels: dict
    backups: bool
    protected: bool
    private_ip: str | None  # in our network
    firewalls: set  # names of our firewalls applied to it
    placement_group: str | None
    running: bool
    disk: int


@dataclass
class VolumeView:
    size: int
    location: str
    labels: dict
    protected: bool
    server: str | None  # name of the server it is attached to ("(other)" if not ours)


def _server_view(ctx: Context, server) -> ServerView:
    network = ctx.observed.networks.get(ctx.settings.network_name)
    ours = {firewall.id: name for name, firewall in ctx.observed.firewalls.items()}
    return ServerView(
        type=server.server_type.name, image=server.image.name if server.image else None,
        location=server.location.name, labels=server.labels or {}, backups=server.backup_window is not None,
        protected=bool((server.protection or {}).get("delete")),
        private_ip=next((net.ip for net in server.private_net or [] if network and net.network.id == network.id), None),
        firewalls={ours[fw.firewall.id] for fw in server.public_net.firewalls or [] if fw.firewall.id in ours},
        placement_group=server.placement_group.name if server.placement_group else None,
        running=server.status not in ("off", "stopping"), disk=server.primary_disk_size,
    )


def _new_server_view(ctx: Context, spec: ServerSpec) -> ServerView:
    """What create_server below makes."""
    group = ctx.settings.placement_group_name if spec.role == "dokku" else None
    return ServerView(type=spec.server_type, image=ctx.settings.server_image, location=ctx.settings.location,
                      labels=spec.labels, backups=False, protected=False, private_ip=None,
                      firewalls={spec.firewall}, placement_group=group, running=True,
                      disk=ctx.catalog.server_types[spec.role].disk)


def _volume_view(ctx: Context, volume) -> VolumeView:
    attached = ctx.observed.server_by_id(volume.server.id) if volume.server else None
    return VolumeView(size=volume.size, location=volume.location.name, labels=volume.labels or {},
                      protected=bool((volume.protection or {}).get("delete")),
                      server=attached.name if attached else ("(other)" if volume.server else None))


def plan_servers(ctx: Context) -> list[Step]:
    steps = []
    for spec in ctx.servers:
        server = ctx.observed.servers.get(spec.name)
        volume = ctx.observed.volumes.get(spec.volume_name)
        creating = []
        if server is None:
            count = len(spec.key_md5_fingerprints)
            keys = f"{count} admin key{'s' if count > 1 else ''} for root"
            creating.append(Step("create", "server", spec.name,
                                 f"{spec.server_type}, {ctx.settings.server_image}, {ctx.settings.location}, "
                                 f"IPv4+IPv6, firewall {spec.firewall}, {keys}, no user_data",
                                 lambda ctx, spec=spec: _create_server(ctx, spec), CREATE, spec.name))
        if volume is None:
            creating.append(Step("create", "volume", spec.volume_name, f"{spec.volume_size} GB, {ctx.settings.location}",
                                 lambda ctx, spec=spec: _create_volume(ctx, spec), CREATE, spec.volume_name))
        view = _server_view(ctx, server) if server else _new_server_view(ctx, spec)
        volume_view = (_volume_view(ctx, volume) if volume else
                       VolumeView(spec.volume_size, ctx.settings.location, spec.volume_labels, False, None))
        follow_up = _server_drift(ctx, spec, server, view) + _volume_drift(ctx, spec, volume, volume_view)
        if server is None:  # the follow-ups are part of creating it
            for step in follow_up:
                step.kind = "create" if step.kind == "update" else step.kind
        steps += creating + follow_up
        if not creating and not follow_up:
            steps.append(Step("unchanged", "server", spec.name, f"{view.type}, {view.private_ip}, "
                              f"volume {spec.volume_name} {volume_view.size} GB"))
    wanted = {spec.name for spec in ctx.servers} | {spec.volume_name for spec in ctx.servers}
    for kind, found in (("server", ctx.observed.servers), ("volume", ctx.observed.volumes)):
        for name in sorted(set(found) - wanted):
            steps.append(Step("warning", kind, name, "not in the settings any more (DOKKU_SERVERS?): kept; "
                              "move its data and delete it by hand"))
    _number_the_roll([step for step in steps if step.target == ROLLING])
    return steps


def _number_the_roll(resizes: list[Step]) -> None:
    for number, step in enumerate(resizes, 1):
        after = f", once {resizes[number - 2].name} answers SSH again" if number > 1 else ""
        step.detail = f"{number} of {len(resizes)}{after}: {step.detail}"


def _step(spec: ServerSpec, kind: str, resource: str, detail: str, run) -> Step:
    return Step(kind, resource, spec.name if resource == "server" else spec.volume_name, detail, run,
                CONVERGE, spec.name)


def _server_drift(ctx: Context, spec: ServerSpec, server, view: ServerView) -> list[Step]:
    settings = ctx.settings
    steps = []
    if view.image != settings.server_image:
        steps.append(_step(spec, "warning", "server", f"image is {view.image}, SERVER_IMAGE={settings.server_image}: "
                           "not rebuilt (that would erase the disk)", None))
    if view.location != settings.location:
        steps.append(_step(spec, "warning", "server", f"is in {view.location}, LOCATION={settings.location}: "
                           "a server cannot move", None))
    if spec.role == "dokku" and view.placement_group != settings.placement_group_name:
        steps.append(_step(spec, "warning", "server", f"not in placement group {settings.placement_group_name}: "
                           "joining needs a power-off; not done automatically", None))
    steps += labels_step("server", server, spec.labels, update_labels("servers"), CONVERGE, spec.name) if server else []
    if not view.protected:
        steps.append(_step(spec, "update", "server", "enable delete protection", lambda ctx: wait(
            ctx.client.servers.change_protection(_server(ctx, spec), delete=True, rebuild=True))))
    if view.backups != settings.enable_backups:
        on = settings.enable_backups
        steps.append(_step(spec, "update", "server", f"{'enable' if on else 'disable'} backups", lambda ctx: wait(
            (ctx.client.servers.enable_backup if on else ctx.client.servers.disable_backup)(_server(ctx, spec)))))
    for name in sorted(view.firewalls - {spec.firewall}):
        steps.append(_step(spec, "update", "server", f"remove firewall {name}", lambda ctx, name=name: wait(
            *ctx.client.firewalls.remove_from_resources(ctx.observed.firewalls[name], _as_resource(ctx, spec)))))
    if spec.firewall not in view.firewalls:
        steps.append(_step(spec, "update", "server", f"apply firewall {spec.firewall}", lambda ctx: wait(
            *ctx.client.firewalls.apply_to_resources(ctx.observed.firewalls[spec.firewall], _as_resource(ctx, spec)))))
    if view.private_ip != spec.ip:
        detail = f"move private IP {view.private_ip} -> {spec.ip}" if view.private_ip else f"attach to network at {spec.ip}"
        steps.append(_step(spec, "update", "server", detail, lambda ctx: _attach_network(ctx, spec, view.private_ip)))
    steps += _type_drift(ctx, spec, view)
    return steps


def _type_drift(ctx: Context, spec: ServerSpec, view: ServerView) -> list[Step]:
    wanted = ctx.catalog.server_types[spec.role]
    if view.type == spec.server_type:
        if view.running:
            return []
        return [_step(spec, "update", "server", "power on (it is off)",
                      lambda ctx: wait(ctx.client.servers.power_on(_server(ctx, spec))))]
    if wanted.disk < view.disk:
        return [_step(spec, "warning", "server", f"type is {view.type}, settings ask {spec.server_type}, whose "
                      f"{wanted.disk} GB disk is smaller than the server's {view.disk} GB: not resized", None)]
    return [Step("resize", "server", spec.name, f"{view.type} -> {spec.server_type} keeping the {view.disk} GB disk "
                 f"(so it can shrink back); down from shutdown (power-off after {SHUTDOWN_TIMEOUT_SECONDS} s) "
                 f"until it answers SSH again (at most {SSH_WAIT_SECONDS} s after power-on), the others running",
                 lambda ctx: _resize(ctx, spec), ROLL, ROLLING)]


def _volume_drift(ctx: Context, spec: ServerSpec, volume, view: VolumeView) -> list[Step]:
    steps = []
    if view.location != ctx.settings.location:
        steps.append(_step(spec, "warning", "volume", f"is in {view.location}, LOCATION={ctx.settings.location}: "
                           "a volume cannot move", None))
    if view.size > spec.volume_size:
        steps.append(_step(spec, "warning", "volume", f"is {view.size} GB, settings ask {spec.volume_size} GB: "
                           "a volume cannot shrink", None))
    elif view.size < spec.volume_size:
        steps.append(_step(spec, "resize", "volume", f"{view.size} -> {spec.volume_size} GB online (then grow the "
                           "filesystem: resize2fs)", lambda ctx: wait(
                               ctx.client.volumes.resize(_volume(ctx, spec), spec.volume_size))))
    steps += labels_step("volume", volume, spec.volume_labels, update_labels("volumes"), CONVERGE, spec.name) if volume else []
    if not view.protected:
        steps.append(_step(spec, "update", "volume", "enable delete protection", lambda ctx: wait(
            ctx.client.volumes.change_protection(_volume(ctx, spec), delete=True))))
    if view.server is None:
        steps.append(_step(spec, "update", "volume", f"attach to {spec.name} (automount)", lambda ctx: wait(
            ctx.client.volumes.attach(_volume(ctx, spec), _server(ctx, spec), automount=True))))
    elif view.server != spec.name:
        steps.append(_step(spec, "warning", "volume", f"is attached to {view.server}, not {spec.name}: not moved "
                           "(detach it by hand if that is wrong)", None))
    return steps


# -- what the steps do ------------------------------------------------------------------------------------
def _server(ctx: Context, spec: ServerSpec):
    return ctx.observed.servers[spec.name]


def _volume(ctx: Context, spec: ServerSpec):
    return ctx.observed.volumes[spec.volume_name]


def _as_resource(ctx: Context, spec: ServerSpec) -> list[FirewallResource]:
    return [FirewallResource(type=FirewallResource.TYPE_SERVER, server=_server(ctx, spec))]


def _create_server(ctx: Context, spec: ServerSpec) -> None:
    observed, role = ctx.observed, spec.role
    response = ctx.client.servers.create(
        name=spec.name, server_type=ctx.catalog.server_types[role], image=ctx.catalog.images[role],
        location=ctx.catalog.location, labels=spec.labels, start_after_create=True,
        ssh_keys=[observed.keys_by_md5_fingerprint[fp] for fp in spec.key_md5_fingerprints],
        firewalls=[observed.firewalls[spec.firewall]],
        placement_group=observed.placement_groups[ctx.settings.placement_group_name] if role == "dokku" else None,
        public_net=ServerCreatePublicNetwork(enable_ipv4=True, enable_ipv6=True),
    )  # no user_data: host configuration is pyinfra's job, and user_data is readable from the metadata service
    wait(response.action, *response.next_actions)
    observed.servers[spec.name] = response.server


def _create_volume(ctx: Context, spec: ServerSpec) -> None:
    response = ctx.client.volumes.create(size=spec.volume_size, name=spec.volume_name, labels=spec.volume_labels,
                                         location=ctx.catalog.location)
    wait(response.action, *response.next_actions)
    ctx.observed.volumes[spec.volume_name] = response.volume


def _attach_network(ctx: Context, spec: ServerSpec, current_ip: str | None) -> None:
    server, network = _server(ctx, spec), ctx.observed.networks[ctx.settings.network_name]
    if current_ip:
        wait(ctx.client.servers.detach_from_network(server, network))
    wait(ctx.client.servers.attach_to_network(server, network, ip=spec.ip))


def _resize(ctx: Context, spec: ServerSpec) -> None:
    """Graceful shutdown (hard power-off if it does not stop in time), change type keeping the disk, power on
    (also when the change failed), then wait until it answers SSH: only then may the next server go down."""
    client, settings = ctx.client, ctx.settings
    server = client.servers.get_by_id(_server(ctx, spec).id)
    try:
        if server.status != "off":
            wait(client.servers.shutdown(server))
            if not wait_for_status(client, server, "off", SHUTDOWN_TIMEOUT_SECONDS, settings.hcloud_poll_interval):
                wait(client.servers.power_off(server))
        wait(client.servers.change_type(server, ctx.catalog.server_types[spec.role], upgrade_disk=False))
    finally:
        _power_on_again(ctx, server)
    _wait_for_ssh(ctx, spec, server)


def _power_on_again(ctx: Context, server) -> None:
    client = ctx.client
    settle(client.servers.get_actions(server, status=["running"]))  # a change or shutdown still under way
    if client.servers.get_by_id(server.id).status != "running":
        wait_for_status(client, server, "off", SHUTDOWN_TIMEOUT_SECONDS, ctx.settings.hcloud_poll_interval)
        wait(client.servers.power_on(server))


def _wait_for_ssh(ctx: Context, spec: ServerSpec, server) -> None:
    address = server.public_net.ipv4.ip  # the address the outputs file gives the deploy
    deadline = time.monotonic() + SSH_WAIT_SECONDS
    while not ctx.ssh_probe(address):
        if time.monotonic() > deadline:
            raise BootstrapError(f"{spec.name} was resized and powered on but does not answer SSH on "
                                 f"{address}:{SSH_PORT} after {SSH_WAIT_SECONDS} s: the rolling resize stops "
                                 "here, the servers after it are untouched; check its console")
        time.sleep(ctx.settings.hcloud_poll_interval)
