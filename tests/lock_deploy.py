"""A deploy for tests/test_lock.py on @local: tasks/lock.py around one operation that always changes
(`--data marker=FILE`: appends a line to it, after `--data seconds=N`) and one that never does."""

from pyinfra import host
from pyinfra.operations import files, server

from tasks import lock

lock.hold()
files.directory(name="Unchanged directory", path="/", present=True)
if host.data.get("marker"):
    server.shell(name="Append to the marker", commands=[
        f"sleep {float(host.data.get('seconds', 0))}; echo ran >> {host.data.get('marker')}"])
