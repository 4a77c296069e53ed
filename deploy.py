"""Table of contents: the tasks each group of hosts gets, in order. Logic lives in tasks/.

snapshot.declare(tasks) asks every host's questions before anything is read, so each host's snapshot is read
once in every mode (tasks/snapshot.py); with `check` (the default mode, -y) it then checks every host's tasks
against the snapshots and declares nothing when nothing would change; converged.finish_planning() ends a run that
has nothing to do there, before pyinfra's prompt or any operation (tasks/converged.py).

Order across hosts: pyinfra orders operations as a graph of each host's sequence; an operation called for
every host joins the sequences. keys.root_access() is such a join (root's authorized_keys on every host), so the
Dokku hosts authorize the platform's key after the platform host generated it.
lock.hold() first: the run holds the environment's lock while it changes hosts (tasks/lock.py);
reboot.report_required() last: the hosts that need a reboot are named at the end (tasks/reboot.py).
"""

from pyinfra import host

from tasks import backup, base, converged, docker, dokku, keys, lock, monitoring, nginx, platform, reboot, snapshot, tls, \
    volume


def tasks():
    lock.hold()
    base.configure()
    volume.mount()
    docker.install()
    monitoring.node_exporter()

    if "platform" in host.groups:
        keys.platform_key()

    if "dokku" in host.groups:
        dokku.install()
        dokku.configure()

    keys.root_access()

    if "platform" in host.groups:
        platform.services()
        nginx.configure()
        tls.certificates()
        monitoring.server()

    backup.configure()  # last: it backs up what the tasks above set up
    reboot.report_required()


snapshot.declare(tasks, check=converged.check_first())
converged.finish_planning()
