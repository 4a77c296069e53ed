"""One host's reboot in `python maintain.py reboot`'s roll (maintain.py holds the lock and picks the host)."""

from tasks import reboot

reboot.reboot_and_wait()
