"""Custom operations: each reads its facts at run time and yields commands only for what differs.

Offline cases live in tests/operations/<op>/*.json (facts in, exact commands out, including a no-op case).
"""

from __future__ import annotations

import shlex
import uuid
from io import StringIO

from pyinfra import host, logger, state
from pyinfra.api import FileUploadCommand, OperationError, operation
from pyinfra.api.util import get_file_sha1, get_template
from pyinfra.facts.files import File, FileContents, Sha1File
from pyinfra.facts.server import Mounts
from pyinfra.operations.util.files import generate_color_diff

from tasks.facts import BlockFilesystem, FstabEntries, HeldPackages, PathStates, SwapState, SysctlValues, UfwState

APT_ENV = "DEBIAN_FRONTEND=noninteractive"
APT_OPTS = "-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"


def _q(value) -> str:
    return shlex.quote(str(value))


@operation()
def apt_upgrade_once(marker: str):
    """Refresh the package lists and upgrade everything, once: the marker file records that it ran."""
    if host.get_fact(File, path=marker):
        host.noop(f"upgraded before ({marker} exists)")
        return
    yield f"{APT_ENV} apt-get update -q"
    yield f"{APT_ENV} apt-get dist-upgrade {APT_OPTS}"
    yield f"mkdir -p {_q(marker.rsplit('/', 1)[0])} && date -u +%FT%TZ > {_q(marker)}"


@operation()
def apt_hold(packages: list[str]):
    """Hold packages at their installed version (apt-mark hold), only those not held yet."""
    held = host.get_fact(HeldPackages)
    missing = [package for package in packages if package not in held]
    if not missing:
        host.noop(f"{', '.join(packages)} already held")
        return
    yield "apt-mark hold " + " ".join(_q(package) for package in missing)


@operation()
def validated_template(src: str, dest: str, validate: str, mode: str, user: str = "root", group: str = "root",
                       **data):
    """Render a template; when it differs from dest, upload it beside dest, run `validate` on the
    candidate ({path} is replaced by its path) and only then move it over dest. A candidate that
    fails validation is removed and the live file stays as it was."""
    if state.cwd and not src.startswith("/"):
        src = f"{state.cwd}/{src}"
    data.setdefault("host", host)
    rendered = get_template(src).render(data)
    remote = host.get_fact(File, path=dest)
    same_content = remote and host.get_fact(Sha1File, path=dest) == get_file_sha1(StringIO(rendered))
    same_meta = remote and remote["mode"] == int(mode) and (remote["user"], remote["group"]) == (user, group)
    if same_content and same_meta:
        host.noop(f"{dest} is up to date")
        return
    if state.config.DIFF and not same_content:
        current = host.get_fact(FileContents, path=dest) or []
        host.log(f"Will {'modify' if remote else 'create'} {dest}", logger.info)
        for line in generate_color_diff([line + "\n" for line in current], rendered.splitlines(True)):
            logger.info("  %s", line)
    candidate = f"{dest}.candidate"
    yield FileUploadCommand(StringIO(rendered), candidate, remote_temp_filename=host.get_temp_filename(candidate))
    yield f"chown {_q(user)}:{_q(group)} {_q(candidate)} && chmod {_q(mode)} {_q(candidate)}"
    check = validate.format(path=_q(candidate))
    yield f"if ! {check}; then rm -f {_q(candidate)}; echo 'candidate {dest} failed: {validate}' >&2; exit 1; fi"
    yield f"mv -f {_q(candidate)} {_q(dest)}"


def _fstab_commands(entries: list[list[str]], fields: list[str], key_index: int):
    """Commands that leave exactly one fstab line whose field key_index equals fields[key_index]."""
    key = fields[key_index]
    matching = [entry for entry in entries if len(entry) > key_index and entry[key_index] == key]
    if [entry[:6] for entry in matching] == [fields]:
        return []
    line = " ".join(fields)
    awk = f"awk -v k={_q(key)} '$0 ~ /^[[:space:]]*#/ || NF < {key_index + 1} || ${key_index + 1} != k'"
    return [f"{awk} /etc/fstab > /etc/fstab.new && echo {_q(line)} >> /etc/fstab.new && mv /etc/fstab.new /etc/fstab"]


@operation()
def swap_file(path: str, size_mb: int, activate: bool):
    """A swap file of size_mb, in fstab exactly once; switched on only when `activate`
    (a container cannot swapon: the file and its fstab line are still put in place)."""
    swap = host.get_fact(SwapState, path=path)
    size = size_mb * 1024 * 1024
    changed = False
    if swap["size"] != size:
        if path in swap["active"]:
            yield f"swapoff {_q(path)}"
        yield (f"rm -f {_q(path)} && (fallocate -l {size_mb}M {_q(path)} || dd if=/dev/zero of={_q(path)} bs=1M "
               f"count={size_mb} status=none) && chmod 600 {_q(path)} && mkswap -q {_q(path)}")
        changed = True
    commands = _fstab_commands(host.get_fact(FstabEntries), [path, "none", "swap", "sw", "0", "0"], 0)
    yield from commands
    if activate and (changed or path not in swap["active"]):
        yield f"swapon {_q(path)}"
    if not (changed or commands or (activate and path not in swap["active"])):
        host.noop(f"swap file {path} ({size_mb} MB) in place{'' if activate else ', activation skipped (container)'}")


@operation()
def volume_filesystem(device: str, mount_point: str, options: str = "defaults,nofail"):
    """Format `device` as ext4 only if it holds no filesystem (probed, never tried), put it in fstab by
    UUID exactly once, and mount it. A filesystem already on the device is used as it is."""
    probe = host.get_fact(BlockFilesystem, device=device)
    if not probe.get("present"):
        raise OperationError(f"volume device {device} is not a block device on {host.name}; is the volume attached?")
    fs_type, fs_uuid = probe.get("TYPE"), probe.get("UUID")
    did = False
    if not fs_type:
        fs_type, fs_uuid = "ext4", str(uuid.uuid4())
        yield f"mkfs.ext4 -q -U {fs_uuid} {_q(device)}"
        did = True
    commands = _fstab_commands(host.get_fact(FstabEntries), [f"UUID={fs_uuid}", mount_point, fs_type, options, "0", "2"], 1)
    yield from commands
    if mount_point not in host.get_fact(Mounts):
        yield f"mkdir -p {_q(mount_point)} && mount {_q(mount_point)}"
        did = True
    if not (did or commands):
        host.noop(f"{device} ({fs_type}) mounted at {mount_point}")


@operation()
def move_onto(src: str, dest: str, link: bool = False, stop: list[str] | tuple = (), owner: str | None = None):
    """Move a data directory onto the volume, once: src's contents go to dest (with `stop` units stopped)
    when dest is still missing or empty. With `link`, src becomes a symlink to dest. Data already at dest
    is never touched; src holding data while dest also does is an error for a human to resolve."""
    states = host.get_fact(PathStates, paths=[src, dest])
    src_state, dest_state = states.get(src, "missing"), states.get(dest, "missing")
    if link and src_state == f"link:{dest}" or not link and src_state in ("missing", "empty"):
        if dest_state == "missing":
            yield f"mkdir -p {_q(dest)}"
            if owner:
                yield f"chown {_q(owner)}: {_q(dest)}"
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
    elif src_state == "missing" and owner:
        yield f"chown {_q(owner)}: {_q(dest)}"
    if link:
        yield f"rmdir {_q(src)} 2>/dev/null || true; ln -sfn {_q(dest)} {_q(src)}"
    for unit in reversed(stop):
        yield f"systemctl start {_q(unit)}"


@operation()
def sysctl_live(values: dict[str, str], skip_prefixes: list[str] | tuple = ()):
    """Set the live values that differ (`sysctl -w`), except keys under skip_prefixes
    (a container cannot set vm.*: the drop-in still holds them for the next boot of a real host)."""
    wanted = {key: " ".join(str(value).split()) for key, value in values.items()}
    live = host.get_fact(SysctlValues, keys=sorted(wanted))
    changes = [key for key in sorted(wanted) if live.get(key) != wanted[key] and not key.startswith(tuple(skip_prefixes))]
    if not changes:
        host.noop("sysctl values are live" + (f" (skipped {', '.join(skip_prefixes)})" if skip_prefixes else ""))
        return
    yield "sysctl -q -w " + " ".join(_q(f"{key}={wanted[key]}") for key in changes)


@operation()
def ufw_firewall(rules: list[str], incoming: str = "deny", outgoing: str = "allow"):
    """Make ufw hold exactly `rules` (in `ufw show added` form, e.g. "allow 80/tcp"), set the default
    policies and enable it. Rules are added before ufw is enabled, so SSH stays reachable."""
    ufw = host.get_fact(UfwState)
    policy_names = {"deny": "DROP", "allow": "ACCEPT", "reject": "REJECT"}
    did = False
    for direction, policy in (("INPUT", incoming), ("OUTPUT", outgoing)):
        if ufw["policies"].get(direction) != policy_names[policy]:
            yield f"ufw default {policy} {'incoming' if direction == 'INPUT' else 'outgoing'}"
            did = True
    for rule in rules:
        if rule not in ufw["rules"]:
            yield f"ufw {rule}"
            did = True
    for rule in ufw["rules"]:
        if rule not in rules:
            yield f"ufw delete {rule}"
            did = True
    if not ufw["active"]:
        yield "ufw --force enable"
        did = True
    if not did:
        host.noop("ufw is active with the wanted rules")
