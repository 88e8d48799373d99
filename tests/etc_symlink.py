"""``etc_symlink.py WORKDIR ARGV...``: run ARGV (as a child) in a mount namespace of its
own where /etc/resolv.conf is a symlink to a systemd-resolved style stub file, as on
Ubuntu; then say whether the stub file changed.

Needs root. Everything is made on a tmpfs mounted on WORKDIR (an empty directory) in that
namespace only, so nothing is left and the host's /etc is only read, through symlinks.
"""

import ctypes
import os
import subprocess
import sys

CLONE_NEWNS = 0x00020000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
STUB = b"nameserver 127.0.0.53\nsearch example.test\noptions edns0 trust-ad\n"

libc = ctypes.CDLL(None, use_errno=True)


def check(result: int) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


check(libc.unshare(CLONE_NEWNS))
check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None))
work = sys.argv[1]
check(libc.mount(b"tmpfs", work.encode(), b"tmpfs", 0, None))
host_etc = os.path.join(work, "etc")
os.mkdir(host_etc)
check(libc.mount(b"/etc", host_etc.encode(), None, MS_BIND | MS_REC, None))
check(libc.mount(b"tmpfs", b"/etc", b"tmpfs", 0, None))
for name in os.listdir(host_etc):
    if name != "resolv.conf":
        os.symlink(os.path.join(host_etc, name), os.path.join("/etc", name))
stub = os.path.join(work, "stub-resolv.conf")
with open(stub, "wb") as file:
    file.write(STUB)
os.symlink(stub, "/etc/resolv.conf")
status = subprocess.run(sys.argv[2:]).returncode
with open(stub, "rb") as file:
    print("stub unchanged" if file.read() == STUB else "stub CHANGED", flush=True)
sys.exit(status)
