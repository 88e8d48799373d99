"""The addresses configured in a network namespace, read back from the kernel.

Through rtnetlink, from a socket made while the calling thread had joined the namespace
(what podman's ``ns.WithNetNSPath`` + ``net.InterfaceAddrs`` does): no process, well under
a millisecond. A caller outside the namespace's user namespace cannot join it (a thread of
a multi-threaded process may not enter a user namespace); then ``ip -j addr`` is run inside
both namespaces instead.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import time
from ipaddress import IPv4Address, IPv6Address, ip_address

from ._spawn import lib
from .errors import ReadyTimeout, StartError
from .process import DEVNULL, spawn

IPAddress = IPv4Address | IPv6Address

NETLINK_ROUTE = 0
RTM_NEWADDR = 20
RTM_GETADDR = 22
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
IFA_ADDRESS = 1
IFA_LOCAL = 2
_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTATTR = struct.Struct("=HH")


def netns_addresses(netns: str, userns: str | None, deadline: float) -> list[IPAddress]:
    """The addresses in ``netns`` a peer could use, as podman keeps them: no loopback, no
    multicast, no IPv6 link-local. ``userns`` owns ``netns`` when the caller is outside it.
    """
    try:
        sock = _route_socket_in(netns)
    except PermissionError:
        if userns is None:
            raise
        found = _addresses_from_ip(netns, userns, deadline)
    else:
        with sock:
            found = dump_addresses(sock)
    return [address for address in found if usable(address)]


def usable(address: IPAddress) -> bool:
    """Whether podman keeps ``address`` (Go: not loopback, not multicast, and for IPv6 not
    link-local: that needs a zone to be of any use)."""
    if address.is_loopback or address.is_multicast:
        return False
    return address.version == 4 or not address.is_link_local


def _route_socket_in(netns: str) -> socket.socket:
    """An rtnetlink socket of ``netns``: made after joining it, the calling thread back in
    its own namespace on return (in C); the socket keeps the namespace it was made in."""
    fd = int(
        lib.pyslirp_socket_in_netns(
            os.fsencode(netns), socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE
        )
    )
    if fd < 0:
        raise OSError(-fd, os.strerror(-fd), netns)
    return socket.socket(fileno=fd)


def dump_addresses(sock: socket.socket) -> list[IPAddress]:
    """Every address the rtnetlink socket ``sock`` sees (RTM_GETADDR dump), in its order."""
    request = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    sock.send(
        _NLMSGHDR.pack(_NLMSGHDR.size + len(request), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
        + request
    )
    found: list[IPAddress] = []
    while True:
        data = sock.recv(1 << 16)
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, kind = _NLMSGHDR.unpack_from(data, offset)[:2]
            body = data[offset + _NLMSGHDR.size : offset + length]
            if kind == NLMSG_DONE:
                return found
            if kind == NLMSG_ERROR:
                errno = -struct.unpack_from("=i", body)[0]
                raise OSError(errno, f"RTM_GETADDR: {os.strerror(errno)}")
            if kind == RTM_NEWADDR:
                address = _address(body)
                if address is not None:
                    found.append(address)
            offset += (length + 3) & ~3


def _address(body: bytes) -> IPAddress | None:
    """The address of one ifaddrmsg: IFA_LOCAL where present (the interface's own on a
    point-to-point link), else IFA_ADDRESS."""
    attrs: dict[int, bytes] = {}
    offset = _IFADDRMSG.size
    while offset + _RTATTR.size <= len(body):
        length, kind = _RTATTR.unpack_from(body, offset)
        if length < _RTATTR.size:
            break
        attrs[kind] = body[offset + _RTATTR.size : offset + length]
        offset += (length + 3) & ~3
    raw = attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS))
    return ip_address(raw) if raw is not None and len(raw) in (4, 16) else None


def _addresses_from_ip(netns: str, userns: str, deadline: float) -> list[IPAddress]:
    ip = shutil.which("ip")
    if ip is None:
        raise StartError(
            f"cannot read the addresses of netns {netns}: a caller outside its user "
            "namespace needs `ip` (iproute2) in $PATH to read them"
        )
    out = os.memfd_create("ip-addr", os.MFD_CLOEXEC)
    try:
        child = spawn(
            [ip, "-j", "addr", "show"],
            stdin=DEVNULL,
            stdout=out,
            stderr=out,
            userns=userns,
            netns=netns,
        )
        try:
            status = child.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            child.stop(0)
            raise ReadyTimeout(f"reading the addresses of netns {netns} took too long") from None
        text = os.pread(out, 1 << 20, 0).decode(errors="replace")
    except OSError as exc:
        raise StartError(f"cannot read the addresses of netns {netns}: {exc}") from exc
    finally:
        os.close(out)
    if status != 0:
        raise StartError(f"cannot read the addresses of netns {netns}: ip {text.strip()}")
    return [
        ip_address(entry["local"])
        for link in json.loads(text)
        for entry in link.get("addr_info", ())
        if "local" in entry
    ]
