"""podman's ``rootlessport`` helper: publish host ports into a network namespace.

rootlessport listens on the host and re-execs itself as ``rootlessport-child`` inside
the namespace, which connects to the container from its own address, so servers see
clients as coming from the slirp4netns IP rather than 127.0.0.1. Protocol: the JSON
config on stdin, the exit pipe at fd 3 (it exits on EOF), ``"1"`` on the ready fd 4,
human-readable errors on stdout, a debug log on stderr.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .addresses import NetStatus, SubnetLike, get_rootless_port_child_ip
from .errors import StartError
from .exitpipe import check_exit_pipe
from .ports import PortMapping
from .ready import wait_ready
from .signals import signals_deferred
from .spawn import Child, FdLike, spawn
from .tmpfiles import anonymous_file, read_tail

if TYPE_CHECKING:  # slirp4netns imports this module
    from .slirp4netns import SetupOptions

__all__ = ["RootlessPort", "rootlessport_config", "setup_rootless_port_mapping_via_rlk"]

BINARY_NAME = "rootlessport"
EXIT_FD = 3
READY_FD = 4
UNPRIVILEGED_PORT_START = "/proc/sys/net/ipv4/ip_unprivileged_port_start"


def rootlessport_config(
    *,
    ports: Sequence[PortMapping],
    netns: str,
    tmp_dir: str,
    container_id: str,
    slirp_subnet: SubnetLike,
    net_status: NetStatus | None,
) -> dict[str, Any]:
    """The JSON object rootlessport reads on stdin, with podman's field names."""
    return {
        "Mappings": [mapping.to_json() for mapping in ports],
        "NetNSPath": netns,
        "ExitFD": EXIT_FD,
        "ReadyFD": READY_FD,
        "TmpDir": tmp_dir,
        "ChildIP": get_rootless_port_child_ip(slirp_subnet, net_status),
        "ContainerID": container_id,
        "RootlessCNI": net_status is not None,
    }


class RootlessPort:
    """A running rootlessport (and its ``rootlessport-child``); :meth:`close` stops both."""

    def __init__(self, child: Child, exit_w: int | None, log_fd: int) -> None:
        self.child = child
        self._exit_w = exit_w
        self._log_fd = log_fd
        self._descendants: list[int] = []
        self._closed = False

    @property
    def pid(self) -> int:
        """The pid of rootlessport."""
        return self.child.pid

    def log(self) -> str:
        """rootlessport's debug log (stderr), the last 64 KiB."""
        return read_tail(self._log_fd) if not self._closed else ""

    def _track_descendants(self) -> None:
        # rootlessport-child is not our child: hold pidfds to wait for it at close().
        for pid in _children_of(self.child.pid):
            try:
                self._descendants.append(os.pidfd_open(pid))
            except ProcessLookupError:
                pass

    def close(self, timeout: float = 5.0) -> None:
        """Stop rootlessport: EOF on its exit pipe when we own it, else SIGTERM; SIGKILL
        after ``timeout``. Returns once it and ``rootlessport-child`` are gone."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        try:
            if self._exit_w is None:
                self.child.stop(timeout)
            else:
                os.close(self._exit_w)  # at EOF it exits, removing its state dir itself
                try:
                    self.child.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.child.stop(0)
            for pidfd in self._descendants:
                if not _wait_pidfd(pidfd, deadline - time.monotonic()):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    _wait_pidfd(pidfd, None)
                _reap_if_adopted(pidfd)
        finally:
            for pidfd in self._descendants:
                os.close(pidfd)
            os.close(self._log_fd)

    def __enter__(self) -> RootlessPort:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def setup_rootless_port_mapping_via_rlk(
    opts: SetupOptions,
    slirp_subnet: SubnetLike,
    net_status: NetStatus | None = None,
) -> RootlessPort:
    """Start rootlessport for ``opts.ports`` and wait until it is ready.

    With ``opts.rootless_port_exit_pipe_r`` the caller owns its lifetime (closing the
    write end stops it); otherwise the returned handle owns an exit pipe.
    """
    return start_rootlessport(opts, slirp_subnet, net_status, time.monotonic() + opts.ready_timeout)


def start_rootlessport(
    opts: SetupOptions,
    slirp_subnet: SubnetLike,
    net_status: NetStatus | None,
    deadline: float,
) -> RootlessPort:
    """:func:`setup_rootless_port_mapping_via_rlk` with an absolute deadline."""
    config = opts.config
    binary = config.find_helper_binary(BINARY_NAME, False)
    if opts.rootless_port_exit_pipe_r is not None:
        check_exit_pipe(BINARY_NAME, opts.rootless_port_exit_pipe_r)
    payload = json.dumps(
        rootlessport_config(
            ports=opts.ports,
            netns=opts.netns,
            tmp_dir=config.tmp_dir,
            container_id=opts.container_id,
            slirp_subnet=slirp_subnet,
            net_status=net_status,
        )
    ).encode()
    stdin = os.memfd_create("rootlessport-config", os.MFD_CLOEXEC)
    stdout = os.memfd_create("rootlessport-stdout", os.MFD_CLOEXEC)
    log_fd = -1
    exit_r = exit_w = ready_r = -1
    try:
        os.write(stdin, payload)
        os.lseek(stdin, 0, os.SEEK_SET)
        log_fd = anonymous_file(config.tmp_dir)
        exit_fd: FdLike
        if opts.rootless_port_exit_pipe_r is None:
            exit_r, exit_w = os.pipe()
            exit_fd = exit_r
        else:
            exit_fd = opts.rootless_port_exit_pipe_r  # the caller's: it owns the lifetime
        ready_r, ready_w = os.pipe()
        # Ctrl-C waits until the handle owns rootlessport: then close() stops it.
        with signals_deferred():
            try:
                child = spawn(
                    [BINARY_NAME],
                    executable=binary,
                    fds={EXIT_FD: exit_fd, READY_FD: ready_w},
                    stdin=stdin,
                    stdout=stdout,
                    stderr=log_fd,
                    pdeathsig=opts.pdeathsig,
                    userns=opts.userns_path,
                )
            except OSError as exc:
                raise StartError(f"cannot start {binary}: {exc}") from exc
            finally:
                os.close(ready_w)
            handle = RootlessPort(child, exit_w if exit_w >= 0 else None, log_fd)
            exit_w = log_fd = -1  # the handle owns them now
        try:
            wait_ready(BINARY_NAME, child, ready_r, deadline, handle.log)
        except StartError as exc:
            handle.close(timeout=0)  # it failed: no graceful exit to wait for
            raise _with_stdout(exc, stdout, opts.ports) from None
        except BaseException:
            handle.close(timeout=0)
            raise
        handle._track_descendants()
        return handle
    finally:
        for fd in (stdin, stdout, log_fd, exit_r, exit_w, ready_r):
            if fd >= 0:
                os.close(fd)


def _with_stdout(exc: StartError, stdout: int, ports: Sequence[PortMapping]) -> StartError:
    """Go's wording: ``rootlessport <its stdout>`` when it said why, else the log."""
    said = os.pread(stdout, 64 * 1024, 0).decode(errors="replace").strip()
    if not said:
        return exc
    message = f"{BINARY_NAME} {said}"
    if "permission denied" in said:
        message += _privileged_port_hint(ports)
    error = StartError(message)
    error.__cause__ = exc
    return error


def _privileged_port_hint(ports: Sequence[PortMapping]) -> str:
    try:
        start = int(Path(UNPRIVILEGED_PORT_START).read_text())
    except (OSError, ValueError):
        return ""
    low = sorted({m.host_port for m in ports if m.host_port < start})
    if not low:
        return ""
    return (
        f" (host ports below net.ipv4.ip_unprivileged_port_start={start} need privileges:"
        f" {', '.join(map(str, low))}; lower that sysctl or publish ports >= {start})"
    )


def _children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid``: each thread's ``children`` list where the kernel
    has them (CONFIG_PROC_CHILDREN), else a scan of all of /proc, 20 times slower."""
    try:
        return [
            int(child)
            for task in os.listdir(f"/proc/{pid}/task")
            for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        ]
    except FileNotFoundError:
        pass
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2 :].split()[1]) == pid:
                found.append(int(entry))
    return found


def _reap_if_adopted(pidfd: int) -> None:
    """Reap an exited ``rootlessport-child`` if it was re-parented to us when rootlessport
    exited first (we are PID 1 of a container, or a child subreaper); else it would stay
    a zombie of ours. Otherwise init reaps it."""
    try:
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
    except ChildProcessError:
        pass


def _wait_pidfd(pidfd: int, timeout: float | None) -> bool:
    """Wait until the process behind ``pidfd`` exits; False if ``timeout`` passes first."""
    poller = select.poll()  # not select(): a daemon's fds run past FD_SETSIZE (1024)
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(timeout, 0) * 1000))
