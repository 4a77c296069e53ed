"""Base host configuration shared by both roles: packages, SSH, firewall, fail2ban, swap, kernel tuning, identity.

Role values come from host data (group_data/<group>.py) or keyword arguments, never from the role name:
  public_ports   ports open to everyone besides SSH (dokku: 80 443 8448; platform: 80 443)
  swap_size_mb   swap file size (dokku 4096, platform 2048)
  sysctl_extra   role kernel values on top of group_data/all.py's `sysctl`
SSH (ssh_port) is open only from `ssh_allowed_from` (ADMIN_IPS and the private network), node_exporter
(node_exporter_port) only from `prometheus_source_ip` (the platform's private IP).

What a container cannot do (swapon, vm.* sysctls) is still configured (swap file + fstab line, sysctl drop-in)
but not applied there; the host decides (systemd-detect-virt), so production and the testbed run the same code.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import systemd

from tasks import ops


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
    ops.packages(name="Install base packages", packages=host.data.base_packages)
    ops.template(name="Upload /etc/apt/apt.conf.d/20auto-upgrades", src="templates/base/20auto-upgrades.j2",
                 dest="/etc/apt/apt.conf.d/20auto-upgrades", mode="644")
    ops.services(name="Enable unattended-upgrades", units=["unattended-upgrades"])


@deploy("Base: SSH")
def ssh():
    config = ops.template(name="Upload /etc/ssh/sshd_config (checked with sshd -t)", src="templates/base/sshd_config.j2",
                          dest="/etc/ssh/sshd_config", mode="644", validate="sshd -t -f {path}")
    ops.services(name="Enable ssh", units=["ssh"])
    ops.on_change(name="Reload ssh", changes=[config], operation=systemd.service, service="ssh", reloaded=True)


@deploy("Base: firewall")
def firewall(public_ports=None):
    ports = host.data.public_ports if public_ports is None else public_ports
    rules = [ops.ufw_rule(host.data.ssh_port, source) for source in host.data.ssh_allowed_from]
    rules += [ops.ufw_rule(port) for port in ports]
    # node_exporter (tasks/monitoring.py) answers Prometheus on the platform's private IP only
    rules.append(ops.ufw_rule(host.data.node_exporter_port, host.data.prometheus_source_ip))
    ops.ufw_firewall(name="Set ufw: deny incoming, allow outgoing, SSH from admins, " + ", ".join(map(str, ports)),
                     rules=rules)
    ops.services(name="Enable ufw at boot", units=["ufw"], running=False)


@deploy("Base: fail2ban")
def fail2ban():
    jail = ops.template(name="Upload /etc/fail2ban/jail.d/sshd.local", src="templates/base/sshd.local.j2",
                        dest="/etc/fail2ban/jail.d/sshd.local", mode="644", ssh_port=host.data.ssh_port)
    ops.services(name="Run fail2ban", units=["fail2ban"])
    ops.on_change(name="Restart fail2ban", changes=[jail], operation=systemd.service, service="fail2ban",
                  restarted=True)


@deploy("Base: swap")
def swap(swap_size_mb=None):
    size = host.data.swap_size_mb if swap_size_mb is None else swap_size_mb
    ops.swap_file(name=f"Create {host.data.swap_file} ({size} MB), in fstab once", path=host.data.swap_file,
                  size_mb=size)


@deploy("Base: kernel")
def kernel(sysctl_extra=None):
    values = {**host.data.sysctl, **(host.data.get("sysctl_extra", {}) if sysctl_extra is None else sysctl_extra)}
    ops.template(name="Upload /etc/sysctl.d/60-mindroom.conf", src="templates/base/60-mindroom.conf.j2",
                 dest="/etc/sysctl.d/60-mindroom.conf", mode="644", values=values)
    ops.sysctl_live(name="Apply sysctl values", values=values, container_skip=host.data.sysctl_container_skip)


@deploy("Base: identity")
def identity():
    ops.identity(name=f"Set the hostname and the timezone ({host.data.timezone})", hostname=host.data.server_name,
                 timezone=host.data.timezone)
