"""What the rootless test programs share. Importing it makes the process nobody for good,
after importing (as root: the interpreter may live under a root-only home) everything
pyslirp may load later. ``namespaces_with_server()`` gives a user and network namespace
of nobody's own (held by ``unshare -Urn``) with a TCP server on port 80 that answers
with the data and the peer's address.
"""

import contextlib
import ctypes
import encodings.idna  # noqa: F401 - socket loads it lazily
import os
import socket
import subprocess
import tomllib  # noqa: F401 - config loads it lazily
from collections.abc import Iterator

import pyslirp

for _name in pyslirp.__all__:  # pyslirp loads its modules on first use: all of them now
    getattr(pyslirp, _name)

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
libc = ctypes.CDLL(None, use_errno=True)

os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)


def serve(userns: str, netns: str, ready_w: int) -> None:
    for path, kind in ((userns, CLONE_NEWUSER), (netns, CLONE_NEWNET)):
        fd = os.open(path, os.O_RDONLY)
        assert libc.setns(fd, kind) == 0
        os.close(fd)
    listener = socket.socket()
    listener.bind(("0.0.0.0", 80))  # a privileged port: we are root in the userns
    listener.listen(1)
    os.write(ready_w, b"1")
    conn, peer = listener.accept()
    conn.sendall(conn.recv(100) + f" {peer[0]}".encode())
    conn.close()


@contextlib.contextmanager
def namespaces_with_server() -> Iterator[tuple[str, str, list[int]]]:
    # Yields (userns path, netns path, [holder pid, server pid]).
    holder = subprocess.Popen(
        ["unshare", "-Urn", "sh", "-c", "echo ready; exec sleep 1000"], stdout=subprocess.PIPE
    )
    server = None
    try:
        assert holder.stdout.readline() == b"ready\n"
        userns, netns = f"/proc/{holder.pid}/ns/user", f"/proc/{holder.pid}/ns/net"
        ready_r, ready_w = os.pipe()
        server = os.fork()  # still single-threaded: the child may join the user namespace
        if server == 0:
            try:
                serve(userns, netns, ready_w)
            finally:
                os._exit(0)
        os.read(ready_r, 1)
        yield userns, netns, [holder.pid, server]
    finally:
        if server:
            os.kill(server, 9)
            os.waitpid(server, 0)
        holder.kill()
        holder.wait()
