"""SetupPlan and the plans setup() keeps (issue 14): worked out once, used per network,
and made again when the binary or its search path changes."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import weakref
from pathlib import Path

import pytest

import pyslirp
from pyslirp import mounttemplate, process, slirp4netns

from support.fakes import script
from support.netns import addresses, default_route, echo_server, tcp_echo
from support.options import options
from support.ports import free_port
from support.processes import pids_of

SLIRP4NETNS = "/usr/bin/slirp4netns"


def wrapper(directory: Path, marker: Path, drop: str = "") -> Path:
    """``directory/slirp4netns``: the real one, but its ``--help`` without ``drop`` (a
    flag it then refuses), and each run leaves its pid in ``marker``."""
    return script(
        directory / "slirp4netns",
        f"""if [ "$1" = --help ]; then {SLIRP4NETNS} --help | sed 's/{drop or "^$"}//'; exit 0; fi
for arg; do [ -n "{drop}" ] && [ "$arg" = "{drop}" ] && {{ echo "unknown {drop}"; exit 1; }}; done
echo $$ >> {marker}
exec {SLIRP4NETNS} "$@\"""",
    )


@pytest.mark.root
def test_one_plan_sets_up_many_networks(hygiene, config, make_netns):
    plan = pyslirp.SetupPlan(options(config, make_netns()))
    results = [plan.setup(make_netns()) for _ in range(3)]
    try:
        assert len({result.pid for result in results}) == 3
        for result in results:
            netns = slirp4netns_netns(result.pid)
            assert [a["local"] for a in addresses(netns)] == ["10.0.2.100"]
            assert default_route(netns) == "10.0.2.2"
    finally:
        pyslirp.close_all(results)


def slirp4netns_netns(pid: int) -> str:
    """The netns path in slirp4netns's argv (the one before the tap name), as we can open
    it: as root slirp4netns gets its netns as /proc/self/fd/5, its own fd."""
    netns = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[-3].decode()
    return netns.replace("/proc/self/", f"/proc/{pid}/", 1)


@pytest.mark.root
def test_a_plan_made_with_an_exit_pipe_takes_one_per_setup(hygiene, config, make_netns):
    r, w = os.pipe()
    try:
        plan = pyslirp.SetupPlan(options(config, make_netns(), slirp4netns_exit_pipe_r=r))
        with pytest.raises(pyslirp.OptionError, match="slirp4netns_exit_pipe_r"):
            plan.setup(make_netns())
        with plan.setup(make_netns(), slirp4netns_exit_pipe_r=r) as result:
            assert os.readlink(f"/proc/{result.pid}/fd/4") == os.readlink(f"/proc/self/fd/{r}")
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.root
def test_a_plan_checks_each_network_before_spawning(hygiene, config, make_netns):
    plan = pyslirp.SetupPlan(options(config, make_netns()))
    for bad_netns in ("bad\0path", "", 5, Path("/run/netns")):
        with pytest.raises(pyslirp.OptionError, match=re.escape(f"invalid netns {bad_netns!r}")):
            plan.setup(bad_netns)  # type: ignore[arg-type]
    with pytest.raises(pyslirp.OptionError, match="container id"):
        plan.setup(make_netns(), container_id="a/b")
    r, w = os.pipe()
    try:
        with_pipe = pyslirp.SetupPlan(options(config, make_netns(), slirp4netns_exit_pipe_r=r))
        for bad_fd in (-1, "4", True, object()):
            with pytest.raises(pyslirp.OptionError, match="invalid slirp4netns_exit_pipe_r"):
                with_pipe.setup(make_netns(), slirp4netns_exit_pipe_r=bad_fd)  # type: ignore
    finally:
        os.close(r)
        os.close(w)
    assert not pids_of(SLIRP4NETNS)


@pytest.mark.root
@pytest.mark.parametrize("handler", ["rootlesskit", "slirp4netns"])
def test_a_plan_with_ports_publishes_each_setups_own(hygiene, config, make_netns, handler):
    plan = pyslirp.SetupPlan(options(config, make_netns(), handler=handler))
    netns, port = make_netns(), free_port()
    mapping = pyslirp.PortMapping(host_port=port, container_port=8080)
    with plan.setup(netns, container_id="other", ports=[mapping]), echo_server(netns, "tcp", 8080):
        assert tcp_echo(port).endswith(" 8080")
    with pytest.raises(pyslirp.OptionError, match="with ports"):
        plan.setup(make_netns(), ports=[])
    bare = pyslirp.SetupPlan(options(config, make_netns()))
    with pytest.raises(pyslirp.OptionError, match="without ports"):
        bare.setup(make_netns(), ports=[mapping])


@pytest.mark.root
def test_setup_keeps_one_plan_for_networks_alike(hygiene, config, make_netns):
    first = pyslirp.setup(options(config, make_netns(), container_id="a", handler="slirp4netns"))
    second = pyslirp.setup(options(config, make_netns(), container_id="b", handler="slirp4netns"))
    pyslirp.close_all([first, second])
    assert len(slirp4netns._plans) == 1  # other ports and ids: the same plan
    pyslirp.setup(options(config, make_netns(), extra_options=["mtu=1500"])).close()
    assert len(slirp4netns._plans) == 2


@pytest.mark.root
def test_setup_tells_kept_plans_apart_by_their_options_not_their_hash(hygiene, config, make_netns):
    first = options(config, make_netns())
    pyslirp.setup(first).close()
    equal = options(dataclasses.replace(config), make_netns())  # another object, equal
    pyslirp.setup(equal).close()
    assert len(slirp4netns._plans) == 1
    other = options(config, make_netns(), extra_options=["mtu=1400"])
    object.__setattr__(other, "plan_hash", first.plan_hash)  # as if the hashes collided
    with pyslirp.setup(other) as result, open(f"/proc/{result.pid}/cmdline", "rb") as cmdline:
        assert b"--mtu=1400" in cmdline.read().split(b"\0")


@pytest.mark.root
def test_setup_probes_a_replaced_binary_again(hygiene, short_tmp, make_netns):
    """The plan kept for the old binary passes --enable-seccomp; the new one refuses it:
    setup() notices the change and builds the argv again."""
    marker = short_tmp / "ran"
    binary = short_tmp / "bin" / "slirp4netns"
    shutil.copy(SLIRP4NETNS, binary.parent.mkdir() or binary)
    config = pyslirp.Config(tmp_dir=str(short_tmp / "run"), network_cmd_path=str(binary))
    with pyslirp.setup(options(config, make_netns())) as result:
        assert "--enable-seccomp" in Path(f"/proc/{result.pid}/cmdline").read_text()
    replacement = wrapper(short_tmp / "new", marker, drop="--enable-seccomp")
    os.replace(replacement, binary)
    with pyslirp.setup(options(config, make_netns())) as result:
        assert "--enable-seccomp" not in Path(f"/proc/{result.pid}/cmdline").read_text()
    assert marker.read_text().split() == [str(result.pid)]  # the stale argv never ran


@pytest.mark.root
def test_setup_with_a_kept_plan_whose_binary_was_removed_says_so(hygiene, short_tmp, make_netns):
    """The spawn call finds the binary gone before it clones: the plan is made again,
    and finding nothing is BinaryNotFound, as for a first setup."""
    binary = short_tmp / "bin" / "slirp4netns"
    shutil.copy(SLIRP4NETNS, binary.parent.mkdir() or binary)
    config = pyslirp.Config(tmp_dir=str(short_tmp / "run"), network_cmd_path=str(binary))
    pyslirp.setup(options(config, make_netns())).close()
    binary.unlink()
    with pytest.raises(pyslirp.BinaryNotFound):
        pyslirp.setup(options(config, make_netns()))
    assert not pids_of(str(binary))


@pytest.mark.root
def test_setup_looks_in_a_changed_path_again(hygiene, short_tmp, make_netns, monkeypatch):
    marker = short_tmp / "ran"
    config = pyslirp.Config(tmp_dir=str(short_tmp / "run"), helper_binaries_dir=())
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with pyslirp.setup(options(config, make_netns())) as result:
        assert os.readlink(f"/proc/{result.pid}/exe") == SLIRP4NETNS
    directory = wrapper(short_tmp / "first", marker).parent
    monkeypatch.setenv("PATH", f"{directory}:/usr/bin:/bin")
    with pyslirp.setup(options(config, make_netns())) as result:
        pass
    assert marker.read_text().split() == [str(result.pid)]


@pytest.mark.root
@pytest.mark.parametrize("what", ["binary", "template"])
def test_a_change_seen_twice_in_one_setup_is_a_start_error(
    hygiene, config, make_netns, monkeypatch, what
):
    """Made again once; changed again meanwhile (a binary replaced twice, mounts made
    twice), the setup is a StartError like any other, and leaves nothing. (The spawn call
    checks: here it is given an identity the binary never had, or a template older than
    every mount.)"""
    if what == "binary":

        def moved(path: str) -> object:
            made = process.file_id(path)
            made.mtime_ns += 1
            return made

        monkeypatch.setattr(slirp4netns, "file_id", moved)
        start = lambda: pyslirp.setup(options(config, make_netns()))  # noqa: E731
    else:
        plan = pyslirp.SetupPlan(options(config, make_netns()))
        if not plan._in_template:
            pytest.skip("no template mount namespace here (Linux < 6.8)")
        current = mounttemplate.template_for([])
        assert current is not None
        old = mounttemplate.MountTemplate()
        old.c_template.fd = os.dup(current.fd)
        old.c_template.first_mount_id = 1  # before every mount
        monkeypatch.setattr(mounttemplate.MountPaths, "template", lambda self: old)
        monkeypatch.setattr(mounttemplate.MountPaths, "latest", lambda self: old)
        start = lambda: plan.setup(make_netns())  # noqa: E731
    with pytest.raises(pyslirp.StartError, match="changed while it started: try again"):
        start()
    assert not pids_of(SLIRP4NETNS)


@pytest.mark.root
def test_a_plan_of_yours_keeps_its_binary(hygiene, short_tmp, make_netns, monkeypatch):
    marker = short_tmp / "ran"
    config = pyslirp.Config(tmp_dir=str(short_tmp / "run"), helper_binaries_dir=())
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    plan = pyslirp.SetupPlan(options(config, make_netns()))
    assert plan.binary == SLIRP4NETNS
    monkeypatch.setenv("PATH", f"{wrapper(short_tmp / 'w', marker).parent}:/usr/bin:/bin")
    assert not plan.current()
    with plan.setup(make_netns()) as result:
        assert os.readlink(f"/proc/{result.pid}/exe") == SLIRP4NETNS
    assert not marker.exists()


def test_spawn_keeps_no_file_object_open(tmp_path):
    """spawn() keeps plans for repeated calls, but never one holding a file object."""
    with open(tmp_path / "out", "wb") as out:
        pyslirp.spawn(["/bin/true"], stdout=out).wait()
        gone = weakref.ref(out)
    del out
    assert gone() is None


def test_spawn_looks_a_bare_name_up_each_time(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert pyslirp.spawn(["true"]).wait() == 0
    script(tmp_path / "true", "exit 7")
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert pyslirp.spawn(["true"]).wait() == 7
