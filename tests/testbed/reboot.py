"""pyinfra deploy used by the end-to-end gate: reboot every host and wait until systemd is up again."""

from pyinfra.operations import server

server.reboot(name="Reboot the host", delay=2, interval=1, reboot_timeout=120)
server.shell(name="Wait for systemd to finish booting", commands=["systemctl is-system-running --wait || true"])
