"""slirp4netns starts in one small template mount namespace per process (issue 16): the
host's netns mounts survive, and what is mounted or made after the template still works."""

from __future__ import annotations

import dataclasses
import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pyslirp
from pyslirp import mounttemplate
from pyslirp.process import SpawnPlan

from support.netns import echo_server, link, tcp_echo
from support.ports import free_port
from support.processes import mounted
from support.processes import tmpfs as mounted_tmpfs

pytestmark = pytest.mark.root


def template() -> mounttemplate.MountTemplate:
    made = mounttemplate.template_for([])
    if made is None:
        pytest.skip("the kernel has no unique mount ids (Linux 6.8): no template")
    return made


def mounts_in(mount_ns: int) -> list[list[str]]:
    """The mountinfo lines (split) that a process in the namespace ``mount_ns`` sees."""
    child = pyslirp.spawn(["cat", "/proc/self/mountinfo"], mount_ns=mount_ns, capture_stdout=True)
    assert child.wait() == 0
    out = os.pread(child.fd("out_fd"), 1 << 20, 0).decode()
    child.close_fd("out_fd")
    return [line.split() for line in out.splitlines()]


def fstypes(mounts: list[list[str]]) -> list[str]:
    return [fields[fields.index("-") + 1] for fields in mounts]


@pytest.fixture
def tmpfs(short_tmp: Path) -> Iterator[Path]:
    """A tmpfs mounted now (after the test's template, if it makes one first)."""
    with mounted_tmpfs(short_tmp / "fs") as path:
        yield path


def test_the_template_has_no_netns_mounts_and_gets_none_made_later(hygiene, make_netns):
    make_netns()
    held = template()
    before = mounts_in(held.fd)
    assert "nsfs" not in fstypes(before)
    assert not any(fields[4].startswith("/run/netns") for fields in before)
    make_netns()  # on the host, after the template: it must not grow
    assert mounts_in(held.fd) == before
    assert mounttemplate.template_for([]) is held  # made once


def test_slirp4netns_runs_in_the_template_and_host_netns_mounts_survive(
    hygiene, config, make_netns
):
    others = [make_netns() for _ in range(3)]
    template()
    netns = make_netns()  # made after the template: not there, handed over by fd
    for _ in range(3):
        with pyslirp.setup(
            pyslirp.SetupOptions(config=config, container_id="t", netns=netns)
        ) as net:
            argv = Path(f"/proc/{net.pid}/cmdline").read_text().split("\0")
            assert argv[-3:-1] == ["/proc/self/fd/5", "tap0"]
            sandbox = Path(f"/proc/{net.pid}/mountinfo").read_text()
            assert "nsfs" not in sandbox
            assert link(netns)["ifname"] == "tap0"
    assert [path for path in [*others, netns] if not mounted(path)] == []


def test_unmounts_in_the_template_do_not_reach_the_host(hygiene, tmpfs):
    held = mounttemplate.template_for([str(tmpfs)])  # made anew: tmpfs is newer
    assert held is not None
    assert str(tmpfs) in [fields[4] for fields in mounts_in(held.fd)]
    umount = pyslirp.spawn(["umount", "-l", str(tmpfs)], mount_ns=held.fd)
    assert umount.wait() == 0
    assert mounted(str(tmpfs))


def test_a_missing_path_counts_as_its_nearest_existing_parent(tmp_path):
    """Where it would be made: on tmp_path's mount, which the template has."""
    held = template()
    assert mounttemplate.MountPaths([str(tmp_path / "missing" / "deeper")]).in_template(held)


def test_a_spawn_refuses_a_template_older_than_a_mount_of_its_paths(hygiene, short_tmp):
    """The spawn call checks before its clone; nothing runs in a template that lacks a
    mount the child needs."""
    held = template()
    with mounted_tmpfs(short_tmp / "fs") as path:
        plan = SpawnPlan(["true"], template_paths=mounttemplate.MountPaths([str(path)]))
        with pytest.raises(OSError) as info:
            plan.spawn(mount_ns=held)
        assert (info.value.errno, getattr(info.value, "step", None)) == (
            errno.ESTALE,
            "check the template's mounts",
        )
        newer = mounttemplate.template_for([str(path)])
        assert newer is not None and newer is not held
        assert plan.spawn(mount_ns=newer).wait() == 0


def test_run_works_where_no_netns_was_ever_added():
    """/run/netns exists only once `ip netns add` has made it (a fresh machine has none):
    each setup found its template stale for the missing path, and `pyslirp run` failed."""
    hide_run = 'mount -t tmpfs tmpfs /run && exec "$@"'
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide_run, "sh",
         sys.executable, "-m", "pyslirp", "run", "--", "true"],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("handler", ["slirp4netns", "rootlesskit"])
def test_tmp_dir_on_a_filesystem_mounted_after_the_template(hygiene, make_netns, tmpfs, handler):
    """slirp4netns binds its API socket there from inside the template."""
    template()  # made before the filesystem was mounted
    netns = make_netns()
    port = free_port()
    opts = pyslirp.SetupOptions(
        config=pyslirp.Config(tmp_dir=str(tmpfs / "run")),
        container_id="late-mount",
        netns=netns,
        ports=[pyslirp.PortMapping(host_port=port, container_port=8080)],
        extra_options=[f"port_handler={handler}"],
    )
    with pyslirp.setup(opts) as net, echo_server(netns, "tcp", 8080):
        if handler == "slirp4netns":
            assert net.api_socket is not None and os.path.exists(net.api_socket)
        assert tcp_echo(port).endswith(" 8080")
    assert list((tmpfs / "run").iterdir()) == []


@pytest.mark.parametrize("how", ["plan.setup", "setup"])
def test_a_plan_made_before_a_mount_on_its_tmp_dir_starts_in_a_new_template(
    hygiene, make_netns, short_tmp, how
):
    """The spawn call checks the template before its clone: one that lacks a mount of
    the plan's paths is replaced, and slirp4netns started in the new one."""
    tmp_dir, port = short_tmp / "fs" / "run", free_port()
    opts = pyslirp.SetupOptions(
        config=pyslirp.Config(tmp_dir=str(tmp_dir)),
        container_id="late-mount",
        netns=make_netns(),
        ports=[pyslirp.PortMapping(host_port=port, container_port=8080)],
        extra_options=["port_handler=slirp4netns"],
    )
    plan = pyslirp.SetupPlan(opts)
    if how == "setup":
        pyslirp.setup(opts).close()  # kept: its plan is made before the mount
    before = template()
    with mounted_tmpfs(short_tmp / "fs"):
        netns = make_netns()
        if how == "plan.setup":
            started = plan.setup(netns)
        else:
            started = pyslirp.setup(dataclasses.replace(opts, netns=netns))
        with started as net, echo_server(netns, "tcp", 8080):
            assert net.api_socket is not None and os.path.exists(net.api_socket)
            assert tcp_echo(port).endswith(" 8080")
        assert mounttemplate.template_for([]) is not before
        assert list(tmp_dir.iterdir()) == []


def test_a_forked_child_makes_its_own_template(hygiene, config, netns):
    held = template()
    pid = os.fork()
    if pid == 0:
        try:
            ours = mounttemplate.template_for([])
            with pyslirp.setup(pyslirp.SetupOptions(config=config, container_id="t", netns=netns)):
                pass
            os._exit(0 if ours is not None and ours is not held else 1)
        finally:
            os._exit(2)
    assert os.waitpid(pid, 0)[1] == 0
    assert os.readlink(f"/proc/self/fd/{held.fd}").startswith("mnt:[")


def test_mount_ns_that_is_not_one_is_an_error_naming_the_step(hygiene, tmp_path):
    with open(tmp_path / "file", "wb") as not_a_namespace, pytest.raises(OSError) as info:
        pyslirp.spawn(["true"], mount_ns=not_a_namespace)
    assert info.value.step == "setns(mnt)"


def test_mount_ns_and_private_mounts_exclude_each_other():
    with pytest.raises(ValueError, match="mount_ns and private_mounts"):
        pyslirp.spawn(["true"], mount_ns=0, private_mounts=True)


def test_without_a_template_slirp4netns_gets_a_private_copy_and_host_netns_mounts_survive(
    hygiene, config, make_netns, monkeypatch
):
    """Before Linux 6.8 a mount's age cannot be told, so there is no template: each
    slirp4netns gets a copy of our mounts, every one made private, and its netns by path."""
    monkeypatch.setattr(mounttemplate, "_current", None)
    monkeypatch.setattr(mounttemplate, "_unsupported", True)
    others = [make_netns() for _ in range(3)]
    netns = make_netns()
    with pyslirp.setup(pyslirp.SetupOptions(config=config, container_id="t", netns=netns)) as net:
        argv = Path(f"/proc/{net.pid}/cmdline").read_text().split("\0")
        assert argv[-3:-1] == [netns, "tap0"]
        own = Path(f"/proc/{net.pid}/mountinfo").read_text().splitlines()
        tags = {line.split()[4]: line.split(" - ")[0].split()[6:] for line in own}
        assert tags and {path: tag for path, tag in tags.items() if tag} == {}  # no shared:N
        assert link(netns)["ifname"] == "tap0"
    assert mounttemplate._current is None  # none was made
    assert [path for path in [*others, netns] if not mounted(path)] == []
