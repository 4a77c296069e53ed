"""Where the testbed keeps things and which addresses it uses: the one place for the lab's names and numbers.

The lab (LAB) holds everything `up` makes and `down` removes; the cache (CACHE) keeps the guest image and the
apt cache between runs. Both can be moved with environment variables (tests use a scratch lab).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = REPO_ROOT / ".env.testbed"

LAB = Path(os.environ.get("MINDROOM_TESTBED_LAB", "/var/tmp/mindroom-testbed"))
CACHE = Path(os.environ.get("MINDROOM_TESTBED_CACHE", "/var/cache/mindroom-testbed"))

SUITE = "trixie"  # Debian 13, what the servers run (SERVER_IMAGE=debian-13)

# "Public" network: the host is the admin and every stand-in; guests get .11, .12, ...
PUBLIC_BRIDGE = "mrpub0"
BRIDGE_IP = "10.213.0.1"
PUBLIC_PREFIX = "10.213.0"
PUBLIC_PREFIXLEN = 24
FIRST_GUEST_OCTET = 11
LAST_GUEST_OCTET = 250
GUEST_IPV6_PREFIX = "2001:db8::"  # documentation range: reported by the API, not configured
# Hetzner's private network: a bridge without a host address; guests' 10.0.1.x lives on their eth1.
PRIVATE_BRIDGE = "mrpriv0"
PRIVATE_PREFIXLEN = 24
# Names of per-guest network namespaces and veths: "mrg<octet>", veth ends "mrg<octet>p" / "mrg<octet>q"
# (at most 15 characters, the kernel's limit).
GUEST_PREFIX = "mrg"

# Ports on the bridge address.
APT_PROXY_PORT = 3142
APT_REPO_PORT = 8079
# The fake Hetzner API listens on loopback only.
FAKECLOUD_LISTEN = "127.0.0.1:8088"
# The fake Stripe API too.
FAKESTRIPE_LISTEN = "127.0.0.1:8089"

TEST_DOMAIN = "mindroom.test"


def next_dokku_version(version: str) -> str:
    """The stand-in's next patch release beside DOKKU_VERSION's in the lab's apt repository: the end-to-end gate
    upgrades to it (`maintain.py upgrade`)."""
    major, minor, patch = version.split(".")
    return f"{major}.{minor}.{int(patch) + 1}"


VOLUME_SIZE_GB = 10  # the smallest Hetzner volume; files are sparse


def lab_dir(*parts: str, lab: Path | None = None) -> Path:
    return (lab or LAB).joinpath(*parts)
