"""pyinfra deploy used by the end-to-end gate: reboot every host and wait until systemd is up again.

delay: pyinfra reconnects after it; the old sshd must be gone by then, or pyinfra reaches the host that is
still shutting down (stopping Docker's containers takes seconds) and loses the session.
"""

from pyinfra.operations import server

server.reboot(name="Reboot the host", delay=10, interval=1, reboot_timeout=180)
server.shell(name="Wait for systemd to finish booting", commands=["systemctl is-system-running --wait || true"])
