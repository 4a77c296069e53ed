"""The lab's two networks: bridges on the host and one network namespace per guest.

"Public" bridge mrpub0 carries 10.213.0.1 (the admin and every stand-in); each guest's eth0 gets
10.213.0.<octet>. The "private network" bridge mrpriv0 has no host address: guests reach each other there
on eth1 with their 10.0.1.x, the address the cloud API assigns when the server joins the network.
No default route, forwarding or NAT: a guest reaches only the host's bridge address and the other guests.
"""

from __future__ import annotations

from pathlib import Path

from tests.testbed import layout
from tests.testbed.procs import run


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def bridges_up() -> None:
    if not _link_exists(layout.PUBLIC_BRIDGE):
        run("ip", "link", "add", layout.PUBLIC_BRIDGE, "type", "bridge")
    address = f"{layout.BRIDGE_IP}/{layout.PUBLIC_PREFIXLEN}"
    if address not in run("ip", "-o", "-4", "addr", "show", "dev", layout.PUBLIC_BRIDGE):
        run("ip", "addr", "add", address, "dev", layout.PUBLIC_BRIDGE)
    run("ip", "link", "set", layout.PUBLIC_BRIDGE, "up")
    if not _link_exists(layout.PRIVATE_BRIDGE):
        run("ip", "link", "add", layout.PRIVATE_BRIDGE, "type", "bridge")
    run("ip", "link", "set", layout.PRIVATE_BRIDGE, "up")


def bridges_down() -> None:
    for bridge in (layout.PUBLIC_BRIDGE, layout.PRIVATE_BRIDGE):
        if _link_exists(bridge):
            run("ip", "link", "del", bridge)


def names(octet: int) -> dict[str, str]:
    """The namespace and host-side veth names of the guest with this address octet (≤ 15 characters)."""
    stem = f"{layout.GUEST_PREFIX}{octet}"
    return {"netns": stem, "public": f"{stem}p", "private": f"{stem}q"}


def netns_path(octet: int) -> str:
    return f"/run/netns/{names(octet)['netns']}"


def guest_up(octet: int) -> str:
    """Create the guest's namespace with eth0 on the public bridge (its address set) and eth1 on the private
    bridge (no address until the server joins the network). Idempotent; returns the guest's IPv4."""
    name = names(octet)
    ns, ipv4 = name["netns"], f"{layout.PUBLIC_PREFIX}.{octet}"
    if not Path(netns_path(octet)).exists():
        run("ip", "netns", "add", ns)
    for host_end, bridge, guest_end in ((name["public"], layout.PUBLIC_BRIDGE, "eth0"),
                                        (name["private"], layout.PRIVATE_BRIDGE, "eth1")):
        if not _link_exists(host_end):
            temporary = f"{host_end}g"
            run("ip", "link", "add", host_end, "type", "veth", "peer", "name", temporary)
            run("ip", "link", "set", temporary, "netns", ns)
            run("ip", "-n", ns, "link", "set", temporary, "name", guest_end)
        run("ip", "link", "set", host_end, "master", bridge, "up")
        run("ip", "-n", ns, "link", "set", guest_end, "up")
    run("ip", "-n", ns, "link", "set", "lo", "up")
    if f" {ipv4}/" not in run("ip", "-n", ns, "-o", "-4", "addr", "show", "dev", "eth0"):
        run("ip", "-n", ns, "addr", "add", f"{ipv4}/{layout.PUBLIC_PREFIXLEN}", "dev", "eth0")
    # No default route: a guest can reach only on-link addresses (the host's bridge address, other guests),
    # even on a host that forwards packets.
    return ipv4


def private_address(octet: int, ip: str, present: bool) -> None:
    """Add (or remove) the server's private-network address on the guest's eth1."""
    ns = names(octet)["netns"]
    has = f" {ip}/" in run("ip", "-n", ns, "-o", "-4", "addr", "show", "dev", "eth1")
    if present and not has:
        run("ip", "-n", ns, "addr", "add", f"{ip}/{layout.PRIVATE_PREFIXLEN}", "dev", "eth1")
    elif has and not present:
        run("ip", "-n", ns, "addr", "del", f"{ip}/{layout.PRIVATE_PREFIXLEN}", "dev", "eth1")


def guest_down(octet: int) -> None:
    name = names(octet)
    for link in (name["public"], name["private"]):
        if _link_exists(link):
            run("ip", "link", "del", link)
    if Path(netns_path(octet)).exists():
        run("ip", "netns", "del", name["netns"])


def leftover_octets() -> set[int]:
    """Octets of lab namespaces or veths still present (for a `down` after a crash)."""
    found = set()
    candidates = [p.name for p in Path("/run/netns").glob(f"{layout.GUEST_PREFIX}*")] if Path("/run/netns").exists() else []
    candidates += [p.name for p in Path("/sys/class/net").glob(f"{layout.GUEST_PREFIX}*")]
    for name in candidates:
        digits = name[len(layout.GUEST_PREFIX):].rstrip("pqg")
        if digits.isdigit():
            found.add(int(digits))
    return found
