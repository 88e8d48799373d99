"""What ``pyslirp run`` builds around CMD: its namespaces, id maps, /proc, /sys and
resolv.conf, with a small init (``csrc/init.c``) as PID 1.

CMD runs in new network, PID and mount namespaces (and a user namespace when rootless),
so it sees neither slirp4netns nor rootlessport and cannot reach them. Its /etc/resolv.conf
names slirp4netns's DNS, its /sys shows its own interfaces, and nothing it started
outlives it. The host's files are never written: the generated ones are bind-mounted in
CMD's mount namespace only.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import TYPE_CHECKING, Any

from ._spawn import ffi, lib
from .addresses import DEFAULT_SUBNET, get_dns, get_gateway
from .config import Config
from .errors import OptionError, SlirpError, StartError
from .gostrconv import go_quote
from .lookpath import is_executable, look_path
from .options import NetworkOptions, SetupOptions, check_ready_timeout, parse_options
from .ports import PortMapping
from .process import Child
from .slirp4netns import SetupResult, setup

if TYPE_CHECKING:
    from . import pasta  # imported where used: with logging, ~6 ms of every other run

__all__ = ["CommandError", "RunOptions", "hosts_file", "resolv_conf", "run"]

# What a terminal, a supervisor or `timeout` sends: relayed to the init, which forwards it.
RELAYED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
IPV6_DNS = "fd00::3"  # slirp4netns's DNS on its IPv6 network
HOST_ALIAS = "host.containers.internal"
NETWORKS = ("slirp4netns", "pasta")
RESOLV_CONF = "/etc/resolv.conf"
HOSTS = "/etc/hosts"
_KEPT_RESOLV_KEYS = (["search"], ["domain"], ["options"])  # a line's first word
_FD_LIMIT = os.sysconf("SC_OPEN_MAX")
_RECORD = 8  # struct record: int step, int err

_STEPS = {
    lib.PYSLIRP_INIT_STEP_SIGNALS: "reset signals",
    lib.PYSLIRP_INIT_STEP_FDS: "close fds",
    lib.PYSLIRP_INIT_STEP_ACCEPT_DAD: "turn IPv6 DAD off",
    lib.PYSLIRP_INIT_STEP_MOUNT_SLAVE: "make / a slave mount",
    lib.PYSLIRP_INIT_STEP_MOUNT_SCRATCH: "mount a scratch tmpfs",
    lib.PYSLIRP_INIT_STEP_RESOLV_CONF: f"bind-mount {RESOLV_CONF}",
    lib.PYSLIRP_INIT_STEP_HOSTS: f"bind-mount {HOSTS}",
    lib.PYSLIRP_INIT_STEP_MOUNT_PROC: "mount /proc",
    lib.PYSLIRP_INIT_STEP_MOUNT_SYS: "mount /sys",
    lib.PYSLIRP_INIT_STEP_IPV6: "wait for a usable IPv6 address",
    lib.PYSLIRP_INIT_STEP_FORK: "fork",
    lib.PYSLIRP_INIT_STEP_CAPS: "drop CAP_SYS_ADMIN",
    lib.PYSLIRP_INIT_STEP_CLONE: "clone",
    lib.PYSLIRP_INIT_STEP_PIPE: "error pipe",
}


class CommandError(SlirpError):
    """CMD cannot be run; ``status`` is podman's: 127 not found, 126 not executable."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """What :func:`run` needs; validated when made, before anything starts."""

    command: Sequence[str]
    config: Config = field(default_factory=Config)
    ports: Sequence[PortMapping] = ()
    network: str = "slirp4netns"  # or "pasta"
    extra_options: Sequence[str] = ()  # the backend's: slirp4netns options or pasta args
    rootless: bool = False
    dns: Sequence[str] = ()
    ready_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.command:
            raise OptionError("no command given: pyslirp run [OPTIONS] -- CMD [ARG...]")
        if self.network not in NETWORKS:
            raise OptionError(
                f"unknown network {go_quote(str(self.network))}: use slirp4netns or pasta"
            )
        if any("\0" in arg for arg in self.command):
            raise OptionError(f"command contains a NUL byte: {list(self.command)!r}")
        check_ready_timeout(self.ready_timeout)
        for server in self.dns:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise OptionError(f"invalid dns server {go_quote(server)}") from None


def resolv_conf(host: str, nameservers: Sequence[str]) -> str:
    """CMD's resolv.conf: ``nameservers``, then the host file's search and options lines."""
    kept = [line for line in host.splitlines() if line.split()[:1] in _KEPT_RESOLV_KEYS]
    return "".join(f"nameserver {ns}\n" for ns in nameservers) + "".join(f"{k}\n" for k in kept)


def hosts_file(host: str, gateway: str) -> str:
    """CMD's /etc/hosts: the host's, with ``host.containers.internal`` at the gateway."""
    if host and not host.endswith("\n"):
        host += "\n"
    return f"{host}{gateway}\t{HOST_ALIAS}\n"


def run(opts: RunOptions) -> int:
    """Run ``opts.command`` in its sandbox with slirp4netns networking; its exit status.

    CMD is looked up first (:class:`CommandError`), then everything else is checked
    before anything starts. Signals sent to this process (INT, TERM, HUP, QUIT, USR1,
    USR2, WINCH) reach CMD once. Whatever CMD started is gone when this returns;
    slirp4netns has been sent SIGKILL, its teardown left to the kernel. Call it from the
    main thread: it installs signal handlers, and the init dies with the calling thread.
    """
    deadline = time.monotonic() + opts.ready_timeout
    path = _find_command(opts.command[0])
    if opts.network == "pasta":
        # pasta with slirp4netns's addresses (pyslirp.pasta's "slirp4netns" preset): the
        # same subnet, gateway and DNS, IPv4 only, and no host address shown to CMD.
        options = NetworkOptions(enable_ipv6=False)
    else:
        options = parse_options(opts.config.network_cmd_options, opts.extra_options)
    args = _InitArgs(path, opts, options, deadline)
    init, gate_w, stop_r = _start_init(args, opts.rootless)
    err_r = init.fd("ready_fd")
    network: SetupResult | pasta.SetupResult | None = None
    try:
        os.write(gate_w, b"m")  # the id maps are written
        _check_record(err_r, path, expect_prepared=True)
        netns = f"/proc/{init.pid}/ns/net"
        userns = f"/proc/{init.pid}/ns/user" if opts.rootless else None
        remaining = max(deadline - time.monotonic(), 1e-3)
        if opts.network == "pasta":
            from . import pasta

            network = pasta.setup(_pasta_options(opts, netns, userns, remaining))
        else:
            network = setup(
                SetupOptions(
                    config=opts.config,
                    container_id=f"pyslirp-{init.pid}",
                    netns=netns,
                    userns_path=userns,
                    ports=opts.ports,
                    extra_options=opts.extra_options,
                    pdeathsig=signal.SIGKILL,
                    ready_timeout=remaining,
                )
            )
        with _supervising(init, stop_r) as wait:
            os.write(gate_w, b"g")  # the network is up
            _check_record(err_r, path, expect_prepared=False)
            returncode: int = wait()
    except BaseException:
        init.kill()
        init.wait()
        raise
    finally:
        os.close(gate_w)
        os.close(stop_r)
        init.close_fd("ready_fd")
        if network is not None:
            _stop(network)
    return returncode if returncode >= 0 else 128 - returncode


def _pasta_options(
    opts: RunOptions, netns: str, userns: str | None, ready_timeout: float
) -> pasta.SetupOptions:
    from . import pasta

    return pasta.SetupOptions(
        config=opts.config,
        netns=netns,
        userns_path=userns,
        ports=opts.ports,
        extra_options=opts.extra_options,
        addressing="slirp4netns",
        pdeathsig=signal.SIGKILL,
        ready_timeout=ready_timeout,
    )


def _stop(network: SetupResult | pasta.SetupResult) -> None:
    """Stop the helpers without waiting on the kernel where nothing is left to clean:
    rootlessport stops gracefully (it removes its state directory); slirp4netns, unless
    it has an API socket to remove, and pasta get SIGKILL and are let go, their tap
    devices left to the kernel to tear down (~15 ms that ``run``'s exit need not wait
    for)."""
    if not isinstance(network, SetupResult):  # pasta's
        network.pasta.child.send_signal(signal.SIGKILL, group=True)
        network.detach()
        return
    try:
        if network.rootlessport is not None:
            network.rootlessport.close()
    finally:
        if network.api_socket is None:
            network.child.send_signal(signal.SIGKILL, group=True)
            network.detach()
        else:
            network.close()


def _find_command(name: str) -> str:
    """CMD's executable by pyslirp's one PATH rule (a name with a slash is that file);
    podman's statuses when it fails."""
    if os.sep not in name:
        path = look_path(name)
        if path is None:
            raise CommandError(f"exec: {go_quote(name)}: executable file not found in $PATH", 127)
        return path
    if not os.path.exists(name):
        raise CommandError(f"exec: {go_quote(name)}: no such file or directory", 127)
    if not is_executable(name):
        raise CommandError(f"exec: {go_quote(name)}: permission denied", 126)
    return os.path.abspath(name)


class _InitArgs:
    """The C arguments of the init child, kept alive (cffi frees with the owner)."""

    def __init__(
        self, path: str, opts: RunOptions, options: NetworkOptions, deadline: float
    ) -> None:
        subnet: IPv4Network = options.cidr or DEFAULT_SUBNET
        nameservers = list(opts.dns) or [
            str(get_dns(subnet)),
            *([IPV6_DNS] if options.enable_ipv6 else []),
        ]
        resolv = _generated(RESOLV_CONF, lambda host: resolv_conf(host, nameservers))
        hosts = (
            _generated(HOSTS, lambda host: hosts_file(host, str(get_gateway(subnet))))
            if options.allow_host_loopback
            else None
        )
        self._keep: list[Any] = []
        self.c = ffi.new(
            "struct pyslirp_init_args *",
            {
                "path": self._bytes(os.fsencode(path)),
                "argv": self._strings([os.fsencode(a) for a in opts.command]),
                "envp": ffi.NULL,
                "host_mounts_locked": opts.rootless,
                "resolv_conf": self._bytes(resolv),
                "resolv_conf_len": len(resolv or b""),
                "hosts": self._bytes(hosts),
                "hosts_len": len(hosts or b""),
                # time.monotonic is CLOCK_MONOTONIC, the clock the init child reads.
                "ipv6_deadline_ms": round(deadline * 1000) if options.enable_ipv6 else 0,
                "fd_limit": _FD_LIMIT,
            },
        )

    def _bytes(self, data: bytes | None) -> Any:
        if data is None:
            return ffi.NULL
        self._keep.append(ffi.new("char[]", data))
        return self._keep[-1]

    def _strings(self, items: list[bytes]) -> Any:
        self._keep.append(ffi.new("char *[]", [*map(self._bytes, items), ffi.NULL]))
        return self._keep[-1]


def _generated(path: str, make: Callable[[str], str]) -> bytes | None:
    """``make(host file's text)`` for a host file CMD will see; None if there is none
    (a dangling symlink cannot be mounted over, and CMD sees what the host has)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as file:
            host = file.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StartError(f"cannot read {path}: {exc.strerror}") from exc
    return make(host).encode("utf-8", "surrogateescape")


def _start_init(args: _InitArgs, rootless: bool) -> tuple[Child, int, int]:
    """Clone the init child; return its handle (its ``ready_fd``: the error pipe), the
    gate (write end) and the pipe on which it says CMD stopped."""
    init = Child(["pyslirp-init"])
    gate_r, gate_w = os.pipe()
    stop_r, stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    args.c.gate_fd = gate_r
    args.c.stop_fd = stop_w
    flags = lib.CLONE_NEWNET | lib.CLONE_NEWPID | lib.CLONE_NEWNS
    args.c.clone_flags = flags | (lib.CLONE_NEWUSER if rootless else 0)
    try:
        # The slot the C call fills, as pyslirp_spawn_each fills a spawned child's.
        status = lib.pyslirp_init_start(args.c, init._slot)
    finally:
        os.close(gate_r)
        os.close(stop_w)
    if status != 0:
        os.close(gate_w)
        os.close(stop_r)
        raise _init_error(init._slot.step, init._slot.err)
    try:
        if rootless:
            _map_to_root(init.pid)
    except BaseException:
        os.close(gate_w)
        os.close(stop_r)
        init.kill()
        init.wait()
        raise
    return init, gate_w, stop_r


def _map_to_root(pid: int) -> None:
    """Map the caller's uid and gid to root in the new user namespace of ``pid``."""
    try:
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"0 {os.geteuid()} 1"),
            ("gid_map", f"0 {os.getegid()} 1"),
        ):
            with open(f"/proc/{pid}/{name}", "w") as file:
                file.write(text)
    except OSError as exc:
        raise StartError(f"cannot write the id maps of the user namespace: {exc}") from exc


def _check_record(err_r: int, path: str, *, expect_prepared: bool) -> None:
    """Read the init child's next report: "prepared", or EOF once CMD runs."""
    data = b""
    while len(data) < _RECORD:
        chunk = os.read(err_r, _RECORD - len(data))
        if not chunk:
            break
        data += chunk
    if not data and not expect_prepared:
        return  # CMD was exec'd
    if len(data) < _RECORD:
        raise StartError("the sandbox's init died before CMD started")
    step, err = int.from_bytes(data[:4], "little", signed=True), int.from_bytes(data[4:], "little")
    if step == lib.PYSLIRP_INIT_PREPARED and expect_prepared:
        return
    if step == lib.PYSLIRP_INIT_STEP_EXEC:
        status = 127 if err in (errno.ENOENT, errno.ENOTDIR) else 126
        raise CommandError(f"exec: {go_quote(path)}: {os.strerror(err).lower()}", status)
    raise _init_error(step, err)


def _init_error(step: int, err: int) -> StartError:
    what = _STEPS.get(step, f"step {step}")
    return StartError(f"cannot set up the sandbox: {what}: {os.strerror(err)}")


class _Terminal:
    """The controlling terminal, lent to CMD's process group (the init's) while ours is in
    front of it: Ctrl-C and Ctrl-Z then reach CMD straight, and CMD may read it."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.lent = False
        try:
            self.fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError:
            self.fd = -1  # no controlling terminal

    def lend(self) -> None:
        try:
            if self.fd >= 0 and os.tcgetpgrp(self.fd) == os.getpgrp():
                os.tcsetpgrp(self.fd, self.pgid)
                self.lent = True
        except OSError:
            pass

    def take_back(self) -> None:
        if not self.lent:
            return
        self.lent = False
        # From the background now: SIGTTOU would stop us unless blocked.
        saved = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
        try:
            os.tcsetpgrp(self.fd, os.getpgrp())
        except OSError:
            pass
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, saved)

    def close(self) -> None:
        self.take_back()
        if self.fd >= 0:
            os.close(self.fd)


@contextmanager
def _supervising(init: Child, stop_r: int) -> Iterator[Callable[[], int]]:
    """Lend the terminal to CMD and relay :data:`RELAYED` signals to ``init`` while the
    block runs; yields a function that waits for ``init`` to exit and returns its status.

    When CMD is stopped (Ctrl-Z), this process stops too, so that a shell sees its job
    stopped; continued, it lends the terminal again and continues CMD.
    """

    def relay(signum: int, frame: object = None) -> None:
        # The pidfd stays open until init.wait() returns, in this same thread.
        if init.pidfd >= 0:
            lib.pyslirp_init_relay(init.pidfd, signum)

    def stopped() -> None:
        terminal.take_back()
        os.kill(os.getpid(), signal.SIGTSTP)  # returns once a shell continues us
        terminal.lend()
        relay(signal.SIGCONT)

    def wait() -> int:
        # A signal taken by another thread only wakes this one through the wakeup fd.
        poller = select.poll()
        for fd in (init.pidfd, wake_r, stop_r):
            poller.register(fd, select.POLLIN)
        while not any(fd == init.pidfd for fd, _ in poller.poll()):
            while _drain(wake_r):
                pass
            while _drain(stop_r):
                stopped()
        return init.wait()

    terminal = _Terminal(init.pid)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    saved = {sig: signal.signal(sig, relay) for sig in RELAYED}
    old_wakeup = signal.set_wakeup_fd(wake_w)
    try:
        terminal.lend()
        yield wait
    finally:
        terminal.close()
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        os.close(wake_r)
        os.close(wake_w)


def _drain(fd: int) -> bool:
    try:
        return bool(os.read(fd, 512))
    except BlockingIOError:
        return False
