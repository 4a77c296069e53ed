"""A stateful fake of the Hetzner Cloud API, spoken to only through the real hcloud SDK.

In-process: `fake = FakeCloud(state_file=None, hooks=None, action_latency=0.0); url = fake.start()` (url ends in
/v1; set HCLOUD_ENDPOINT to it), `fake.stop()`. As a daemon for the testbed: `python -m tests.fakecloud --listen
127.0.0.1:PORT --state FILE --hooks module:Class`. Hooks: tests.fakecloud.hooks.CloudHooks.
"""

from .cloud import md5_fingerprint
from .hooks import CloudHooks
from .server import FakeCloud, Faults

__all__ = ["FakeCloud", "Faults", "CloudHooks", "md5_fingerprint"]
