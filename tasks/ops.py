"""Custom operations. Each compares against the host snapshot (tasks/snapshot.py: one read per host when
nothing changes) and yields commands only for what differs.

Offline cases live in tests/operations/<op>/*.json (snapshot in, exact commands out, including no-op cases).
"""

from __future__ import annotations

import hashlib
import ipaddress
import shlex
import uuid
from io import BytesIO, StringIO
from pathlib import Path

from jinja2 import FileSystemLoader
from pyinfra import host, logger, state
from pyinfra.api import FileUploadCommand, OperationError
from pyinfra.api.util import get_file_sha1, get_template
from pyinfra.facts.files import FileContents
from pyinfra.operations.util.files import generate_color_diff

from settings import unprintable
from tasks import snapshot
from tasks.snapshot import snapshot_operation

APT_INSTALL = ("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
               "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold")


def _q(value) -> str:
    return shlex.quote(str(value))


def any_change(*metas):
    """Like pyinfra's any_changed, usable inside an operation in a dry run too: before execution
    (`--dry`, change detection) an operation counts as changed when it plans commands."""
    return lambda: any(meta.did_change() if meta.is_complete() else meta.will_change for meta in metas)


def in_container() -> bool:
    """Decided by the host (systemd-detect-virt), never by a setting: a container cannot swapon or set vm.*."""
    return snapshot.read()["container"] != "none"


# -- packages ----------------------------------------------------------------------------------------------
@snapshot_operation(lambda marker, **_: {"files": [marker]})
def apt_upgrade_once(marker: str):
    """Refresh the package lists and upgrade everything, once: the marker file records that it ran."""
    if snapshot.read()["files"].get(marker):
        host.noop(f"upgraded on the first run ({marker})")
        return
    yield "DEBIAN_FRONTEND=noninteractive apt-get update -q"
    yield APT_INSTALL.replace(" install ", " dist-upgrade ")
    yield f"mkdir -p {_q(marker.rsplit('/', 1)[0])} && date -u +%FT%TZ > {_q(marker)}"


@snapshot_operation(lambda **_: {})
def packages(packages: list[str], hold: list[str] | tuple = ()):
    """Install the packages that are missing ("name" or "name=version"; a different version is installed
    over the current one), refreshing the package lists first; then hold the `hold` packages."""
    snap = snapshot.read()
    installed = snap["packages"]
    missing = []
    for spec in packages:
        name, _, version = spec.partition("=")
        if name not in installed or (version and installed[name] != version):
            missing.append(spec)
    if missing:
        yield "DEBIAN_FRONTEND=noninteractive apt-get update -q"
        yield f"{APT_INSTALL} --allow-downgrades --allow-change-held-packages " + " ".join(map(_q, missing))
    unheld = [name for name in hold if name not in snap["held"]]
    if unheld:
        yield "apt-mark hold " + " ".join(map(_q, unheld))
    if not (missing or unheld):
        host.noop(f"{len(packages)} packages installed" + (f", {', '.join(hold)} held" if hold else ""))


# -- files -------------------------------------------------------------------------------------------------
def _local(src: str) -> str:
    return f"{state.cwd}/{src}" if state.cwd and not src.startswith("/") else src


def _owner_and_mode(path: str, mode: str, user: str, group: str) -> str:
    return f"chown {_q(user)}:{_q(group)} {_q(path)} && chmod {_q(mode)} {_q(path)}"


def write(dest: str, content: bytes, mode: str, user: str = "root", group: str = "root", validate: str = "",
          secret: bool = False):
    """Commands that make dest hold content with this mode and owner; none when it already does. The file gets
    its owner and mode before the content arrives. With `validate`, the content goes to a candidate beside dest,
    is checked ({path} is the candidate's path) and only then moved over dest; a candidate that fails is removed
    and the live file stays as it was. With `secret`, neither the content nor a diff is ever shown (and it is
    never on a command line: uploads go over SFTP)."""
    remote = snapshot.read()["files"].get(dest)
    same_content = bool(remote) and remote.get("sha1") == hashlib.sha1(content).hexdigest()
    if same_content and (remote["mode"], remote["user"], remote["group"]) == (str(int(mode)), user, group):
        host.noop(f"{dest} is up to date")
        return
    if state.config.DIFF and not same_content and not secret:
        current = host.get_fact(FileContents, path=dest) or []
        host.log(f"Will {'modify' if remote else 'create'} {dest}", logger.info)
        new = content.decode(errors="replace").splitlines(True)
        for line in generate_color_diff([line + "\n" for line in current], new):
            logger.info("  %s", line)
    target = f"{dest}.candidate" if validate else dest
    yield f"mkdir -p {_q(dest.rsplit('/', 1)[0])} && touch {_q(target)} && {_owner_and_mode(target, mode, user, group)}"
    yield FileUploadCommand(BytesIO(content), target, remote_temp_filename=host.get_temp_filename(target))
    if validate:
        check = validate.format(path=_q(target))
        yield f"if ! {check}; then rm -f {_q(target)}; echo 'candidate {dest} failed: {validate}' >&2; exit 1; fi"
        yield f"mv -f {_q(target)} {_q(dest)}"


def _check_one_line_values(dest: str, data: dict, where: str = "") -> None:
    """Every string handed to a template is one line of printable text: no value can add a line (a `server =`
    to cli.ini, a `Trusted: yes` to an apt source) whatever the template does with it. The settings refuse such
    values already; this is the second check, where they land."""
    for key, value in data.items() if isinstance(data, dict) else enumerate(data):
        name = f"{where}{key}"
        if isinstance(value, str) and unprintable(value):
            raise OperationError(f"{dest}: the value of {name} holds a control character; refusing to render it")
        if isinstance(value, (dict, list, tuple)):
            _check_one_line_values(dest, value, f"{name}.")


@snapshot_operation(lambda dest, **_: {"files": [dest]})
def template(src: str, dest: str, mode: str, user: str = "root", group: str = "root", validate: str = "",
             **data):
    """Render a template (its includes are looked up beside it) to dest when its content, mode or owner differ;
    `validate` as in write(). Templates of shell scripts quote values with `shell_quote(value)`."""
    src = _local(src)
    _check_one_line_values(dest, data)
    data.setdefault("host", host)
    data.setdefault("shell_quote", _q)
    loader = FileSystemLoader(src.rsplit("/", 1)[0])
    rendered = get_template(src, jinja_env_kwargs={"loader": loader}).render(data)
    yield from write(dest, rendered.encode(), mode, user, group, validate)


@snapshot_operation(lambda dest, **_: {"files": [dest]})
def put(src: str, dest: str, mode: str, user: str = "root", group: str = "root"):
    """Upload a local file to dest when its content, mode or owner differ."""
    yield from write(dest, Path(_local(src)).read_bytes(), mode, user, group)


@snapshot_operation(lambda dest, **_: {"files": [dest]})
def secret_file(dest: str, content: str, mode: str = "600", user: str = "root", group: str = "root"):
    """Write content to dest like put, but never show it: no diff, no content in the output or on a command line.
    Render secret templates in memory (render()) and pass the text here."""
    yield from write(dest, content.encode(), mode, user, group, secret=True)


def render(src: str, **data) -> str:
    """Render a template in memory (for secret_file)."""
    return get_template(_local(src)).render(**data)


@snapshot_operation(lambda path, **_: {"files": [path]})
def directory(path: str, mode: str = "755", user: str = "root", group: str = "root"):
    """A directory with this mode and owner (parents are created as needed)."""
    remote = snapshot.read()["files"].get(path, {"type": "dir"})
    if remote["type"] != "dir":
        raise OperationError(f"{path} is a {remote['type']}, expected a directory")
    if (remote.get("mode"), remote.get("user"), remote.get("group")) == (str(int(mode)), user, group):
        host.noop(f"{path} is in place")
        return
    yield f"mkdir -p {_q(path)} && {_owner_and_mode(path, mode, user, group)}"


@snapshot_operation(lambda path, **_: {"files": [path]})
def absent(path: str):
    """No file or link at path."""
    if path not in snapshot.read()["files"]:
        host.noop(f"{path} is absent")
        return
    yield f"rm -f {_q(path)}"


@snapshot_operation(lambda dest, **_: {"files": [dest]})
def download(url: str, dest: str, mode: str = "644"):
    """Fetch url to dest once (when dest is missing)."""
    if snapshot.read()["files"].get(dest):
        host.noop(f"{dest} exists")
        return
    yield (f"mkdir -p {_q(dest.rsplit('/', 1)[0])} && curl -fsSL --retry 3 -o {_q(dest)}.part {_q(url)} "
           f"&& chmod {_q(mode)} {_q(dest)}.part && mv -f {_q(dest)}.part {_q(dest)}")


# -- services ----------------------------------------------------------------------------------------------
@snapshot_operation(lambda units, **_: {"units": list(units)})
def services(units: list[str], running: bool = True):
    """The units are enabled at boot and (with `running`) running now."""
    states = snapshot.read()["units"]
    commands = []
    for unit in units:
        current = states.get(unit, {})
        if current.get("enabled") not in ("enabled", "static", "alias"):
            commands.append(f"systemctl enable {_q(unit)}")
        if running and current.get("active") != "active":
            commands.append(f"systemctl start {_q(unit)}")
    if not commands:
        host.noop(f"{', '.join(units)} enabled{' and running' if running else ''}")
    yield from commands


# -- firewall ----------------------------------------------------------------------------------------------
def ufw_rule(port: int, source: str = "any", proto: str = "tcp") -> tuple[str, str, str, str]:
    """A wanted ufw rule as (action, proto, port, source); source "any" or a CIDR ("/32" dropped, as ufw does)."""
    if source != "any":
        network = ipaddress.ip_network(source, strict=False)
        source = str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)
    return ("allow", proto, str(port), source)


def _current_ufw_rules(tuples: list[list[str]]) -> set[tuple[str, str, str, str, str]]:
    """ufw's rule tuples (action proto dport dst sport src dir) as (action, proto, port, source, dest)."""
    rules = set()
    for action, proto, dport, dst, _sport, src, *_ in tuples:
        any_address = ("0.0.0.0/0", "::/0")
        rules.add((action, proto, dport, "any" if src in any_address else src, "any" if dst in any_address else dst))
    return rules


@snapshot_operation(lambda **_: {})
def ufw_firewall(rules: list[tuple[str, str, str, str]], incoming: str = "deny", outgoing: str = "allow"):
    """Make ufw hold exactly `rules` (from ufw_rule), set its default policies and enable it. Rules are added
    before ufw is enabled, so SSH stays reachable."""
    ufw = snapshot.read()["ufw"]
    if not ufw["installed"]:
        raise OperationError("ufw is not installed")
    policy_names = {"deny": "DROP", "allow": "ACCEPT", "reject": "REJECT"}
    commands = []
    for direction, word, policy in (("INPUT", "incoming", incoming), ("OUTPUT", "outgoing", outgoing)):
        if ufw["policies"].get(direction) != policy_names[policy]:
            commands.append(f"ufw default {_q(policy)} {word}")
    current = _current_ufw_rules(ufw["rules"])
    wanted = {(*rule, "any") for rule in rules}
    # Every value quoted: a source is a setting (ADMIN_IPS) and the current rules come from the host.
    for action, proto, port, source, _ in sorted(wanted - current):
        commands.append(f"ufw {_q(action)} proto {_q(proto)} from {_q(source)} to any port {_q(port)}")
    for action, proto, port, source, dest in sorted(current - wanted):
        commands.append(f"ufw delete {_q(action)} proto {_q(proto)} from {_q(source)} to {_q(dest)} port {_q(port)}")
    if not (ufw["enabled"] and ufw["live"]):
        commands.append("ufw --force enable")
    if not commands:
        host.noop(f"ufw is active with {len(rules)} rules")
    yield from commands


# -- swap, kernel, identity --------------------------------------------------------------------------------
def _fstab_commands(entries: list[list[str]], fields: list[str], key_index: int) -> list[str]:
    """Commands that leave exactly one fstab line whose field key_index equals fields[key_index]."""
    key = fields[key_index]
    matching = [entry[:6] for entry in entries if len(entry) > key_index and entry[key_index] == key]
    if matching == [fields]:
        return []
    awk = f"awk -v k={_q(key)} '$0 ~ /^[[:space:]]*#/ || NF < {key_index + 1} || ${key_index + 1} != k'"
    return [f"{awk} /etc/fstab > /etc/fstab.new && echo {_q(' '.join(fields))} >> /etc/fstab.new "
            "&& mv /etc/fstab.new /etc/fstab"]


@snapshot_operation(lambda path, **_: {"swap": path})
def swap_file(path: str, size_mb: int):
    """A swap file of size_mb, in fstab exactly once, switched on. A container cannot swapon: there the file
    and its fstab line are put in place and activation is skipped."""
    snap = snapshot.read()
    activate = snap["container"] == "none"
    commands = []
    recreate = snap["swap_size"] != size_mb * 1024 * 1024
    if recreate:
        if path in snap["swap_active"]:
            commands.append(f"swapoff {_q(path)}")
        commands.append(f"rm -f {_q(path)} && (fallocate -l {size_mb}M {_q(path)} || dd if=/dev/zero of={_q(path)} "
                        f"bs=1M count={size_mb} status=none) && chmod 600 {_q(path)} && mkswap -q {_q(path)}")
    commands += _fstab_commands(snap["fstab"], [path, "none", "swap", "sw", "0", "0"], 0)
    if activate and (recreate or path not in snap["swap_active"]):
        commands.append(f"swapon {_q(path)}")
    if not commands:
        host.noop(f"{path} ({size_mb} MB) in place" + ("" if activate else "; not activated: container"))
    yield from commands


@snapshot_operation(lambda values, **_: {"sysctls": list(values)})
def sysctl_live(values: dict[str, str], container_skip: list[str] | tuple = ()):
    """Set the live sysctl values that differ (`sysctl -w`). In a container, keys under container_skip
    (vm.*: not namespaced) are left to the drop-in, which a real host applies at boot."""
    snap = snapshot.read()
    skip = tuple(container_skip) if snap["container"] != "none" else ()
    wanted = {key: " ".join(str(value).split()) for key, value in values.items()}
    changes = [key for key in sorted(wanted) if snap["sysctl"].get(key) != wanted[key] and not key.startswith(skip)]
    if not changes:
        host.noop("sysctl values are live" + (f" (container: {', '.join(skip)} left to the drop-in)" if skip else ""))
        return
    yield "sysctl -q -w " + " ".join(_q(f"{key}={wanted[key]}") for key in changes)


@snapshot_operation(lambda **_: {"files": ["/etc/localtime"]})
def identity(hostname: str, timezone: str):
    """Hostname (also resolvable via /etc/hosts' 127.0.1.1 line) and timezone, the latter as the /etc/localtime
    symlink: never timedatectl, which in a container can move the machine's clock."""
    snap = snapshot.read()
    commands = []
    if snap["hostname"] != hostname:
        commands.append(f"hostnamectl set-hostname {_q(hostname)} || {{ echo {_q(hostname)} > /etc/hostname; "
                        f"hostname {_q(hostname)}; }}")
        commands.append(f"sed -i '/^127\\.0\\.1\\.1[[:space:]]/d' /etc/hosts && echo {_q(f'127.0.1.1 {hostname}')} "
                        ">> /etc/hosts")
    zone = f"/usr/share/zoneinfo/{timezone}"
    if snap["files"].get("/etc/localtime", {}).get("target") != zone:
        commands.append(f"ln -sfn {_q(zone)} /etc/localtime")
    if not commands:
        host.noop(f"{hostname}, {timezone}")
    yield from commands


# -- volume and data directories ---------------------------------------------------------------------------
@snapshot_operation(lambda device, **_: {"device": device})
def volume_filesystem(device: str, mount_point: str, options: str = "defaults,nofail"):
    """Format `device` as ext4 only if it holds no filesystem (probed with blkid -p, never tried), put it in
    fstab by UUID exactly once and mount it. A filesystem already on the device is used as it is."""
    snap = snapshot.read()
    probe = snap["device"]
    if not probe.get("PRESENT"):
        raise OperationError(f"volume device {device} is not a block device on {host.name}; is the volume attached?")
    fs_type, fs_uuid = probe.get("TYPE"), probe.get("UUID")
    commands = []
    if not fs_type:
        fs_type, fs_uuid = "ext4", str(uuid.uuid4())
        commands.append(f"mkfs.ext4 -q -U {fs_uuid} {_q(device)}")
    commands += _fstab_commands(snap["fstab"], [f"UUID={fs_uuid}", mount_point, fs_type, options, "0", "2"], 1)
    if mount_point not in snap["mounts"]:
        commands.append(f"mkdir -p {_q(mount_point)} && mount {_q(mount_point)}")
    if not commands:
        host.noop(f"{device} ({fs_type}) mounted at {mount_point}")
    yield from commands


@snapshot_operation(lambda src, dest, **_: {"paths": [src, dest]})
def move_onto(src: str, dest: str, link: bool = False, stop: list[str] | tuple = (), owner: str | None = None):
    """Move a data directory onto the volume, once: src's contents go to dest (with `stop` units stopped)
    while dest is missing or empty. With `link`, src becomes a symlink to dest. Data already at dest is never
    touched; src holding data while dest also does is an error for a human to resolve."""
    paths = snapshot.read()["paths"]
    src_state, dest_state = paths.get(src, "missing"), paths.get(dest, "missing")
    chown = [f"chown {_q(owner)}: {_q(dest)}"] if owner else []
    if (link and src_state == f"link:{dest}") or (not link and src_state in ("missing", "empty")):
        if dest_state == "missing":
            yield f"mkdir -p {_q(dest)}"
            yield from chown
        else:
            host.noop(f"{dest} holds {src}'s data")
        return
    if src_state.startswith("link:") or src_state == "file":
        raise OperationError(f"{src} is {src_state}, expected a directory or a link to {dest}")
    if src_state == "dir" and dest_state == "dir":
        raise OperationError(f"both {src} and {dest} hold data; refusing to merge them (move one aside first)")
    for unit in stop:
        yield f"systemctl stop {_q(unit)}"
    yield f"mkdir -p {_q(dest)}"
    if src_state == "dir":
        yield f"cp -a {_q(src)}/. {_q(dest)}/ && find {_q(src)} -mindepth 1 -maxdepth 1 -exec rm -rf {{}} +"
    else:
        yield from chown
    if link:
        yield f"rmdir {_q(src)} 2>/dev/null || true; ln -sfn {_q(dest)} {_q(src)}"
    for unit in reversed(stop):
        yield f"systemctl start {_q(unit)}"


# -- users -------------------------------------------------------------------------------------------------
@snapshot_operation(lambda user, **_: {"users": [user]})
def user(user: str, groups: list[str], public_keys: list[str], shell: str = "/bin/bash"):
    """A login user with a locked password, exactly these supplementary groups and exactly these SSH keys."""
    current = snapshot.read()["users"].get(user, {})
    home = f"/home/{user}"
    commands = []
    if "passwd" not in current:
        commands.append(f"useradd --create-home --shell {_q(shell)} --groups {_q(','.join(groups))} {_q(user)}")
    else:
        home = current["passwd"][5]
        if current["passwd"][6] != shell:
            commands.append(f"usermod --shell {_q(shell)} {_q(user)}")
        if sorted(set(current.get("groups", [])) - {user}) != sorted(groups):
            commands.append(f"usermod --groups {_q(','.join(groups))} {_q(user)}")
    keys = "".join(f"{key.strip()}\n" for key in public_keys)
    if current.get("authorized_keys_sha1") != get_file_sha1(StringIO(keys)):
        commands.append(f"install -d -m 700 -o {_q(user)} -g {_q(user)} {_q(home + '/.ssh')} && printf %s {_q(keys)} "
                        f"> {_q(home + '/.ssh/authorized_keys')} && chown {_q(user)}: {_q(home + '/.ssh/authorized_keys')} "
                        f"&& chmod 600 {_q(home + '/.ssh/authorized_keys')}")
    if not commands:
        host.noop(f"{user} is in {', '.join(groups) or 'no supplementary group'} with {len(public_keys)} key(s)")
    yield from commands
