"""Every Ray the tests start listens on loopback only (tests/conftest.py sets the node address to 127.0.0.1).

The listening sockets come from ``/proc``: each process's socket inodes, matched against the kernel's TCP tables.
"""

import ipaddress
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def descendants(pid: int) -> set[int]:
    """``pid``'s processes below it, at any depth (from each process's parent in /proc/*/stat)."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - found
        found |= frontier
    return found


def listening(pids: set[int]) -> dict[int, list[str]]:
    """Per process, the addresses its listening TCP sockets are bound to."""
    inodes = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    out: dict[int, list[str]] = {}
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(local.split(":")[0])
            # The kernel prints the address as 32-bit words in host (little-endian) order.
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))
            out.setdefault(inodes[inode], []).append(str(ipaddress.ip_address(packed)))
    return out


def off_loopback(pid: int) -> dict[int, list[str]]:
    """The processes ``pid`` and under it that listen on an address other than loopback, with those addresses."""
    bad = {}
    for process, addresses in listening(descendants(pid) | {pid}).items():
        wrong = [a for a in addresses if not _loopback(a)]
        if wrong:
            bad[process] = wrong
    return bad


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


def test_the_session_ray_listens_on_loopback_only(ray_session):
    ray = ray_session

    @ray.remote
    def node_address() -> str:
        return ray.util.get_node_ip_address()

    assert ray.get(node_address.remote()) == "127.0.0.1"
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    assert listening(descendants(os.getpid())), "found no Ray process listening: the check saw nothing"
    assert off_loopback(os.getpid()) == {}


def test_the_address_reader_sees_a_socket_on_every_interface():
    # The check must be able to fail: a socket bound to every interface is reported.
    import socket

    with socket.socket() as server:
        server.bind(("0.0.0.0", 0))
        server.listen()
        assert "0.0.0.0" in off_loopback(os.getpid()).get(os.getpid(), [])
