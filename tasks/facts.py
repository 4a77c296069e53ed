"""Custom facts: each answers several questions in one round trip. Their commands never fail.

Offline cases live in tests/facts/<Fact>/*.json (command output in, expected value out).
"""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


class ContainerVirt(FactBase):
    """The container technology this host runs in ("systemd-nspawn", "lxc", ...), or "none" on a VM.

    Decides what a host cannot do (swapon, vm.* sysctls); never a testbed setting.
    """

    def command(self):
        return "systemd-detect-virt --container 2>/dev/null || true"

    def process(self, output):
        value = "".join(output).strip()
        return value or "none"


class PathStates(FactBase):
    """For each path: "missing", "empty" (empty directory), "dir" (non-empty directory),
    "file", or "link:<target>" (a symlink, not followed)."""

    default = dict

    def command(self, paths):
        script = (
            'for p in "$@"; do '
            'if [ -L "$p" ]; then echo "$p link:$(readlink "$p")"; '
            'elif [ -d "$p" ]; then if [ -n "$(ls -A "$p")" ]; then echo "$p dir"; else echo "$p empty"; fi; '
            'elif [ -e "$p" ]; then echo "$p file"; '
            'else echo "$p missing"; fi; done'
        )
        return f"sh -c {shlex.quote(script)} sh " + " ".join(shlex.quote(path) for path in paths)

    def process(self, output):
        states = {}
        for line in output:
            path, _, state = line.rpartition(" ")
            if path:
                states[path] = state
        return states


class BlockFilesystem(FactBase):
    """What a block device holds, probed directly (no blkid cache, no udev):
    {"present": bool, "TYPE": "ext4", "UUID": "..."}; no TYPE key when it holds no filesystem."""

    default = dict

    def command(self, device):
        quoted = shlex.quote(device)
        return f"if [ -b {quoted} ]; then echo PRESENT=1; blkid -p -o export {quoted} 2>/dev/null || true; fi"

    def process(self, output):
        values = dict(line.split("=", 1) for line in output if "=" in line)
        return {"present": values.pop("PRESENT", "") == "1", **values}


class FstabEntries(FactBase):
    """The lines of /etc/fstab that are entries, as lists of fields (comments and blanks dropped)."""

    default = list

    def command(self):
        return "cat /etc/fstab 2>/dev/null || true"

    def process(self, output):
        return [line.split() for line in output if line.strip() and not line.lstrip().startswith("#")]


class SwapState(FactBase):
    """The swap file's size in bytes (None when missing) and the active swap devices.

    {"size": 4294967296, "active": ["/swapfile"]}
    """

    def command(self, path):
        quoted = shlex.quote(path)
        return f"echo size=$(stat -c %s {quoted} 2>/dev/null); tail -n +2 /proc/swaps | awk '{{print \"active=\" $1}}'"

    def process(self, output):
        size, active = None, []
        for line in output:
            key, _, value = line.partition("=")
            if key == "size" and value:
                size = int(value)
            elif key == "active":
                active.append(value)
        return {"size": size, "active": active}


class SysctlValues(FactBase):
    """Live values of the given sysctl keys, whitespace-normalised ("1024 65535"); unreadable keys are absent."""

    default = dict

    def command(self, keys):
        return "sysctl " + " ".join(shlex.quote(key) for key in keys) + " 2>/dev/null || true"

    def process(self, output):
        values = {}
        for line in output:
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = " ".join(value.split())
        return values


class UfwState(FactBase):
    """ufw's live status, its default policies (from /etc/default/ufw) and the rules added by command.

    {"active": True, "policies": {"INPUT": "DROP", "OUTPUT": "ACCEPT"},
     "rules": ["allow 80/tcp", "allow from 10.0.0.0/8 to any port 22 proto tcp"]}
    """

    def requires_command(self):
        return "ufw"

    @staticmethod
    def default():
        return {"active": False, "policies": {}, "rules": []}

    def command(self):
        return (
            "ufw status | head -n 1; "
            "grep -E '^DEFAULT_(INPUT|OUTPUT)_POLICY=' /etc/default/ufw || true; "
            "ufw show added || true"
        )

    def process(self, output):
        state = self.default()
        for line in output:
            if line.startswith("Status:"):
                state["active"] = line.split(":", 1)[1].strip() == "active"
            elif line.startswith("DEFAULT_"):
                key, _, value = line.partition("=")
                state["policies"][key.split("_")[1]] = value.strip().strip('"')
            elif line.startswith("ufw "):
                state["rules"].append(line[len("ufw "):].strip())
        return state


class HeldPackages(FactBase):
    """Packages on hold (apt-mark showhold)."""

    default = list

    def command(self):
        return "apt-mark showhold 2>/dev/null || true"

    def process(self, output):
        return [line.strip() for line in output if line.strip()]


_DOKKU_STATE_SCRIPT = r"""
command -v dokku >/dev/null || exit 0
echo "version=$(dokku version 2>/dev/null | awk '{print $NF}')"
echo "global_domains=$(dokku domains:report --global --domains-global-vhosts 2>/dev/null)"
dokku plugin:list 2>/dev/null | awk 'NF >= 3 && $1 ~ /^[A-Za-z0-9_.-]+$/ {print "plugin=" $1}'
dokku ssh-keys:list 2>/dev/null | sed -n 's/^\(SHA256:[^ ]*\) NAME="\([^"]*\)".*/ssh_key=\2 \1/p'
for f in /var/lib/dokku/config/*/--global/*; do
  [ -f "$f" ] || continue
  rel=${f#/var/lib/dokku/config/}; echo "property=${rel%%/*}/${f##*/}=$(cat "$f")"
done
crontab -l -u dokku 2>/dev/null | grep -v '^#' | awk 'NF {print "cron=" $0}'
"""


class DokkuState(FactBase):
    """Everything the Dokku tasks compare, in one round trip (empty dict when Dokku is not installed):

    {"version": "0.36.4", "global_domains": ["mindroom.chat"], "plugins": ["postgres", ...],
     "ssh_keys": {"provisioner": "SHA256:..."},
     "properties": {"nginx/server-tokens": "off", "letsencrypt/email": "ops@..."},
     "cron": ["... dokku letsencrypt:auto-renew"]}

    Global plugin properties are read from Dokku's property store (/var/lib/dokku/config/<plugin>/--global/),
    which is what `dokku <plugin>:set --global` writes.
    """

    default = dict

    def command(self):
        return f"sh -c {shlex.quote(_DOKKU_STATE_SCRIPT)}"

    def process(self, output):
        if not output:
            return {}
        state = {"version": "", "global_domains": [], "plugins": [], "ssh_keys": {}, "properties": {}, "cron": []}
        for line in output:
            key, _, value = line.partition("=")
            if key == "version":
                state["version"] = value.strip()
            elif key == "global_domains":
                state["global_domains"] = value.split()
            elif key == "plugin":
                state["plugins"].append(value)
            elif key == "ssh_key":
                name, _, fingerprint = value.rpartition(" ")
                state["ssh_keys"][name] = fingerprint
            elif key == "property":
                prop, _, prop_value = value.partition("=")
                state["properties"][prop] = prop_value
            elif key == "cron":
                state["cron"].append(value)
        return state
