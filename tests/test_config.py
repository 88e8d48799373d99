"""containers.conf loading (Debian's real file, drop-ins, CONTAINERS_CONF) and helper lookup."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pyslirp import config as config_module
from pyslirp.config import (
    DEFAULT_HELPER_BINARIES_DIR,
    SYSTEM_CONFIG,
    Config,
    _not_private,
    config_files,
    default_tmp_dir,
    user_config_path,
)
from pyslirp.errors import BinaryNotFound, ConfigError

from support.processes import make_executable

HINT = (
    "To resolve this error, set the helper_binaries_dir key in the `[engine]` section of "
    "containers.conf to the directory containing your helper binaries."
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONTAINERS_CONF", "CONTAINERS_HELPER_BINARY_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever runs the test, pyslirp sees root (it reads only the effective uid)."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever runs the test, pyslirp sees the ordinary user 1000."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)


def _write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


@pytest.mark.usefixtures("as_root")
def test_defaults_are_podmans_for_root() -> None:
    config = Config()
    assert config.network_cmd_path is None
    assert config.network_cmd_options == ()
    assert config.no_pivot_root is False
    assert config.tmp_dir == "/run/libpod"
    assert config.helper_binaries_dir == (
        "/usr/local/libexec/podman",
        "/usr/local/lib/podman",
        "/usr/libexec/podman",
        "/usr/lib/podman",
    )


@pytest.mark.root  # chowns
def test_rootless_tmp_dir_is_under_xdg_runtime_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    os.chown(runtime, 1000, 1000)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert default_tmp_dir() == f"{runtime}/libpod/tmp"


def test_a_missing_runtime_dir_candidate_is_made_private(tmp_path: Path) -> None:
    assert _not_private(str(tmp_path / "new"), os.geteuid()) is None
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700


@pytest.mark.root  # chowns
@pytest.mark.parametrize(
    ("name", "make", "why"),
    [
        ("d", lambda p: (p.mkdir(mode=0o700), os.chown(p, 1001, 1001)), "owned by uid 1001"),
        ("d", lambda p: (p.mkdir(), p.chmod(0o777)), "mode 0777, not 0700"),
        ("d", lambda p: (p.mkdir(), p.chmod(0o750)), "mode 0750, not 0700"),
        ("d", lambda p: p.symlink_to("/"), "not a directory"),
        ("d", lambda p: p.write_text(""), "not a directory"),
        ("no/d", lambda p: None, "cannot create it: No such file or directory"),
    ],
)
def test_a_runtime_dir_candidate_not_privately_ours_is_skipped(
    tmp_path: Path, name: str, make: Callable[[Path], object], why: str
) -> None:
    path = tmp_path / name
    make(path)
    assert _not_private(str(path), os.geteuid()) == why


@pytest.mark.usefixtures("as_root")
def test_roots_tmp_dir_ignores_xdg_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/somewhere/runtime")
    assert default_tmp_dir() == "/run/libpod"


def test_the_user_config_is_under_xdg_config_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "/somewhere/config")
    monkeypatch.setenv("HOME", "/home/someone")
    assert user_config_path() == "/somewhere/config/containers/containers.conf"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert user_config_path() == "/home/someone/.config/containers/containers.conf"


def test_podmans_chain_starts_with_the_system_file_then_the_override() -> None:
    assert config_module.SYSTEM_CONFIG == "/usr/share/containers/containers.conf"
    assert config_module.OVERRIDE_CONFIG == "/etc/containers/containers.conf"


@pytest.fixture
def chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A system file, an override with a drop-in and a user file, each setting tmp_dir:
    the files in podman's order."""
    system = _write(tmp_path / "usr" / "containers.conf", '[engine]\ntmp_dir = "/system"\n')
    override = _write(tmp_path / "etc" / "containers.conf", '[engine]\ntmp_dir = "/etc"\n')
    drop_in = _write(tmp_path / "etc" / "containers.conf.d" / "a.conf", "[engine]\n")
    user = _write(
        tmp_path / "home" / "containers" / "containers.conf", '[engine]\ntmp_dir = "/user"\n'
    )
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG", system)
    monkeypatch.setattr(config_module, "OVERRIDE_CONFIG", override)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home"))
    return [system, override, drop_in, user]


@pytest.mark.usefixtures("as_user")
def test_rootless_the_user_file_comes_last(chain: list[str]) -> None:
    config = Config.load()
    assert list(config.loaded_files) == chain
    assert config.tmp_dir == "/user"


@pytest.mark.usefixtures("as_root")
def test_root_reads_no_user_file(chain: list[str]) -> None:
    config = Config.load()
    assert list(config.loaded_files) == chain[:3]
    assert config.tmp_dir == "/etc"


def test_config_is_frozen_and_keyword_only() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().tmp_dir = "/x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Config("/usr/bin/slirp4netns")  # type: ignore[misc]


def test_debians_real_containers_conf_parses_to_defaults() -> None:
    config = Config.load([SYSTEM_CONFIG])
    assert config == Config()
    assert config.loaded_files == (SYSTEM_CONFIG,)


def test_the_system_chain_reads_the_real_file() -> None:
    config = Config.load()
    assert SYSTEM_CONFIG in config.loaded_files
    assert config.loaded_files[0] == SYSTEM_CONFIG


def test_every_key_is_read_from_the_engine_table(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "containers.conf",
        """
[network]
network_cmd_path = "/ignored/in/the/wrong/table"

[engine]
network_cmd_path = "/opt/bin/slirp4netns"
network_cmd_options = ["mtu=1500", "enable_ipv6=false"]
no_pivot_root = true
tmp_dir = "/tmp/libpod"
helper_binaries_dir = ["/opt/helpers"]
cgroup_manager = "cgroupfs"
""",
    )
    config = Config.load([path])
    assert config == Config(
        network_cmd_path="/opt/bin/slirp4netns",
        network_cmd_options=("mtu=1500", "enable_ipv6=false"),
        no_pivot_root=True,
        tmp_dir="/tmp/libpod",
        helper_binaries_dir=("/opt/helpers",),
    )


def test_empty_network_cmd_path_means_unset(tmp_path: Path) -> None:
    path = _write(tmp_path / "containers.conf", '[engine]\nnetwork_cmd_path = ""\n')
    assert Config.load([path]).network_cmd_path is None


@pytest.mark.usefixtures("as_root")
def test_drop_ins_override_in_name_order(tmp_path: Path) -> None:
    base = _write(tmp_path / "containers.conf", '[engine]\nnetwork_cmd_options = ["mtu=1500"]\n')
    drop_ins = tmp_path / "containers.conf.d"
    second = _write(drop_ins / "20-b.conf", '[engine]\nnetwork_cmd_options = ["mtu=9000"]\n')
    first = _write(
        drop_ins / "10-a.conf",
        '[engine]\nnetwork_cmd_options = ["mtu=4000"]\nno_pivot_root = true\n',
    )
    _write(drop_ins / "30-c.conf.disabled", '[engine]\ntmp_dir = "/nope"\n')
    (drop_ins / "40-dir.conf").mkdir()
    config = Config.load([SYSTEM_CONFIG, base])
    assert config.loaded_files == (SYSTEM_CONFIG, base, first, second)
    assert config.network_cmd_options == ("mtu=9000",)
    assert config.no_pivot_root is True
    assert config.tmp_dir == "/run/libpod"


def test_a_later_file_overrides_only_the_keys_it_sets(tmp_path: Path) -> None:
    first = _write(
        tmp_path / "a" / "containers.conf", '[engine]\ntmp_dir = "/one"\nno_pivot_root = true\n'
    )
    second = _write(tmp_path / "b" / "containers.conf", '[engine]\ntmp_dir = "/two"\n')
    config = Config.load([first, second])
    assert (config.tmp_dir, config.no_pivot_root) == ("/two", True)


def test_config_files_lists_drop_ins_without_a_base_file(tmp_path: Path) -> None:
    drop_in = _write(tmp_path / "containers.conf.d" / "a.conf", "")
    assert config_files([str(tmp_path / "containers.conf")]) == [drop_in]


def test_containers_conf_wins_over_the_system_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "only.conf", '[engine]\ntmp_dir = "/from/env"\n')
    _write(tmp_path / "only.conf.d" / "x.conf", '[engine]\ntmp_dir = "/not/read"\n')
    monkeypatch.setenv("CONTAINERS_CONF", path)
    config = Config.load()
    assert config.loaded_files == (path,)
    assert config.tmp_dir == "/from/env"


def test_a_missing_containers_conf_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTAINERS_CONF", str(tmp_path / "absent.conf"))
    with pytest.raises(ConfigError, match=r"absent\.conf"):
        Config.load()


def test_a_broken_file_raises_an_error_naming_it(tmp_path: Path) -> None:
    base = _write(tmp_path / "containers.conf", "")
    broken = _write(tmp_path / "containers.conf.d" / "50-broken.conf", "[engine\nno_pivot_root=")
    with pytest.raises(ConfigError) as info:
        Config.load([base])
    assert broken in str(info.value)
    assert isinstance(info.value, ValueError)


def test_a_broken_containers_conf_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = _write(tmp_path / "broken.conf", "engine = [")
    monkeypatch.setenv("CONTAINERS_CONF", broken)
    with pytest.raises(ConfigError, match=f"decode configuration {broken}"):
        Config.load()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[engine]\nno_pivot_root = "yes"', "engine.no_pivot_root must be a boolean, got 'yes'"),
        (
            "[engine]\nnetwork_cmd_options = [1]",
            "engine.network_cmd_options must be an array of strings, got [1]",
        ),
        (
            '[engine]\nnetwork_cmd_options = "mtu=1500"',
            "engine.network_cmd_options must be an array of strings, got 'mtu=1500'",
        ),
        ("[engine]\ntmp_dir = 5", "engine.tmp_dir must be a string, got 5"),
        (
            '[engine]\nnetwork_cmd_path = ["x"]',
            "engine.network_cmd_path must be a string, got ['x']",
        ),
        (
            '[engine]\nhelper_binaries_dir = "/opt"',
            "engine.helper_binaries_dir must be an array of strings, got '/opt'",
        ),
        ('engine = "flat"', "[engine] must be a table"),
    ],
)
def test_a_wrongly_typed_key_is_an_error_naming_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path / "containers.conf", text)
    with pytest.raises(ConfigError) as info:
        Config.load([path])
    assert str(info.value) == f"decode configuration {path}: {message}"


def test_an_unreadable_drop_in_is_an_error_naming_it(tmp_path: Path) -> None:
    base = _write(tmp_path / "containers.conf", "")
    dangling = tmp_path / "containers.conf.d" / "50-gone.conf"
    dangling.parent.mkdir()
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(ConfigError) as info:
        Config.load([base])
    assert str(info.value) == f"reading config {dangling}: No such file or directory"


def test_an_unreadable_drop_in_directory_is_an_error_naming_it(tmp_path: Path) -> None:
    base = _write(tmp_path / "containers.conf", "")
    loop = tmp_path / "containers.conf.d"
    loop.symlink_to(loop)
    with pytest.raises(ConfigError) as info:
        Config.load([base])
    assert str(info.value) == (
        f"reading drop-in directory {loop}: [Errno 40] Too many levels of symbolic links: '{loop}'"
    )


def test_a_file_nested_too_deeply_is_an_error_naming_it(tmp_path: Path) -> None:
    path = _write(tmp_path / "containers.conf", "a = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError) as info:
        Config.load([path])
    assert str(info.value) == f"decode configuration {path}: nested too deeply"


def test_an_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.conf"):
        Config.load([str(tmp_path / "missing.conf")])


def test_find_helper_binary_searches_dirs_in_order(tmp_path: Path) -> None:
    second = make_executable(tmp_path / "b", "rootlessport")
    make_executable(tmp_path / "c", "rootlessport")
    config = Config(helper_binaries_dir=tuple(str(tmp_path / d) for d in "abc"))
    assert config.find_helper_binary("rootlessport") == second


def test_find_helper_binary_skips_non_executables(tmp_path: Path) -> None:
    make_executable(tmp_path / "a", "rootlessport", mode=0o644)
    (tmp_path / "b" / "rootlessport").mkdir(parents=True)
    wanted = make_executable(tmp_path / "c", "rootlessport")
    dirs = tuple(str(tmp_path / d) for d in "abc")
    assert Config(helper_binaries_dir=dirs).find_helper_binary("rootlessport") == wanted


def test_a_found_helper_is_remembered_while_it_is_there(tmp_path: Path) -> None:
    found = make_executable(tmp_path / "b", "rootlessport")
    config = Config(helper_binaries_dir=tuple(str(tmp_path / d) for d in "ab"))
    assert config.find_helper_binary("rootlessport") == found
    make_executable(tmp_path / "a", "rootlessport")  # earlier in the search, but found later
    assert config.find_helper_binary("rootlessport") == found
    assert Config(helper_binaries_dir=(str(tmp_path / "a"),)).find_helper_binary(
        "rootlessport"
    ) == str(tmp_path / "a" / "rootlessport")


def test_the_memory_is_per_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = make_executable(tmp_path / "one", "myhelper")
    second = make_executable(tmp_path / "two", "myhelper")
    config = Config(helper_binaries_dir=())
    monkeypatch.setenv("PATH", str(tmp_path / "one"))
    assert config.find_helper_binary("myhelper", search_path=True) == first
    monkeypatch.setenv("PATH", str(tmp_path / "two"))
    assert config.find_helper_binary("myhelper", search_path=True) == second


def test_the_memory_is_per_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config(helper_binaries_dir=("$BINDIR",))
    for name in ("one", "two"):
        monkeypatch.setattr(sys, "argv", [make_executable(tmp_path / name, "program")])
        helper = make_executable(tmp_path / name, "rootlessport")
        assert config.find_helper_binary("rootlessport") == helper


def test_a_found_helper_is_remembered_until_it_is_gone(tmp_path: Path) -> None:
    first = make_executable(tmp_path / "a", "rootlessport")
    config = Config(helper_binaries_dir=tuple(str(tmp_path / d) for d in "ab"))
    assert config.find_helper_binary("rootlessport") == first
    later = make_executable(tmp_path / "b", "rootlessport")
    os.unlink(first)
    assert config.find_helper_binary("rootlessport") == later


def test_containers_helper_binary_dir_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_executable(tmp_path / "configured", "rootlessport")
    override = make_executable(tmp_path / "env", "rootlessport")
    monkeypatch.setenv("CONTAINERS_HELPER_BINARY_DIR", str(tmp_path / "env"))
    config = Config(helper_binaries_dir=(str(tmp_path / "configured"),))
    assert config.find_helper_binary("rootlessport") == override


def test_bindir_is_the_running_programs_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = make_executable(tmp_path / "bin", "myprogram")
    link = tmp_path / "link-to-program"
    link.symlink_to(program)
    helper = make_executable(tmp_path / "bin" / "helpers", "rootlessport")
    monkeypatch.setattr(sys, "argv", [str(link)])
    config = Config(helper_binaries_dir=("$BINDIR/helpers",))
    assert config.find_helper_binary("rootlessport") == helper


@pytest.mark.parametrize("argv", [["-c"], [""], []])
def test_bindir_is_skipped_when_the_program_is_unknown(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", argv)
    elsewhere = make_executable(tmp_path / "elsewhere", "rootlessport")
    make_executable(tmp_path / "cwd", "rootlessport")
    monkeypatch.chdir(tmp_path / "cwd")  # not the program's directory
    config = Config(helper_binaries_dir=("$BINDIR", str(tmp_path / "elsewhere")))
    assert config.find_helper_binary("rootlessport") == elsewhere
    with pytest.raises(BinaryNotFound) as info:
        Config(helper_binaries_dir=("$BINDIR",)).find_helper_binary("rootlessport")
    assert str(info.value) == f'could not find "rootlessport" in one of [$BINDIR].  {HINT}'


def test_path_is_searched_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = make_executable(tmp_path / "bin", "myhelper")
    monkeypatch.setenv("PATH", f"relative-dir:{tmp_path / 'bin'}")
    config = Config(helper_binaries_dir=(str(tmp_path / "none"),))
    assert config.find_helper_binary("myhelper", search_path=True) == found
    with pytest.raises(BinaryNotFound) as info:
        config.find_helper_binary("myhelper")
    assert str(info.value) == f'could not find "myhelper" in one of [{tmp_path / "none"}].  {HINT}'


def test_not_found_names_every_dir_and_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTAINERS_HELPER_BINARY_DIR", "/nonexistent/env")
    config = Config(helper_binaries_dir=("/nonexistent/a", "/nonexistent/b"))
    with pytest.raises(BinaryNotFound) as info:
        config.find_helper_binary("myhelper", search_path=True)
    assert str(info.value) == (
        'could not find "myhelper" in one of [/nonexistent/env /nonexistent/a /nonexistent/b]'
        f" or $PATH.  {HINT}"
    )


def test_not_found_with_no_dirs_has_gos_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(BinaryNotFound) as info:
        Config(helper_binaries_dir=()).find_helper_binary("rootlessport", search_path=True)
    assert str(info.value) == (
        'could not find "rootlessport" because there are no helper binary directories '
        f"configured or $PATH.  {HINT}"
    )
    assert isinstance(info.value, FileNotFoundError)


def test_network_cmd_path_wins_over_the_search() -> None:
    config = Config(network_cmd_path="/opt/custom/slirp4netns")
    assert config.find_network_cmd() == "/opt/custom/slirp4netns"


def test_a_bare_network_cmd_path_is_looked_up_in_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent:/usr/bin")
    assert Config(network_cmd_path="slirp4netns").find_network_cmd() == "/usr/bin/slirp4netns"
    message = r'^exec: "nope": executable file not found in \$PATH$'
    with pytest.raises(BinaryNotFound, match=message):
        Config(network_cmd_path="nope").find_network_cmd()


def test_slirp4netns_is_found_in_path_on_debian() -> None:
    assert Config().find_network_cmd() == shutil.which("slirp4netns") == "/usr/bin/slirp4netns"


def test_rootlessport_is_found_in_debians_helper_dir() -> None:
    assert Config().find_helper_binary("rootlessport") == "/usr/lib/podman/rootlessport"


def test_missing_slirp4netns_says_the_namespace_cannot_be_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BinaryNotFound, match=r"^could not find slirp4netns, the network namespace"):
        Config(helper_binaries_dir=(str(tmp_path),)).find_network_cmd()


def test_default_helper_dirs_constant_matches_the_default() -> None:
    assert Config().helper_binaries_dir == DEFAULT_HELPER_BINARIES_DIR


# --- the rootless runtime directory, as podman finds it (root: the tests chown) ----------

UID = 4242  # an ordinary user nothing on the machine is


@pytest.fixture
def user_4242(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """pyslirp sees uid 4242 with no XDG_RUNTIME_DIR, TMPDIR and HOME under ``tmp_path``;
    /run/user/4242 is removed after (the chain makes it, owned by root: skipped)."""
    monkeypatch.setattr(os, "geteuid", lambda: UID)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "tmp").mkdir()
    (tmp_path / "home").mkdir()
    yield tmp_path
    shutil.rmtree(f"/run/user/{UID}", ignore_errors=True)


def _ours(path: Path) -> Path:
    path.mkdir(mode=0o700, exist_ok=True)
    os.chown(path, UID, UID)
    return path


@pytest.mark.root
def test_no_usable_runtime_dir_names_every_candidate_and_why(user_4242: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config_module.runtime_dir()
    assert str(info.value) == (
        "no usable runtime directory for rootless use: $XDG_RUNTIME_DIR (not set); "
        f"/run/user/{UID} (owned by uid 0); "
        f"{user_4242}/tmp/podman-run-{UID} (owned by uid 0); "
        f"{user_4242}/home/rundir (owned by uid 0)"
    )


@pytest.mark.root
def test_the_first_private_candidate_wins_in_podmans_order(
    user_4242: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home_rundir = _ours(user_4242 / "home" / "rundir")
    assert config_module.runtime_dir() == str(home_rundir)
    tmp_run = _ours(user_4242 / "tmp" / f"podman-run-{UID}")
    assert config_module.runtime_dir() == str(tmp_run)
    xdg = _ours(user_4242 / "xdg")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    assert config_module.runtime_dir() == str(xdg)
    assert default_tmp_dir() == f"{xdg}/libpod/tmp"


@pytest.mark.root
def test_home_is_resolved_and_an_unset_home_is_no_candidate(
    user_4242: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_home = user_4242 / "real-home"
    real_home.mkdir()
    (user_4242 / "link-home").symlink_to(real_home)
    monkeypatch.setenv("HOME", str(user_4242 / "link-home"))
    rundir = _ours(real_home / "rundir")
    assert config_module.runtime_dir() == str(rundir)
    monkeypatch.delenv("HOME")
    with pytest.raises(ConfigError) as info:
        config_module.runtime_dir()
    assert str(info.value).endswith(f"{user_4242}/tmp/podman-run-{UID} (owned by uid 0)")


@pytest.mark.root
def test_tmpdir_unset_means_tmp(user_4242: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TMPDIR")
    monkeypatch.delenv("HOME")
    tmp_run = _ours(Path(f"/tmp/podman-run-{UID}"))
    try:
        assert config_module.runtime_dir() == str(tmp_run)
    finally:
        shutil.rmtree(tmp_run, ignore_errors=True)


@pytest.mark.root
def test_a_candidate_without_write_for_its_owner_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "d"
    path.mkdir(mode=0o500)
    assert _not_private(str(path), os.geteuid()) == "mode 0500, not 0700"


# --- pasta's settings and binary ----------------------------------------------------------


def test_pasta_options_come_from_the_network_table(tmp_path: Path) -> None:
    conf = _write(tmp_path / "c.conf", '[network]\npasta_options = ["-a", "10.0.2.100"]\n')
    assert Config.load([conf]).pasta_options == ("-a", "10.0.2.100")


def test_pasta_options_must_be_an_array_of_strings(tmp_path: Path) -> None:
    conf = _write(tmp_path / "c.conf", "[network]\npasta_options = [1]\n")
    with pytest.raises(ConfigError) as info:
        Config.load([conf])
    assert str(info.value) == (
        f"decode configuration {conf}: network.pasta_options must be an array of strings, got [1]"
    )


def test_pasta_is_found_in_the_helper_dirs_then_in_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helpers = tmp_path / "helpers"
    in_helpers = make_executable(helpers, "pasta")
    assert Config(helper_binaries_dir=(str(helpers),)).find_pasta() == in_helpers
    in_path = make_executable(tmp_path / "bin", "pasta")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert Config(helper_binaries_dir=()).find_pasta() == in_path
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BinaryNotFound, match="could not find pasta, the network namespace"):
        Config(helper_binaries_dir=()).find_pasta()
