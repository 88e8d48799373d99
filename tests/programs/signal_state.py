"""The signal state pyslirp.spawn gives a child: prints its SigIgn and SigCgt (hex).

usage: signal_state.py [no-clone3]   (no-clone3: under a seccomp filter refusing clone3
with ENOSYS, as container runtimes' filters do, so spawn clones the older way)

It catches SIGUSR1 and ignores SIGUSR2, SIGTERM and SIGCHLD first.
"""

from __future__ import annotations

import ctypes
import errno
import signal
import struct
import sys
from pathlib import Path

import pyslirp

SYS_CLONE3 = 435  # the same number on every architecture that has clone3
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000


def refuse_clone3() -> None:
    """Install a seccomp filter making clone3 fail with ENOSYS; check that it does."""
    program = b"".join(
        struct.pack("HBBI", *insn)
        for insn in (
            (0x20, 0, 0, 0),  # load seccomp_data.nr
            (0x15, 0, 1, SYS_CLONE3),  # nr == clone3 ?
            (0x06, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS),
            (0x06, 0, 0, SECCOMP_RET_ALLOW),
        )
    )
    libc = ctypes.CDLL(None, use_errno=True)
    code = ctypes.create_string_buffer(program)
    fprog = struct.pack("HxxxxxxP", len(program) // 8, ctypes.addressof(code))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.c_char_p(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")
    if libc.syscall(SYS_CLONE3, None, 0) != -1 or ctypes.get_errno() != errno.ENOSYS:
        raise RuntimeError("the filter did not refuse clone3")


def main() -> None:
    if sys.argv[1:] == ["no-clone3"]:
        refuse_clone3()
    signal.signal(signal.SIGUSR1, lambda *_: None)
    for sig in (signal.SIGUSR2, signal.SIGTERM, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_IGN)
    child = pyslirp.spawn(["sleep", "100"])
    try:
        # Read once it sleeps: before its exec, /proc shows the state we gave it.
        while "sleep" not in Path(f"/proc/{child.pid}/comm").read_text():
            pass
        status = Path(f"/proc/{child.pid}/status").read_text()
        fields = dict(line.split(":\t", 1) for line in status.splitlines())
        print(fields["SigIgn"].strip(), fields["SigCgt"].strip())
    finally:
        child.kill()
        child.wait()


if __name__ == "__main__":
    main()
