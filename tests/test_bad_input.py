"""Every bad input is a typed error that names it, and leaves nothing (issue 11, part 8)."""

from __future__ import annotations

import math
import os
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import pyslirp
from pyslirp.options import parse_options

from support.options import options
from support.processes import children, open_fds, pids_of


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, 1e10, 0, -1, "soon", True, None])
def test_ready_timeout_must_be_finite_positive_and_bounded(config, bad):
    with pytest.raises(pyslirp.OptionError, match="invalid ready_timeout") as info:
        options(config, ready_timeout=bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("field", ["netns", "userns_path", "tmp_dir", "network_cmd_path"])
def test_a_nul_byte_is_an_option_error_naming_the_field(config, field):
    bad = "/run/netns/a\0b"
    with pytest.raises(pyslirp.OptionError, match=f"invalid {field} .*NUL byte"):
        if field in ("tmp_dir", "network_cmd_path"):
            options(pyslirp.Config(**{field: bad}))
        else:
            options(config, **{field: bad})


@pytest.mark.parametrize("container_id", ["", ".", "..", "../../etc", "a/b", "a\0b", 7])
def test_container_id_is_checked_for_every_entry_point(config, container_id):
    with pytest.raises(pyslirp.OptionError, match="invalid container id"):
        pyslirp.SetupOptions(config=config, container_id=container_id, netns="/run/netns/x")


def test_sctp_is_refused_up_front(config):
    mapping = pyslirp.PortMapping(host_port=8080, container_port=80, protocol="tcp,sctp")
    with pytest.raises(pyslirp.PortMappingError, match='cannot publish "sctp" ports'):
        options(config, ports=[mapping])


def test_bad_extra_options_are_refused_when_the_options_are_made(config):
    with pytest.raises(pyslirp.OptionError, match='unknown option for slirp4netns: "foo=bar"'):
        options(config, extra_options=["foo=bar"])


def test_deeply_nested_containers_conf_is_a_config_error_naming_it(tmp_path):
    conf = tmp_path / "containers.conf"
    conf.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(pyslirp.ConfigError, match=str(conf)):
        pyslirp.Config.load([str(conf)])


def test_containers_conf_that_is_not_utf8_is_a_config_error_naming_it(tmp_path):
    conf = tmp_path / "containers.conf"
    conf.write_bytes(b'[engine]\ntmp_dir = "\xff\xfe"\n')
    with pytest.raises(pyslirp.ConfigError, match=str(conf)):
        pyslirp.Config.load([str(conf)])


@pytest.mark.root
def test_outbound_addr_takes_interface_names_not_altnames():
    altname = "pyslirp-alt0"
    subprocess.run(["ip", "link", "property", "add", "dev", "lo", "altname", altname], check=True)
    try:
        assert parse_options([], ["outbound_addr=lo"]).outbound_addr == "lo"
        with pytest.raises(pyslirp.OptionError, match=f'invalid outbound_addr "{altname}"'):
            parse_options([], [f"outbound_addr={altname}"])
    finally:
        subprocess.run(["ip", "link", "property", "del", "dev", "lo", "altname", altname])


@pytest.mark.root
@pytest.mark.parametrize("handler", ["none", "rootlesskit", "slirp4netns"])
def test_running_out_of_fds_is_a_start_error_and_leaves_nothing(config, netns, handler):
    extra = {}
    if handler != "none":
        extra = {
            "ports": [pyslirp.PortMapping(host_port=18431, container_port=80)],
            "extra_options": [f"port_handler={handler}"],
        }
    opts = options(config, netns, **extra)
    pyslirp.setup(opts).close()  # warm: the probe and the reaper exist
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = open_fds()
    free = sorted(set(range(max(before) + 12)) - set(before))
    failures = 0
    for spare in range(10):  # every step that makes an fd runs out once
        resource.setrlimit(resource.RLIMIT_NOFILE, (free[spare], hard))  # `spare` fds left
        try:
            pyslirp.setup(opts).close()
        except pyslirp.StartError as exc:
            assert "out of file descriptors (EMFILE" in str(exc)
            failures += 1
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert open_fds() == before
        assert children() == {}
        assert pids_of("slirp4netns") == set()
    assert failures > 0
    assert not Path(config.tmp_dir).exists() or os.listdir(config.tmp_dir) == []


def crash_error(
    fake_slirp4netns: Callable[[str], pyslirp.Config], netns: str, frames: int
) -> pyslirp.StartError:
    """setup()'s error for a slirp4netns that prints ``frames`` lines of a crash dump,
    then its last words on stderr, and exits 1."""
    config = fake_slirp4netns(
        f'i=0; while [ $i -lt {frames} ]; do echo "frame $i: some long line of a crash dump"; '
        "i=$((i+1)); done; echo 'the last words' >&2; exit 1"
    )
    with pytest.raises(pyslirp.StartError) as info:
        pyslirp.setup(options(config, netns))
    return info.value


def test_a_helpers_long_crash_output_stays_out_of_the_message(fake_slirp4netns, netns):
    error = crash_error(fake_slirp4netns, netns, 400)
    message = str(error)
    assert message.count("\n") < 10
    assert message.endswith("the last words")
    assert "frame 0:" in error.log and "frame 399:" in error.log


def test_a_helpers_log_past_64_kib_keeps_its_last_64_kib(fake_slirp4netns, netns):
    error = crash_error(fake_slirp4netns, netns, 2000)
    assert len(error.log) == 64 * 1024
    assert "frame 0:" not in error.log
    assert error.log.endswith("frame 1999: some long line of a crash dump\nthe last words\n")


def test_rootlessport_s_start_error_keeps_its_exit_status_as_cause(fake_rootlessport, netns):
    config = fake_rootlessport("echo 'cannot expose privileged port 80'\nexit 3")
    mapping = pyslirp.PortMapping(host_port=8080, container_port=80)
    with pytest.raises(pyslirp.StartError, match=r"^rootlessport cannot expose") as info:
        pyslirp.setup(options(config, netns, ports=[mapping]))
    assert "exited with status 3" in str(info.value.__cause__)
