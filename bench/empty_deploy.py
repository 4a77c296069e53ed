"""An empty pyinfra deploy: connects to every host and runs no operation (P1's baseline). It ends as deploy.py
does when nothing changes (tasks/converged.py): before execution in the default mode and with -y, so all three
modes run unattended."""

from tasks import converged, snapshot

snapshot.declare(lambda: None, check=converged.check_first())
converged.finish_planning()
