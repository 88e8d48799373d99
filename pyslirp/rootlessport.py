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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .addresses import NetStatus, SubnetLike, get_rootless_port_child_ip
from .errors import OptionError, StartError
from .gostrconv import go_quote
from .helper import Helper, start_error
from .options import SetupOptions, fd_of
from .ports import PortMapping
from .process import SpawnPlan
from .steps import Steps, drive

__all__ = ["rootlessport_config", "setup_rootless_port_mapping_via_rlk"]

BINARY_NAME = "rootlessport"
EXIT_FD = 3  # rootlessport exits at EOF here
READY_FD = 4  # rootlessport writes "1" here once it listens
UNPRIVILEGED_PORT_START = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
# What rootlessport puts under its state dir: TempDir("rootlessport") and a socket in it.
SOCKET_SUFFIX = "/rootlessport1234567890/.bp.sock"
SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path), the terminating NUL included


def check_tmp_dir(tmp_dir: str) -> None:
    """Refuse a ``tmp_dir`` so long that rootlessport's socket under its private state
    directory would not fit in a unix socket address (it would hang, never ready)."""
    longest = os.path.join(tmp_dir, "pyslirp-4194304-999") + SOCKET_SUFFIX
    if len(os.fsencode(longest)) >= SUN_PATH_MAX:
        limit = SUN_PATH_MAX - len(longest) + len(tmp_dir) - 1
        raise OptionError(
            f"tmp_dir {go_quote(tmp_dir)} is too long for rootlessport: its socket in there "
            f"would not fit in a unix socket address (use at most {limit} bytes)"
        )


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


def setup_rootless_port_mapping_via_rlk(
    opts: SetupOptions,
    slirp_subnet: SubnetLike,
    net_status: NetStatus | None = None,
) -> Helper:
    """Start rootlessport for ``opts.ports`` and wait until it is ready.

    With ``opts.rootless_port_exit_pipe_r`` the caller owns its lifetime (closing the
    write end stops it); otherwise the returned handle owns an exit pipe, and rootlessport
    stops with it or with this process. :meth:`Helper.close` stops it.
    """
    return drive(rootless_port_mapping_steps(opts, slirp_subnet, net_status))


def rootless_port_mapping_steps(
    opts: SetupOptions, slirp_subnet: SubnetLike, net_status: NetStatus | None
) -> Steps[Helper]:
    """:func:`setup_rootless_port_mapping_via_rlk` as steps (see :mod:`pyslirp.steps`)."""
    deadline = time.monotonic() + opts.ready_timeout
    check_tmp_dir(opts.config.tmp_dir)
    plan = rootlessport_plan(opts.config.find_helper_binary(BINARY_NAME), opts)
    helper = Helper(BINARY_NAME)
    try:
        payload = prepare_rootlessport(helper, opts, slirp_subnet, net_status)
        yield from start_rootlessport(helper, plan, opts, payload, deadline)
    except BaseException:
        helper.close(timeout=0)
        raise
    return helper


def rootlessport_plan(binary: str, opts: SetupOptions) -> SpawnPlan:
    """How the rootlessport ``binary`` is spawned for ``opts``: its config on stdin (given
    per spawn), the caller's exit pipe (given per spawn) or this process's owner pipe."""
    caller_exit = opts.rootless_port_exit_pipe_r is not None
    try:
        return SpawnPlan(
            [BINARY_NAME],
            executable=binary,
            fds={EXIT_FD: None} if caller_exit else None,
            check_exit_fd=EXIT_FD if caller_exit else None,
            exit_fd=None if caller_exit else EXIT_FD,
            ready_fd=READY_FD,
            input=b"",
            capture_stdout=True,  # where it says why it failed
            log=True,  # stderr: its debug log
            pdeathsig=opts.pdeathsig,
            userns=opts.userns_path,
        )
    except OSError as exc:
        raise start_error(f"cannot start {binary}", exc) from exc


def prepare_rootlessport(
    helper: Helper, opts: SetupOptions, slirp_subnet: SubnetLike, net_status: NetStatus | None
) -> bytes:
    """What rootlessport needs before it starts, made for ``helper`` (which the caller
    already owns; nothing here waits for slirp4netns): its state directory, a private
    directory of the helper's removed when it stops, and its config (the JSON returned)."""
    state_dir = helper.make_private_dir(opts.config.tmp_dir)
    return json.dumps(
        rootlessport_config(
            ports=opts.ports,
            netns=opts.netns,
            tmp_dir=state_dir,
            container_id=opts.container_id,
            slirp_subnet=slirp_subnet,
            net_status=net_status,
        )
    ).encode()


def start_rootlessport(
    helper: Helper, plan: SpawnPlan, opts: SetupOptions, payload: bytes, deadline: float
) -> Steps[None]:
    """Start rootlessport (as ``plan`` says: see :func:`rootlessport_plan`) into
    ``helper`` with ``payload`` (see :func:`prepare_rootlessport`) on its stdin, and wait
    until ``deadline`` for it to be ready."""
    caller_exit = opts.rootless_port_exit_pipe_r
    helper.start(
        plan,
        input=payload,
        fds={EXIT_FD: fd_of(caller_exit)} if caller_exit is not None else None,
    )
    try:
        yield from helper.ready_steps(deadline)
    except StartError as exc:
        raise _with_stdout(exc, helper.output(), opts.ports) from exc
    # rootlessport-child is not our child: hold pidfds to wait for it when it stops.
    helper.track_children()


def _with_stdout(exc: StartError, said: str, ports: Sequence[PortMapping]) -> StartError:
    """Go's wording: ``rootlessport <its stdout>`` when it said why, else ``exc``."""
    said = said.strip()
    if not said:
        return exc
    message = f"{BINARY_NAME} {said}"
    if "permission denied" in said:
        message += _privileged_port_hint(ports)
    error = type(exc)(message)
    error.log = exc.log
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
