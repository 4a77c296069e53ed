"""Base host configuration shared by both roles: packages, SSH, firewall, fail2ban, swap, kernel tuning, clock.

Role values come from host data (group_data/<group>.py) or keyword arguments, never from the role name:
  public_ports   ports open to everyone besides SSH (dokku: 80 443 8448; platform: 80 443)
  swap_size_mb   swap file size (dokku 4096, platform 2048)
  sysctl_extra   role kernel values on top of group_data/all.py's `sysctl`
SSH (ssh_port) is open only from `ssh_allowed_from` (ADMIN_IPS and the private network).

What a container cannot do (swapon, vm.* sysctls) is still configured (swap file + fstab line, sysctl drop-in)
but not applied there; the ContainerVirt fact decides, so the same code runs on production and the testbed.
"""

from __future__ import annotations

import ipaddress

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import apt, files, server, systemd

from tasks import ops
from tasks.facts import ContainerVirt


def in_container() -> bool:
    return host.get_fact(ContainerVirt) != "none"


@deploy("Base")
def configure(public_ports=None, swap_size_mb=None, sysctl_extra=None):
    packages()
    ssh()
    firewall(public_ports)
    fail2ban()
    swap(swap_size_mb)
    kernel(sysctl_extra)
    identity()


@deploy("Base: packages")
def packages():
    ops.apt_upgrade_once(name="Upgrade all packages (first run only)", marker=host.data.upgrade_marker)
    apt.packages(name="Install base packages", packages=host.data.base_packages, no_recommends=True)
    files.template(
        name="Upload /etc/apt/apt.conf.d/20auto-upgrades",
        src="templates/base/20auto-upgrades.j2", dest="/etc/apt/apt.conf.d/20auto-upgrades", mode="644",
    )
    systemd.service(name="Enable unattended-upgrades", service="unattended-upgrades", running=True, enabled=True)


@deploy("Base: SSH")
def ssh():
    config = ops.validated_template(
        name="Upload /etc/ssh/sshd_config (checked with sshd -t)",
        src="templates/base/sshd_config.j2", dest="/etc/ssh/sshd_config", mode="644",
        validate="sshd -t -f {path}",
    )
    systemd.service(name="Reload ssh", service="ssh", reloaded=True, _if=config.did_change)


def _ufw_source(cidr: str) -> str:
    """ufw shows a single address without its /32 or /128."""
    network = ipaddress.ip_network(cidr, strict=False)
    return str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)


@deploy("Base: firewall")
def firewall(public_ports=None):
    ports = host.data.public_ports if public_ports is None else public_ports
    rules = [f"allow from {_ufw_source(cidr)} to any port {host.data.ssh_port} proto tcp"
             for cidr in host.data.ssh_allowed_from]
    rules += [f"allow {port}/tcp" for port in ports]
    ops.ufw_firewall(name="Set ufw: deny incoming, allow outgoing, SSH from admins, " + ", ".join(map(str, ports)),
                     rules=rules)
    systemd.service(name="Enable ufw at boot", service="ufw", enabled=True)


@deploy("Base: fail2ban")
def fail2ban():
    jail = files.template(
        name="Upload /etc/fail2ban/jail.d/sshd.local",
        src="templates/base/sshd.local.j2", dest="/etc/fail2ban/jail.d/sshd.local", mode="644",
        ssh_port=host.data.ssh_port,
    )
    systemd.service(name="Run fail2ban", service="fail2ban", running=True, enabled=True)
    systemd.service(name="Restart fail2ban", service="fail2ban", restarted=True, _if=jail.did_change)


@deploy("Base: swap")
def swap(swap_size_mb=None):
    size = host.data.swap_size_mb if swap_size_mb is None else swap_size_mb
    ops.swap_file(name=f"Create {host.data.swap_file} ({size} MB) in fstab once", path=host.data.swap_file,
                  size_mb=size, activate=not in_container())


@deploy("Base: kernel")
def kernel(sysctl_extra=None):
    values = {**host.data.sysctl, **(host.data.get("sysctl_extra", {}) if sysctl_extra is None else sysctl_extra)}
    files.template(
        name="Upload /etc/sysctl.d/60-mindroom.conf",
        src="templates/base/60-mindroom.conf.j2", dest="/etc/sysctl.d/60-mindroom.conf", mode="644", values=values,
    )
    ops.sysctl_live(name="Apply sysctl values", values=values,
                    skip_prefixes=host.data.sysctl_container_skip if in_container() else ())


@deploy("Base: identity")
def identity():
    name = host.data.server_name
    server.hostname(name="Set the hostname", hostname=name)
    files.line(name="Resolve the hostname locally (/etc/hosts)", path="/etc/hosts", line=r"^127\.0\.1\.1\s.*",
               replace=f"127.0.1.1 {name}")
    # A symlink, never timedatectl (see TESTBED.md: it can move a container host's clock).
    files.link(name=f"Set the timezone to {host.data.timezone}", path="/etc/localtime",
               target=f"/usr/share/zoneinfo/{host.data.timezone}")
