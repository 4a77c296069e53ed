"""apt for the guests: apt-cacher-ng on the bridge address, caching the Debian mirror in CACHE.

It runs with its own configuration: Debian's default one remaps deb.debian.org to other mirrors
("503 Host not found" here) and listens everywhere. The guest image points apt at it.
"""

from __future__ import annotations

from pathlib import Path

from tests.testbed import layout, procs


def _config(lab: Path, bridge_ip: str, cache: Path) -> str:
    here = lab / "apt-cacher-ng"
    return (f"CacheDir: {cache}\nLogDir: {here}\nSupportDir: /usr/lib/apt-cacher-ng\n"
            f"BindAddress: {bridge_ip}\nPort: {layout.APT_PROXY_PORT}\nSocketPath: {here / 'socket'}\n"
            f"PidFile: {here / 'acng.pid'}\nForeGround: 1\nExThreshold: 4\n")


def start(lab: Path, bridge_ip: str, cache: Path = layout.CACHE / "apt-cacher-ng") -> dict[str, str]:
    here = lab / "apt-cacher-ng"
    (here / "conf").mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    (here / "conf/acng.conf").write_text(_config(lab, bridge_ip, cache))
    procs.spawn(["/usr/sbin/apt-cacher-ng", "-c", str(here / "conf")], lab / "apt-cacher-ng.pid",
                lab / "logs/apt-cacher-ng.log")
    procs.wait_for(lambda: procs.port_open(bridge_ip, layout.APT_PROXY_PORT), 15, "apt-cacher-ng")
    return {}


def stop(lab: Path) -> None:
    procs.stop(lab / "apt-cacher-ng.pid")
