"""One Dokku server's upgrade in `python maintain.py upgrade`'s roll (maintain.py holds the lock and picks the
server)."""

from tasks import upgrade

upgrade.upgrade_and_check()
