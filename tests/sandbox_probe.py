"""A CMD that tries to reach the helpers from inside the sandbox; prints what it could.

``sandbox_probe.py PORT`` prints ``ready``, reads the helpers' host pids from stdin (one
line), tries to
uncover the host's /proc (unmounting ours, also from a nested user namespace), then
reports as JSON the command names it sees in /proc, which helper /proc/PID/mem files it
could open, and whether 10.0.2.2:PORT (a service on the host's loopback) answered.
"""

import ctypes
import json
import os
import socket
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MNT_DETACH = 2

libc = ctypes.CDLL(None, use_errno=True)


def comms() -> list[str]:
    names = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as file:
                    names.append(file.read().strip())
            except OSError:
                pass
    return sorted(names)


def opened(pids: list[int]) -> list[int]:
    found = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/mem", "rb"):
                found.append(pid)
        except OSError:
            pass
    return found


def host_loopback(port: int) -> bool:
    try:
        with socket.create_connection(("10.0.2.2", port), timeout=2):
            return True
    except OSError:
        return False


print("ready", flush=True)
helpers = [int(pid) for pid in sys.stdin.readline().split()]
report = {
    "comms": comms(),
    "umount": libc.umount2(b"/proc", MNT_DETACH) == 0,
    "host_loopback": host_loopback(int(sys.argv[1])),
}
report["comms_after_umount"] = comms()
report["mem_opened"] = opened(helpers)
if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0:
    report["nested_umount"] = libc.umount2(b"/proc", MNT_DETACH) == 0
    report["comms_nested"] = comms()
    report["mem_opened_nested"] = opened(helpers)
print(json.dumps(report), flush=True)
