"""The fault matrix: each way a helper, a path or the caller can fail, one test each.

Every test asserts the typed error (a :class:`pyslirp.SlirpError` subclass, or the
documented OSError) and then that nothing is left: no helper process, zombie, fd, socket
file or log file, and the namespace still mounted. Real slirp4netns and rootlessport in
real namespaces wherever they can produce the fault; shell-script fakes only where not.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pyslirp
from pyslirp.apisocket import request

from support.options import options
from support.ports import free_port
from support.processes import tmpfs, wait_asleep_in, wait_thread_gone

pytestmark = [pytest.mark.stress, pytest.mark.root]


def test_helper_reaped_before_the_ready_wait_is_start_error(leftovers):
    helper = pyslirp.Helper("fake")
    helper.spawn(["sh", "-c", "exit 4"], ready_fd=3)
    helper.child.wait()  # reaped, its pidfd closed: wait_ready must not need it
    with pytest.raises(pyslirp.StartError, match="fake exited with status 4"):
        helper.wait_ready(time.monotonic() + 10)
    helper.close()
    leftovers.assert_clean(None)


# --- the network namespace path ----------------------------------------------------------

# Said by setup itself where it opens the netns to hand it over by fd (root, in the template
# mount namespace), else by slirp4netns's own open or setns.
BAD_NETNS = "No such file or directory|exited with status 1"


def test_netns_path_missing_is_start_error(leftovers, tmp_dir, tmp_path):
    missing = str(tmp_path / "no-such-netns")
    with pytest.raises(pyslirp.StartError, match=BAD_NETNS):
        pyslirp.setup(options(pyslirp.Config(tmp_dir=tmp_dir), missing))
    leftovers.assert_clean(tmp_dir)


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_netns_path_not_a_netns_is_start_error(leftovers, tmp_dir, tmp_path, kind):
    path = tmp_path / "not-a-netns"
    if kind == "file":
        path.write_text("")
    else:
        path.mkdir()
    with pytest.raises(pyslirp.StartError, match=BAD_NETNS):
        pyslirp.setup(options(pyslirp.Config(tmp_dir=tmp_dir), str(path)))
    leftovers.assert_clean(tmp_dir)


def test_deleted_netns_is_start_error(leftovers, tmp_dir, netns_pool):
    (netns,) = netns_pool(1)
    subprocess.run(["ip", "netns", "delete", os.path.basename(netns)], check=True)
    with pytest.raises(pyslirp.StartError, match=BAD_NETNS):
        pyslirp.setup(options(pyslirp.Config(tmp_dir=tmp_dir), netns))
    leftovers.assert_clean(tmp_dir)


def test_helper_never_ready_is_ready_timeout(leftovers, tmp_dir, tmp_path):
    """Real slirp4netns on a FIFO as netns path: its open() blocks, so it never gets
    ready. Neither may setup (its own open of the path) nor slirp4netns's forked child
    (blocked in that open when its parent is stopped) outlive the deadline."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(pyslirp.ReadyTimeout, match="did not become ready in time"):
        pyslirp.setup(options(pyslirp.Config(tmp_dir=tmp_dir), str(fifo), ready_timeout=0.5))
    leftovers.assert_clean(tmp_dir)


# --- the binaries ------------------------------------------------------------------------


def test_binary_missing_is_binary_not_found(leftovers, tmp_dir, tmp_path, netns):
    config = pyslirp.Config(tmp_dir=tmp_dir, network_cmd_path=str(tmp_path / "slirp4netns"))
    with pytest.raises(pyslirp.BinaryNotFound):
        pyslirp.setup(options(config, netns))
    leftovers.assert_clean(tmp_dir, [netns])


def test_binary_not_executable_is_slirp_error(leftovers, tmp_dir, tmp_path, netns):
    copy = tmp_path / "slirp4netns"
    shutil.copyfile(shutil.which("slirp4netns") or "/usr/bin/slirp4netns", copy)
    copy.chmod(0o644)  # even root cannot exec a file without an x bit
    config = pyslirp.Config(tmp_dir=tmp_dir, network_cmd_path=str(copy))
    with pytest.raises(pyslirp.SlirpError, match="Permission denied"):
        pyslirp.setup(options(config, netns))
    leftovers.assert_clean(tmp_dir, [netns])


def test_help_fails_is_slirp_error(leftovers, tmp_dir, tmp_path, netns):
    fake = tmp_path / "slirp4netns"
    fake.write_text("#!/bin/sh\necho 'fake: no help today'\nexit 2\n")
    fake.chmod(0o755)
    config = pyslirp.Config(tmp_dir=tmp_dir, network_cmd_path=str(fake))
    with pytest.raises(pyslirp.SlirpError, match=r"no help today.*exit status 2"):
        pyslirp.setup(options(config, netns))
    leftovers.assert_clean(tmp_dir, [netns])


# --- the helper before it is ready ---------------------------------------------------------


def test_helper_exits_1_before_ready_is_start_error(leftovers, tmp_dir, netns):
    """Real slirp4netns, and a tun device already called tap0 in the namespace."""
    subprocess.run(["ip", "-n", os.path.basename(netns), "tuntap", "add", "tap0", "mode", "tun"])
    with pytest.raises(pyslirp.StartError, match="exited with status 1 before it was ready"):
        pyslirp.setup(options(pyslirp.Config(tmp_dir=tmp_dir), netns))
    leftovers.assert_clean(tmp_dir, [netns])


def test_helper_kills_itself_is_start_error(leftovers, fake_slirp4netns, tmp_dir, netns):
    config = fake_slirp4netns("kill -KILL $$")
    with pytest.raises(pyslirp.StartError, match="was killed by SIGKILL before it was ready"):
        pyslirp.setup(options(config, netns))
    leftovers.assert_clean(tmp_dir, [netns])


def test_helper_closes_ready_fd_without_writing_is_start_error(
    leftovers, fake_slirp4netns, tmp_dir, netns
):
    config = fake_slirp4netns("exec 3>&-; exec sleep 1000")
    with pytest.raises(pyslirp.StartError, match="closed its ready fd without writing"):
        pyslirp.setup(options(config, netns))
    leftovers.assert_clean(tmp_dir, [netns])


def test_rootlessport_never_ready_is_ready_timeout_and_stops_slirp4netns(
    leftovers, fake_rootlessport, tmp_dir, netns
):
    config = fake_rootlessport("exec sleep 1000")
    ports = [pyslirp.PortMapping(host_port=free_port(), container_port=80)]
    with pytest.raises(pyslirp.ReadyTimeout, match="rootlessport did not become ready"):
        pyslirp.setup(options(config, netns, ports=ports, ready_timeout=0.5))
    leftovers.assert_clean(tmp_dir, [netns])


# --- the helper after it is ready ----------------------------------------------------------


def test_helper_dies_after_ready_is_reported_by_the_handle(leftovers, tmp_dir, netns):
    """Real slirp4netns exits 0 at EOF on its exit pipe: the handle says so, close works."""
    exit_r, exit_w = os.pipe()
    try:
        result = pyslirp.setup(
            options(pyslirp.Config(tmp_dir=tmp_dir), netns, slirp4netns_exit_pipe_r=exit_r)
        )
    finally:
        os.close(exit_r)
    try:
        assert result.returncode is None
        os.close(exit_w)
        assert result.child.wait(timeout=10) == 0
        assert result.returncode == 0
        assert "exitfd event" in result.log()
    finally:
        result.close()
    leftovers.assert_clean(tmp_dir, [netns])


def test_helper_dies_after_ready_before_ports_is_port_forward_error(
    leftovers, fake_slirp4netns, tmp_dir, netns
):
    config = fake_slirp4netns("printf 1 >&3; exit 3")  # ready, then gone: no API socket
    ports = [pyslirp.PortMapping(host_port=free_port(), container_port=80)]
    opts = options(config, netns, ports=ports, extra_options=["port_handler=slirp4netns"])
    with pytest.raises(pyslirp.PortForwardError, match="cannot talk to slirp4netns API socket"):
        pyslirp.setup(opts)
    leftovers.assert_clean(tmp_dir, [netns])


@pytest.mark.parametrize("handler", ["rootlesskit", "slirp4netns"])
def test_slirp4netns_sigkilled_in_use_is_reported_and_close_still_works(
    leftovers, tmp_dir, netns, handler
):
    port = free_port()
    ports = [pyslirp.PortMapping(host_port=port, container_port=80)]
    extra = [f"port_handler={handler}"]
    opts = options(pyslirp.Config(tmp_dir=tmp_dir), netns, ports=ports, extra_options=extra)
    result = pyslirp.setup(opts)
    try:
        os.kill(result.pid, signal.SIGKILL)  # ours and not yet reaped: the pid is its own
        assert result.child.wait(timeout=10) == -signal.SIGKILL
        assert result.returncode == -signal.SIGKILL
        if handler == "slirp4netns":
            assert result.api_socket is not None
            with pytest.raises(pyslirp.PortForwardError, match="cannot talk to slirp4netns"):
                request(result.api_socket, "list_hostfwd", {}, time.monotonic() + 10)
        else:
            assert result.rootlessport is not None
            assert result.rootlessport.child.returncode is None  # still listening
    finally:
        result.close()
    leftovers.assert_clean(tmp_dir, [netns])
    with socket.socket() as again:
        again.bind(("0.0.0.0", port))  # nobody holds the host port any more


# --- tmp_dir -------------------------------------------------------------------------------


PORT_HANDLERS = {
    "rootlesskit": "cannot make a private directory for rootlessport",
    "slirp4netns": "cannot use api socket",
}


@pytest.mark.parametrize("handler", sorted(PORT_HANDLERS))
def test_tmp_dir_missing_is_created_when_ports_need_it(leftovers, short_tmp, netns, handler):
    tmp_dir = short_tmp / "not" / "there" / "yet"
    ports = [pyslirp.PortMapping(host_port=free_port(), container_port=80)]
    config = pyslirp.Config(tmp_dir=str(tmp_dir))
    opts = options(config, netns, ports=ports, extra_options=[f"port_handler={handler}"])
    with pyslirp.setup(opts) as result:
        assert result.returncode is None
        assert tmp_dir.stat().st_mode & 0o777 == 0o700
    leftovers.assert_clean(tmp_dir, [netns])


@pytest.mark.parametrize("handler", sorted(PORT_HANDLERS))
def test_tmp_dir_that_cannot_be_created_is_start_error(leftovers, short_tmp, netns, handler):
    blocker = short_tmp / "a-file"
    blocker.write_text("")
    tmp_dir = str(blocker / "run")
    ports = [pyslirp.PortMapping(host_port=free_port(), container_port=80)]
    config = pyslirp.Config(tmp_dir=tmp_dir)
    opts = options(config, netns, ports=ports, extra_options=[f"port_handler={handler}"])
    with pytest.raises(pyslirp.StartError, match=PORT_HANDLERS[handler]):
        pyslirp.setup(opts)
    leftovers.assert_clean(None, [netns])


@pytest.fixture
def read_only_dir(short_tmp: Path) -> Iterator[Path]:
    """An empty read-only tmpfs (root ignores mode bits, not a read-only mount)."""
    with tmpfs(short_tmp / "ro", "ro,size=1m") as path:
        yield path


@pytest.mark.parametrize("handler", sorted(PORT_HANDLERS))
@pytest.mark.parametrize("where", ["the_dir_itself", "a_missing_subdir"])
def test_tmp_dir_read_only_is_start_error(leftovers, read_only_dir, netns, where, handler):
    tmp_dir = read_only_dir if where == "the_dir_itself" else read_only_dir / "run"
    ports = [pyslirp.PortMapping(host_port=free_port(), container_port=80)]
    config = pyslirp.Config(tmp_dir=str(tmp_dir))
    opts = options(config, netns, ports=ports, extra_options=[f"port_handler={handler}"])
    with pytest.raises(pyslirp.StartError, match="Read-only file system"):
        pyslirp.setup(opts)
    leftovers.assert_clean(tmp_dir, [netns])


def test_tmp_dir_too_long_for_rootlessport_is_option_error(leftovers, tmp_path, netns):
    tmp_dir = "/tmp/" + "d" * 70
    ports = [pyslirp.PortMapping(host_port=free_port(), container_port=80)]
    opts = options(pyslirp.Config(tmp_dir=tmp_dir), netns, ports=ports)
    with pytest.raises(pyslirp.OptionError, match="too long for rootlessport"):
        pyslirp.setup(opts)
    leftovers.assert_clean(tmp_dir, [netns])
    assert not os.path.exists(tmp_dir)  # refused before anything was made


def test_api_socket_path_too_long_is_option_error(leftovers, tmp_path, netns):
    tmp_dir = tmp_path / ("d" * 100)
    ports = [pyslirp.PortMapping(host_port=free_port(), container_port=80)]
    opts = options(
        pyslirp.Config(tmp_dir=str(tmp_dir)),
        netns,
        ports=ports,
        extra_options=["port_handler=slirp4netns"],
    )
    with pytest.raises(pyslirp.OptionError, match="too long"):
        pyslirp.setup(opts)
    leftovers.assert_clean(tmp_dir, [netns])
    assert not tmp_dir.exists()  # refused before anything was made


# --- host ports ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "error", "message"),
    [
        ("rootlesskit", pyslirp.StartError, "rootlessport .*address already in use"),
        ("slirp4netns", pyslirp.PortForwardError, "slirp_add_hostfwd failed"),
    ],
)
def test_host_port_busy_is_typed_error(leftovers, tmp_dir, netns, handler, error, message):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        ports = [pyslirp.PortMapping(host_port=busy.getsockname()[1], container_port=80)]
        extra = [f"port_handler={handler}"]
        opts = options(pyslirp.Config(tmp_dir=tmp_dir), netns, ports=ports, extra_options=extra)
        with pytest.raises(error, match=message):
            pyslirp.setup(opts)
    leftovers.assert_clean(tmp_dir, [netns])


def test_caller_holding_over_1024_fds_publishes_and_closes(leftovers, tmp_dir, netns):
    """A daemon's fd numbers run past select()'s FD_SETSIZE; setup and close must not care."""
    filler = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(1100)]
    try:
        ports = [pyslirp.PortMapping(host_port=free_port(), container_port=80)]
        with pyslirp.setup(options(pyslirp.Config(tmp_dir=tmp_dir), netns, ports=ports)):
            pass
    finally:
        for fd in filler:
            os.close(fd)
    leftovers.assert_clean(tmp_dir, [netns])


# --- the caller's exit pipes ---------------------------------------------------------------


@pytest.mark.parametrize("helper", ["slirp4netns", "rootlessport"])
def test_exit_pipe_write_end_already_closed_is_start_error(leftovers, tmp_dir, netns, helper):
    exit_r, exit_w = os.pipe()
    os.close(exit_w)
    ports = [pyslirp.PortMapping(host_port=free_port(), container_port=80)]
    pipe = {f"{helper.replace('rootlessport', 'rootless_port')}_exit_pipe_r": exit_r}
    try:
        with pytest.raises(pyslirp.StartError, match=f"cannot start {helper}: the write end"):
            pyslirp.setup(options(pyslirp.Config(tmp_dir=tmp_dir), netns, ports=ports, **pipe))
    finally:
        os.close(exit_r)
    leftovers.assert_clean(tmp_dir, [netns])


def test_exit_pipe_fd_not_open_is_start_error(leftovers, tmp_dir, netns):
    closed = os.open("/dev/null", os.O_RDONLY)
    os.close(closed)
    opts = options(pyslirp.Config(tmp_dir=tmp_dir), netns, slirp4netns_exit_pipe_r=closed)
    with pytest.raises(pyslirp.StartError, match=f"exit pipe fd {closed} is not open"):
        pyslirp.setup(opts)
    leftovers.assert_clean(tmp_dir, [netns])


# --- threads and signals -------------------------------------------------------------------


def test_setup_from_a_thread_that_exits_keeps_helpers_with_pdeathsig(leftovers, tmp_dir, netns):
    """PR_SET_PDEATHSIG fires when the spawning *thread* exits; the helpers must not."""
    port = free_port()
    opts = options(
        pyslirp.Config(tmp_dir=tmp_dir),
        netns,
        ports=[pyslirp.PortMapping(host_port=port, container_port=80)],
        extra_options=["port_handler=slirp4netns"],
        pdeathsig=signal.SIGKILL,
    )
    box: dict[str, object] = {}

    def run() -> None:
        box["tid"] = threading.get_native_id()
        box["result"] = pyslirp.setup(opts)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    result = box["result"]
    assert isinstance(result, pyslirp.SetupResult)
    try:
        assert wait_thread_gone(box["tid"]), "the setup thread never exited"
        # It answers after its caller's thread is gone: no death signal came.
        assert result.api_socket is not None
        more = {"proto": "tcp", "host_addr": "0.0.0.0", "host_port": free_port()}
        more |= {"guest_addr": "", "guest_port": 81}
        reply = request(result.api_socket, "add_hostfwd", more, time.monotonic() + 10)
        assert isinstance(reply["id"], int)
        assert result.returncode is None
    finally:
        result.close()
    leftovers.assert_clean(tmp_dir, [netns])


@contextlib.contextmanager
def sigint_once_started(fifo: Path) -> Iterator[None]:
    """Raise SIGINT in the main thread once a helper has said so through ``fifo`` and
    the main thread sleeps in poll() (setup waiting for readiness)."""
    os.mkfifo(fifo)
    main = threading.main_thread()
    main_tid = threading.get_native_id()
    assert threading.current_thread() is main
    cancel_r, cancel_w = os.pipe()

    def interrupt() -> None:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # no writer needed to open
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            poller.register(cancel_r, select.POLLIN)
            ready = dict(poller.poll(60_000))
            started = ready.get(fd) and os.read(fd, 100) == b"started\n"
            if started and wait_asleep_in(f"/proc/self/task/{main_tid}", "poll", timeout=30):
                assert main.ident is not None
                signal.pthread_kill(main.ident, signal.SIGINT)
        finally:
            os.close(fd)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=interrupt)
    thread.start()
    try:
        yield
    finally:
        os.write(cancel_w, b"x")
        thread.join()
        os.close(cancel_r)
        os.close(cancel_w)
        signal.signal(signal.SIGINT, previous)


def test_sigint_while_slirp4netns_starts_is_keyboard_interrupt(
    leftovers, fake_slirp4netns, tmp_dir, tmp_path, netns
):
    fifo = tmp_path / "started"
    config = fake_slirp4netns(f"echo started > {fifo}; exec sleep 1000")
    with sigint_once_started(fifo), pytest.raises(KeyboardInterrupt):
        pyslirp.setup(options(config, netns, ready_timeout=30))
    leftovers.assert_clean(tmp_dir, [netns])


def test_sigint_while_rootlessport_starts_is_keyboard_interrupt(
    leftovers, fake_rootlessport, tmp_dir, tmp_path, netns
):
    """Real slirp4netns is up, the fake rootlessport blocks: both must go."""
    fifo = tmp_path / "started"
    config = fake_rootlessport(f"echo started > {fifo}; exec sleep 1000")
    ports = [pyslirp.PortMapping(host_port=free_port(), container_port=80)]
    with sigint_once_started(fifo), pytest.raises(KeyboardInterrupt):
        pyslirp.setup(options(config, netns, ports=ports, ready_timeout=30))
    leftovers.assert_clean(tmp_dir, [netns])
