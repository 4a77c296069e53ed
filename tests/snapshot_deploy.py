"""A deploy for tests/test_snapshot_reads.py on @local, built like deploy.py (snapshot.declare with
converged.check_first(), then converged.finish_planning): a template, a directory, an uploaded file and a
follow-up of the template, all under `--data workdir=DIR`, owned by whoever runs it. `--data line=TEXT` changes
the template's content; `--data direct=1` adds a pyinfra operation called directly, which snapshot.declare
refuses."""

import grp
import os
import pwd
from pathlib import Path

from pyinfra import host
from pyinfra.operations import server

from tasks import converged, ops, snapshot

ROOT = Path(ops.__file__).resolve().parent.parent
OWNER = {"user": pwd.getpwuid(os.getuid()).pw_name, "group": grp.getgrgid(os.getgid()).gr_name}


def tasks():
    workdir = host.data.workdir
    ops.directory(name="Create the data directory", path=f"{workdir}/data", mode="755", **OWNER)
    config = ops.template(name="Render app.conf", src=str(ROOT / "tests/snapshot/app.conf.j2"), dest=f"{workdir}/data/app.conf",
                          mode="644", line=host.data.get("line", "converged"), **OWNER)
    ops.put(name="Upload the landing page", src=str(ROOT / "files/landing/index.html"), dest=f"{workdir}/data/index.html",
            mode="644", **OWNER)
    ops.on_change(name="Follow app.conf", changes=[config], operation=server.shell,
                  commands=[f"date >> {workdir}/followed"])
    if host.data.get("direct"):  # what declare() refuses: a pyinfra operation declared by the task itself
        server.shell(name="Touch directly", commands=[f"touch {workdir}/direct"])


snapshot.declare(tasks, check=converged.check_first())
converged.finish_planning()
