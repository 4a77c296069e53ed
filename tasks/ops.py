"""The deploy's operations. Each compares the host snapshot (tasks/snapshot.py: one read per host when nothing
changes) with what is wanted and either says no-op, without asking pyinfra anything, or hands the change to
pyinfra's own operation (`yield from files.put._inner(...)`), which looks at the host again with its own facts:
those round trips are paid only for what changes. Custom commands remain only where pyinfra has no operation;
each such operation says why in its docstring.

Offline cases live in tests/operations/<op>/*.json (snapshot in, exact commands out, a no-op case for each).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shlex
import uuid
from io import BytesIO, StringIO

from jinja2 import FileSystemLoader, TemplateRuntimeError, TemplateSyntaxError, UndefinedError
from pyinfra import host, logger, state
from pyinfra.api import FileUploadCommand, OperationError
from pyinfra.api.util import get_template
from pyinfra.facts.files import FileContents
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util.files import generate_color_diff

from settings import unprintable
from tasks import snapshot
from tasks.snapshot import snapshot_operation


def _q(value) -> str:
    return shlex.quote(str(value))


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def changed(metas) -> bool:
    """Whether one of these operations changed the host (after it ran) or will (before: `--dry`, change
    detection, the lock's look ahead). pyinfra's own `any_changed` answers only after execution."""
    return any(meta.did_change() if meta.is_complete() else meta.will_change for meta in metas)


# -- follow-ups ----------------------------------------------------------------------------------------------
@snapshot_operation(lambda **_: {})
def on_change(changes: list, operation, **arguments):
    """pyinfra's `operation` with `arguments` (systemd.service with restarted=True, systemd.daemon_reload,
    server.shell, ...) when an operation in `changes` changed something; a no-op otherwise. In place of `_if=`:
    pyinfra counts an `_if` operation as a conditional change on every run, so a converged platform would still
    look like it had something to do."""
    if not changed(changes):
        host.noop("nothing it follows changed")
        return
    yield from operation._inner(**arguments)


# -- packages ------------------------------------------------------------------------------------------------
@snapshot_operation(lambda marker, **_: {"files": [marker]})
def apt_upgrade_once(marker: str):
    """Refresh the package lists and upgrade everything (pyinfra's apt.update and apt.dist_upgrade), once: the
    marker file records that it ran."""
    if snapshot.read()["files"][marker]:
        host.noop(f"upgraded on the first run ({marker})")
        return
    yield from apt.update._inner()
    yield from apt.dist_upgrade._inner()
    yield from files.file._inner(path=marker, touch=True)


@snapshot_operation(lambda **_: {})
def packages(packages: list[str], hold: list[str] | tuple = ()):
    """The packages are installed ("name" or "name=version": a different version is installed over the current
    one) by pyinfra's apt.packages, after refreshing the lists; then the `hold` packages are held (`apt-mark
    hold`: pyinfra has no operation for holds)."""
    snap = snapshot.read()
    installed = snap["packages"]
    missing = []
    for spec in packages:
        name, _, version = spec.partition("=")
        if name not in installed or (version and installed[name] != version):
            missing.append(spec)
    if missing:
        yield from apt.packages._inner(packages=missing, update=True, no_recommends=True, allow_downgrades=True,
                                       extra_install_args="--allow-change-held-packages")
    unheld = [name for name in hold if name not in snap["held"]]
    if unheld:
        yield "apt-mark hold " + " ".join(map(_q, unheld))
    if not (missing or unheld):
        host.noop(f"{len(packages)} packages installed" + (f", {', '.join(hold)} held" if hold else ""))


# -- files ---------------------------------------------------------------------------------------------------
def _local(src: str) -> str:
    return f"{state.cwd}/{src}" if state.cwd and not src.startswith("/") else src


def _owner_and_mode(path: str, mode: str, user: str, group: str) -> str:
    return f"chown {_q(user)}:{_q(group)} {_q(path)} && chmod {_q(mode)} {_q(path)}"


def _up_to_date(dest: str, content: bytes, mode: str, user: str, group: str) -> tuple[dict | None, bool]:
    """(the snapshot's entry for dest, whether dest already holds content with this mode and owner)."""
    remote = snapshot.read()["files"][dest]
    same = bool(remote) and remote.get("sha256") == _sha256(content) and \
        (remote["mode"], remote["user"], remote["group"]) == (str(int(mode)), user, group)
    return remote, same


def _private(mode: str, validate: str, secret: bool) -> bool:
    """Written by _private_write: a secret, a candidate to check before it goes live, or a file others may not
    read (pyinfra's files.put uploads first and sets the mode after, so the content would be readable for a
    moment)."""
    return secret or bool(validate) or not int(mode, 8) & 0o004


def _private_write(dest: str, content: bytes, remote: dict | None, mode: str, user: str, group: str,
                   validate: str, secret: bool):
    """The file gets its owner and mode before the content arrives. With `validate`, the content goes to a
    candidate beside dest, is checked ({path} is the candidate's path) and only then moved over dest; a candidate
    that fails is removed and the live file stays. With `secret`, neither the content nor a diff is ever shown
    (nor put on a command line: uploads go over SFTP). Custom: pyinfra's files.put has neither order nor
    candidates."""
    if state.config.DIFF and not secret and (remote or {}).get("sha256") != _sha256(content):
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
        failed = _q(f"candidate {dest} failed: {validate.format(path=target)}; {dest} is unchanged")
        yield f"if ! {check}; then rm -f {_q(target)}; echo {failed} >&2; exit 1; fi"
        yield f"mv -f {_q(target)} {_q(dest)}"


def write(dest: str, content: bytes, mode: str, user: str = "root", group: str = "root", validate: str = "",
          secret: bool = False, pyinfra_write=None):
    """Make dest hold content with this mode and owner: nothing when it does; pyinfra's files.put (or the
    pyinfra_write() given) when it is a plain file others may read; otherwise the private writer
    (_private_write: secrets, validated candidates, files others may not read)."""
    remote, same = _up_to_date(dest, content, mode, user, group)
    if same:
        host.noop(f"{dest} is up to date")
    elif _private(mode, validate, secret):
        yield from _private_write(dest, content, remote, mode, user, group, validate, secret)
    elif pyinfra_write:
        yield from pyinfra_write()
    else:
        yield from files.put._inner(src=BytesIO(content), dest=dest, user=user, group=group, mode=mode)


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
    """Render a template (its includes are looked up beside it) to dest when its content, mode or owner differ:
    pyinfra's files.template, or the private writer (write()) for a candidate or a file others may not read. A
    template that fails to render is reported by files.template (file, line and the lines around it). Templates
    of shell scripts quote values with `shell_quote(value)`."""
    src = _local(src)
    _check_one_line_values(dest, data)
    data.setdefault("host", host)
    data.setdefault("shell_quote", _q)
    jinja = {"loader": FileSystemLoader(src.rsplit("/", 1)[0])}
    arguments = dict(src=src, dest=dest, user=user, group=group, mode=mode, jinja_env_kwargs=jinja, **data)
    try:
        rendered = get_template(src, jinja_env_kwargs=dict(jinja)).render(data).encode()  # it pops "loader"
    except (TemplateRuntimeError, TemplateSyntaxError, UndefinedError):
        yield from files.template._inner(**arguments)  # raises its report before it asks the host anything
        raise
    yield from write(dest, rendered, mode, user, group, validate,
                     pyinfra_write=lambda: files.template._inner(**arguments))


@snapshot_operation(lambda dest, **_: {"files": [dest]})
def put(src: str, dest: str, mode: str, user: str = "root", group: str = "root"):
    """Upload a local file to dest when its content, mode or owner differ (write())."""
    with open(_local(src), "rb") as local:
        yield from write(dest, local.read(), mode, user, group)


@snapshot_operation(lambda dest, **_: {"files": [dest]})
def secret_file(dest: str, content: str, mode: str = "600", user: str = "root", group: str = "root"):
    """Write content to dest privately (write() with `secret`): no diff, no content in the output or on a command
    line. Render secret templates in memory (render()) and pass the text here."""
    yield from write(dest, content.encode(), mode, user, group, secret=True)


def render(src: str, **data) -> str:
    """Render a template in memory (for secret_file); as with template(), no value may hold a control character."""
    _check_one_line_values(src, data)
    return get_template(_local(src)).render(**data)


@snapshot_operation(lambda path, **_: {"files": [path]})
def directory(path: str, mode: str = "755", user: str = "root", group: str = "root"):
    """A directory with this mode and owner (pyinfra's files.directory; parents are created as needed)."""
    remote = snapshot.read()["files"].get(path, {"type": "dir"})
    if remote["type"] != "dir":
        raise OperationError(f"{path} is a {remote['type']}, expected a directory")
    if (remote.get("mode"), remote.get("user"), remote.get("group")) == (str(int(mode)), user, group):
        host.noop(f"{path} is in place")
        return
    yield from files.directory._inner(path=path, mode=mode, user=user, group=group)


@snapshot_operation(lambda path, **_: {"files": [path]})
def absent(path: str):
    """No file or link at path (pyinfra's files.link or files.file with present=False)."""
    remote = snapshot.read()["files"][path]
    if not remote:
        host.noop(f"{path} is absent")
    elif remote["type"] == "link":
        yield from files.link._inner(path=path, present=False)
    else:
        yield from files.file._inner(path=path, present=False)


@snapshot_operation(lambda dest, **_: {"files": [dest]})
def download(url: str, dest: str, sha256: str, mode: str = "644"):
    """dest holds the file at url whose SHA-256 is `sha256` (pinned in group data), with this mode. pyinfra's
    files.download fetches it to a candidate beside dest; the candidate goes live only when its checksum
    matches, else it is removed and the deploy stops with one line naming the URL. (files.download's own
    sha256sum check runs after the file is in place and names neither the URL nor the expected value.)"""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):  # the settings refuse such a pin; this is the check where it lands
        raise OperationError(f"{dest}: the pinned SHA-256 {sha256[:80]!r} is not 64 lowercase hex digits")
    remote = snapshot.read()["files"][dest]
    if remote and remote.get("sha256") == sha256 and remote["mode"] == str(int(mode)):
        host.noop(f"{dest} is the pinned file")
        return
    candidate = f"{dest}.download"
    yield from files.download._inner(src=url, dest=candidate, mode=mode, force=True)
    report = "printf 'error: %s has SHA-256 %s, not the pinned %s; %s is unchanged\\n' " + \
        f"{_q(url)} \"$actual\" {_q(sha256)} {_q(dest)} >&2"
    yield (f"actual=$(sha256sum {_q(candidate)} | cut -d' ' -f1); if [ \"$actual\" != {_q(sha256)} ]; then "
           f"rm -f {_q(candidate)}; {report}; exit 1; fi; mv -f {_q(candidate)} {_q(dest)}")


# -- services ------------------------------------------------------------------------------------------------
@snapshot_operation(lambda units, **_: {"units": list(units)})
def services(units: list[str], running: bool = True):
    """The units are enabled at boot and (with `running`) running now: pyinfra's systemd.service for each unit
    that is not."""
    states = snapshot.read()["units"]
    pending = []
    for unit in units:
        current = states.get(unit, {})
        if current.get("enabled") not in ("enabled", "static", "alias") or \
                (running and current.get("active") != "active"):
            pending.append(unit)
    if not pending:
        host.noop(f"{', '.join(units)} enabled{' and running' if running else ''}")
    for unit in pending:
        yield from systemd.service._inner(service=unit, enabled=True, running=running or None)


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
    before ufw is enabled, so SSH stays reachable. Custom: pyinfra has no ufw operation."""
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
    and its fstab line are put in place and activation is skipped. Custom: pyinfra has no swap or fstab
    operation (files.line would leave a duplicated line duplicated)."""
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
    """The live sysctl values (pyinfra's server.sysctl for each that differs; the drop-in makes them last). In a
    container, keys under container_skip (vm.*: not namespaced) are left to the drop-in, which a real host
    applies at boot."""
    snap = snapshot.read()
    skip = tuple(container_skip) if snap["container"] != "none" else ()
    wanted = {key: " ".join(str(value).split()) for key, value in values.items()}
    changes = [key for key in sorted(wanted) if snap["sysctl"][key] != wanted[key] and not key.startswith(skip)]
    if not changes:
        host.noop("sysctl values are live" + (f" (container: {', '.join(skip)} left to the drop-in)" if skip else ""))
    for key in changes:
        yield from server.sysctl._inner(key=key, value=wanted[key])


@snapshot_operation(lambda **_: {"files": ["/etc/localtime"]})
def identity(hostname: str, timezone: str):
    """Hostname (pyinfra's server.hostname, resolvable through /etc/hosts' 127.0.1.1 line: server.etc_hosts) and
    timezone, as the /etc/localtime link (files.link): never timedatectl, which in a container can move the
    machine's clock."""
    snap = snapshot.read()
    zone = f"/usr/share/zoneinfo/{timezone}"
    same_zone = (snap["files"]["/etc/localtime"] or {}).get("target") == zone
    if snap["hostname"] == hostname and same_zone:
        host.noop(f"{hostname}, {timezone}")
        return
    if snap["hostname"] != hostname:
        yield from server.hostname._inner(hostname=hostname)
        yield from server.etc_hosts._inner(ip="127.0.1.1", hostnames=[hostname])
    if not same_zone:
        yield from files.link._inner(path="/etc/localtime", target=zone, force=True)


# -- volume and data directories ---------------------------------------------------------------------------
@snapshot_operation(lambda device, **_: {"device": device})
def volume_filesystem(device: str, mount_point: str, options: str = "defaults,nofail"):
    """Format `device` as ext4 only if it holds no filesystem (probed with blkid -p, never tried), put it in
    fstab by UUID exactly once and mount it. A filesystem already on the device is used as it is. Custom: pyinfra
    has no filesystem, fstab or mount operation."""
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
    touched; src holding data while dest also does is an error for a human to resolve. Custom: no pyinfra
    operation moves data with services stopped."""
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


# -- users ---------------------------------------------------------------------------------------------------
@snapshot_operation(lambda user, **_: {"users": [user]})
def user(user: str, groups: list[str], public_keys: list[str], shell: str = "/bin/bash"):
    """A login user with a locked password, exactly these supplementary groups and exactly these SSH keys:
    pyinfra's server.user (with delete_keys), plus `usermod --groups` when groups must go (server.user leaves a
    user's groups alone when it is given none)."""
    current = snapshot.read()["users"].get(user, {})
    keys = "".join(f"{key.strip()}\n" for key in public_keys)
    extra_groups = sorted(set(current.get("groups", [])) - {user})
    if "passwd" in current and current["passwd"][6] == shell and extra_groups == sorted(groups) and \
            current.get("authorized_keys_sha256") == _sha256(keys.encode()):
        host.noop(f"{user} is in {', '.join(groups) or 'no supplementary group'} with {len(public_keys)} key(s)")
        return
    home = current["passwd"][5] if "passwd" in current else f"/home/{user}"
    yield from server.user._inner(user=user, home=home, shell=shell, groups=groups, create_home=True,
                                  public_keys=[key.strip() for key in public_keys], delete_keys=True)
    if not groups and extra_groups:
        yield f"usermod --groups '' {_q(user)}"
