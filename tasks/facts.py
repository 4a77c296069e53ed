"""HostSnapshot: everything the tasks compare, read in one round trip (tasks/snapshot.py caches it per host).

Its command never fails, reads files rather than running slow tools and forks little (one stat and one sha256sum
for all regular files): package and hold state from dpkg,
ufw's rules from its rules files, Dokku's state from Dokku's own files (the places `dokku ...:set` writes), the
platform's certificate (names, expiry) and its compose services' states. `contents` returns whole files: ask it
only for public ones (SSH public keys, authorized_keys), never for secrets, since fact output can be logged.
Offline cases live in tests/facts/HostSnapshot/*.json (command output in, expected value out).
"""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

_SCRIPT = r"""
files=$1 units=$2 paths=$3 sysctls=$4 device=$5 swap=$6 users=$7 dokku=$8 contents=$9 certs=${10} compose=${11}
echo "container=$(systemd-detect-virt --container 2>/dev/null)"
echo "hostname=$(hostname)"
dpkg-query -W -f='${db:Status-Abbrev}|${Package}|${Version}|${db:Status-Want}\n' 2>/dev/null \
  | awk -F'|' 'substr($1, 2, 1) == "i" {print "pkg=" $2 " " $3; if ($4 == "hold") print "held=" $2}'
regular="" dirs=""
for p in $files; do
  if [ -L "$p" ]; then echo "file=$p link $(readlink "$p")"
  elif [ -f "$p" ]; then regular="$regular $p"
  elif [ -d "$p" ]; then dirs="$dirs $p"
  else echo "file=$p missing"; fi
done
[ -n "$regular" ] && { stat -c 'file=%n file %a %U %G' $regular; sha256sum $regular | awk '{print "sha256=" $2 " " $1}'; }
[ -n "$dirs" ] && stat -c 'file=%n dir %a %U %G' $dirs
for p in $contents; do [ -f "$p" ] && awk -v p="$p" '{print "content=" p " " $0}' "$p"; done
for p in $certs; do
  [ -s "$p" ] && openssl x509 -in "$p" -noout -enddate -ext subjectAltName 2>/dev/null | awk -v p="$p" '{print "cert=" p " " $0}'
done
[ -n "$compose" ] && docker ps -a --filter "label=com.docker.compose.project=$compose" \
  --format '{{.Label "com.docker.compose.service"}} {{.State}}' 2>/dev/null | sed 's/^/compose=/'
for p in $paths; do
  if [ -L "$p" ]; then echo "path=$p link:$(readlink "$p")"
  elif [ -d "$p" ]; then if [ -n "$(ls -A "$p")" ]; then echo "path=$p dir"; else echo "path=$p empty"; fi
  elif [ -e "$p" ]; then echo "path=$p file"; else echo "path=$p missing"; fi
done
[ -n "$units" ] && systemctl show -p Id -p UnitFileState -p ActiveState $units 2>/dev/null \
  | awk 'BEGIN {RS = ""; FS = "\n"} {line = "unit="; for (i = 1; i <= NF; i++) line = line $i " "; print line}'
for k in $sysctls; do echo "sysctl=$k=$(sysctl -n "$k" 2>/dev/null | tr -s ' \t' '  ')"; done
grep -v '^[[:space:]]*#' /etc/fstab 2>/dev/null | awk 'NF {print "fstab=" $0}'
awk '{print "mount=" $2 " " $3}' /proc/mounts
tail -n +2 /proc/swaps | awk '{print "swapon=" $1}'
[ -n "$swap" ] && [ -f "$swap" ] && echo "swapsize=$(stat -c %s "$swap")"
[ -n "$device" ] && [ -b "$device" ] && { echo "blk=PRESENT=1"; blkid -p -o export "$device" 2>/dev/null | sed 's/^/blk=/'; }
if [ -f /etc/ufw/ufw.conf ]; then
  grep -h -E '^(ENABLED|DEFAULT_INPUT_POLICY|DEFAULT_OUTPUT_POLICY)=' /etc/ufw/ufw.conf /etc/default/ufw | sed 's/^/ufw=/'
  iptables -n -L ufw-user-input >/dev/null 2>&1 && echo "ufw=LIVE=yes"
  cat /etc/ufw/user.rules /etc/ufw/user6.rules 2>/dev/null | sed -n 's/^### tuple ### /ufwrule=/p'
fi
for u in $users; do
  getent passwd "$u" | sed 's/^/passwd=/'
  id -nG "$u" 2>/dev/null | sed "s/^/groups=$u /"
  home=$(getent passwd "$u" | cut -d: -f6)
  [ -n "$home" ] && [ -f "$home/.ssh/authorized_keys" ] && echo "keys=$u $(sha256sum < "$home/.ssh/authorized_keys" | cut -c1-64)"
done
if [ "$dokku" = yes ] && [ -d /var/lib/dokku ]; then
  echo "dokku=installed"
  [ -f /home/dokku/VHOST ] && tr -s ' \n' '  ' < /home/dokku/VHOST | sed 's/^/dokku_vhosts=/; s/ *$//'; echo
  # third-party plugins (core ones are linked from core-plugins/enabled): plugn's enabled link, the committish
  # `plugn update` pinned, the committish whose install the deploy saw finish (tasks/dokku.py PLUGIN_MARKERS)
  for p in /var/lib/dokku/plugins/available/*; do
    n=${p##*/}; { [ -e "$p" ] && [ ! -L "/var/lib/dokku/core-plugins/enabled/$n" ]; } || continue
    e=disabled; [ -L "/var/lib/dokku/plugins/enabled/$n" ] && e=enabled
    c=$(cat "$p/.plugin_committish" 2>/dev/null); f=$(cat "/var/lib/mindroom-infra/dokku-plugins/$n" 2>/dev/null)
    echo "dokku_plugin=$n $e ${c:--} ${f:--}"
  done
  for f in /var/lib/dokku/config/*/--global/*; do
    [ -f "$f" ] || continue; rel=${f#/var/lib/dokku/config/}; echo "dokku_property=${rel%%/*}/${f##*/}=$(cat "$f")"
  done
  sed -n 's/^command="FINGERPRINT=\([^ ]*\) NAME=\\"\([^"\\]*\)\\".*/dokku_key=\2 \1/p' /home/dokku/.ssh/authorized_keys 2>/dev/null
  [ -f /var/lib/dokku/data/letsencrypt/--global/autorenew ] && echo "dokku_autorenew=yes"
fi
exit 0
"""


def _empty():
    return {
        "container": "none", "hostname": "", "packages": {}, "held": [], "files": {}, "paths": {}, "units": {},
        "sysctl": {}, "fstab": [], "mounts": {}, "swap_active": [], "swap_size": None, "device": {},
        "ufw": {"installed": False, "enabled": False, "live": False, "policies": {}, "rules": []},
        "users": {}, "dokku": {}, "contents": {}, "certs": {}, "compose": {},
    }


class HostSnapshot(FactBase):
    """One read of a host's state. Arguments say which files, units, paths, sysctl keys, device, swap file,
    users to look at, whether to read Dokku's state, which (public) files to return whole, which certificates to
    read and which compose project's services. Shape: see _empty() and tests/facts/HostSnapshot/."""

    default = staticmethod(_empty)

    def command(self, files=(), units=(), paths=(), sysctls=(), device="", swap="", users=(), dokku=False,
                contents=(), certs=(), compose=""):
        args = [" ".join(files), " ".join(units), " ".join(paths), " ".join(sysctls), device or "", swap or "",
                " ".join(users), "yes" if dokku else "no", " ".join(contents), " ".join(certs), compose or ""]
        return f"sh -c {shlex.quote(_SCRIPT)} snapshot " + " ".join(shlex.quote(arg) for arg in args)

    def process(self, output):
        snap = _empty()
        for line in output:
            key, sep, value = line.partition("=")
            if sep:
                _parse_line(snap, key, value)
        snap["certs"] = {path: certificate for path, lines in snap["certs"].items()
                         if (certificate := parse_certificate(lines))}
        return snap


class Certificate(FactBase):
    """{"names": [...], "not_after": "..."} of a PEM certificate, or None when there is none (the status view's
    fact; the deploy reads the same through HostSnapshot's `certs`)."""

    def command(self, path):
        return f"test -s {path} && openssl x509 -in {path} -noout -enddate -ext subjectAltName 2>/dev/null || true"

    def process(self, output):
        return parse_certificate(output)


def parse_certificate(lines):
    """openssl x509 -enddate -ext subjectAltName output -> {"names": [...], "not_after": "..."} or None."""
    names, not_after = [], None
    for line in lines:
        line = line.strip()
        if line.startswith("notAfter="):
            not_after = line.split("=", 1)[1]
        elif "DNS:" in line:
            names = [part.strip()[len("DNS:"):] for part in line.split(",") if part.strip().startswith("DNS:")]
    return {"names": names, "not_after": not_after} if not_after else None


def _section(snap, path):
    """snap["dokku"]["plugins"] for path "dokku.plugins"."""
    for part in path.split("."):
        snap = snap[part]
    return snap


# key: (section, how the value splits into name and value: "=", " " (first space) or "<" (last space))
_MAPPINGS = {
    "pkg": ("packages", " "), "path": ("paths", "<"), "mount": ("mounts", " "), "blk": ("device", "="),
    "dokku_property": ("dokku.properties", "="), "dokku_key": ("dokku.ssh_keys", "<"), "compose": ("compose", " "),
}
# key: (section, whether the value is split into fields)
_LISTS = {
    "held": ("held", False), "swapon": ("swap_active", False), "fstab": ("fstab", True),
    "ufwrule": ("ufw.rules", True),
}


def _parse_line(snap, key, value):
    if key in _MAPPINGS:
        section, split = _MAPPINGS[key]
        name, _, item = value.rpartition(" ") if split == "<" else value.partition(split)
        _section(snap, section)[name] = item
    elif key in _LISTS:
        section, fields = _LISTS[key]
        _section(snap, section).append(value.split() if fields else value)
    elif key in ("container", "hostname"):
        snap[key] = value.strip() or snap[key]
    elif key == "swapsize":
        snap["swap_size"] = int(value)
    elif key == "sysctl":
        name, _, setting = value.partition("=")
        if setting.strip():
            snap["sysctl"][name] = " ".join(setting.split())
    elif key == "file":
        _parse_file(snap["files"], value.split(" "))
    elif key == "sha256":  # one sha256sum for every regular file, after their stat lines
        path, _, digest = value.rpartition(" ")
        snap["files"].setdefault(path, {})["sha256"] = digest
    elif key == "unit":
        props = dict(part.split("=", 1) for part in value.split() if "=" in part)
        name = props.get("Id", "").removesuffix(".service")
        snap["units"][name] = {"enabled": props.get("UnitFileState", ""), "active": props.get("ActiveState", "")}
    elif key == "ufw":
        _parse_ufw(snap["ufw"], value)
    elif key in ("passwd", "groups", "keys"):
        _parse_user(snap["users"], key, value)
    elif key == "dokku":
        snap["dokku"] = {"vhosts": [], "plugins": {}, "properties": {}, "ssh_keys": {}, "autorenew": False}
    elif key == "dokku_vhosts":
        snap["dokku"]["vhosts"] = value.split()
    elif key == "dokku_plugin":
        name, state, *pins = value.split(" ")
        committish, finished = ("" if pin == "-" else pin for pin in pins)
        snap["dokku"]["plugins"][name] = {"enabled": state == "enabled", "committish": committish, "finished": finished}
    elif key == "dokku_autorenew":
        snap["dokku"]["autorenew"] = True
    elif key in ("content", "cert"):  # lines per path; certificates are parsed once all lines are in
        path, _, line = value.partition(" ")
        snap["contents" if key == "content" else "certs"].setdefault(path, []).append(line)


def _parse_file(files, fields):
    path, kind, *rest = fields
    if kind == "link":
        files[path] = {"type": "link", "target": rest[0]}
    elif kind in ("file", "dir"):
        files[path] = {"type": kind, **dict(zip(("mode", "user", "group"), rest))}


def _parse_ufw(ufw, value):
    name, _, setting = value.partition("=")
    setting = setting.strip().strip('"')
    ufw["installed"] = True
    if name == "ENABLED":
        ufw["enabled"] = setting == "yes"
    elif name == "LIVE":
        ufw["live"] = True
    else:
        ufw["policies"][name.split("_")[1]] = setting


def _parse_user(users, key, value):
    if key == "passwd":
        fields = value.split(":")
        users.setdefault(fields[0], {})["passwd"] = fields
    else:
        user, _, rest = value.partition(" ")
        entry = users.setdefault(user, {})
        if key == "groups":
            entry["groups"] = rest.split()
        else:
            entry["authorized_keys_sha256"] = rest
