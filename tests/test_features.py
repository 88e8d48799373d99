"""The --help feature probe of real slirp4netns binaries, and its cache."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from pyslirp.errors import BinaryNotFound, SlirpError
from pyslirp.features import Features, PastaFeatures, probe_features, probe_pasta_features

SLIRP4NETNS = "/usr/bin/slirp4netns"


def counting_wrapper(path: Path, runs: Path, extra: str = "") -> Path:
    """A slirp4netns at ``path`` that adds a line to ``runs`` each time it runs."""
    path.write_text(f'#!/bin/sh\n{extra}echo >> "{runs}"\nexec {SLIRP4NETNS} "$@"\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    """The real slirp4netns behind a counting wrapper of this test's own (so the test
    owns its cache entry); :func:`runs` tells how often --help was run."""
    return counting_wrapper(tmp_path / "slirp4netns", tmp_path / "runs")


def runs(binary: Path) -> int:
    """How many times ``binary`` (a :func:`counting_wrapper`) has run."""
    counter = binary.parent / "runs"
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_real_slirp4netns_1_2_has_every_feature() -> None:
    features = probe_features(SLIRP4NETNS)
    assert features == Features(**{name: True for name in Features.__dataclass_fields__})


def test_features_from_help_reads_each_flag() -> None:
    features = Features.from_help("--mtu=MTU\n--cidr=CIDR\n--outbound-addr=IPv4\n")
    assert features == Features(mtu=True, cidr=True, outbound_addr=True)


def test_a_second_probe_of_the_same_binary_spawns_nothing(binary: Path) -> None:
    first = probe_features(str(binary))
    assert runs(binary) == 1
    assert probe_features(str(binary)) == first
    assert runs(binary) == 1


def test_a_new_copy_is_probed_once(binary: Path) -> None:
    count = runs(binary)
    probe_features(str(binary))
    probe_features(str(binary))
    assert runs(binary) == count + 1


def test_touching_the_binary_probes_it_again(binary: Path) -> None:
    probe_features(str(binary))
    count = runs(binary)
    stat = binary.stat()
    os.utime(binary, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    probe_features(str(binary))
    assert runs(binary) == count + 1


def test_replacing_the_binary_probes_it_again(binary: Path, tmp_path: Path) -> None:
    probe_features(str(binary))
    count = runs(binary)
    replacement = counting_wrapper(tmp_path / "replacement", tmp_path / "runs", "# new\n")
    os.replace(replacement, binary)
    probe_features(str(binary))
    assert runs(binary) == count + 1


def test_a_symlink_shares_the_cache_of_its_target(binary: Path, tmp_path: Path) -> None:
    probe_features(str(binary))
    count = runs(binary)
    link = tmp_path / "link"
    link.symlink_to(binary)
    probe_features(str(link))
    assert runs(binary) == count


def test_concurrent_probes_of_one_binary_run_it_once(binary: Path) -> None:
    count = runs(binary)
    barrier = threading.Barrier(8)
    results: list[Features] = []

    def probe() -> None:
        barrier.wait()
        results.append(probe_features(str(binary)))

    threads = [threading.Thread(target=probe) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert runs(binary) == count + 1
    assert len(results) == 8
    assert len(set(results)) == 1


def test_failing_help_names_the_binary_and_its_output(tmp_path: Path) -> None:
    script = tmp_path / "broken-slirp4netns"
    script.write_text("#!/bin/sh\necho 'cannot run: \"oops\"' >&2\nexit 1\n")
    script.chmod(0o755)
    with pytest.raises(SlirpError) as info:
        probe_features(str(script))
    assert str(info.value) == (
        f"checking slirp4netns binary {script}: "
        'slirp4netns "cannot run: \\"oops\\"\\n": exit status 1'
    )


def test_a_failed_probe_is_not_cached(tmp_path: Path) -> None:
    script = counting_wrapper(tmp_path / "broken-slirp4netns", tmp_path / "runs", "")
    script.write_text(f'#!/bin/sh\necho >> "{tmp_path / "runs"}"\nexit 3\n')
    for _ in range(2):
        with pytest.raises(SlirpError, match="exit status 3"):
            probe_features(str(script))
    assert runs(script) == 2


def test_a_binary_that_cannot_execute_is_an_error(tmp_path: Path) -> None:
    not_executable = tmp_path / "slirp4netns"
    not_executable.write_text("not a program\n")
    with pytest.raises(SlirpError, match=f"checking slirp4netns binary {not_executable}: "):
        probe_features(str(not_executable))


def test_a_missing_binary_is_binary_not_found(tmp_path: Path) -> None:
    with pytest.raises(BinaryNotFound, match="no such file"):
        probe_features(str(tmp_path / "absent"))


def test_debians_pasta_is_probed_once_and_lacks_map_guest_addr(tmp_path: Path) -> None:
    wrapper = tmp_path / "pasta"  # a counting wrapper: this test owns its cache entry
    pasta = os.path.realpath("/usr/bin/pasta")
    wrapper.write_text(f'#!/bin/sh\necho >> "{tmp_path / "runs"}"\nexec {pasta} "$@"\n')
    wrapper.chmod(0o755)
    assert probe_pasta_features(str(wrapper)) == PastaFeatures(map_guest_addr=False)
    assert probe_pasta_features(str(wrapper)) == PastaFeatures(map_guest_addr=False)
    assert runs(wrapper) == 1


def test_one_file_probed_as_slirp4netns_and_as_pasta_keeps_both_answers(binary: Path) -> None:
    assert isinstance(probe_features(str(binary)), Features)
    assert probe_pasta_features(str(binary)) == PastaFeatures(map_guest_addr=False)
    assert isinstance(probe_features(str(binary)), Features)


def test_pasta_features_from_help_reads_map_guest_addr() -> None:
    assert PastaFeatures.from_help("  --map-guest-addr ADDR\tTranslate ADDR") == PastaFeatures(
        map_guest_addr=True
    )


def test_pasta_help_failing_otherwise_than_with_status_1_is_an_error(tmp_path: Path) -> None:
    script = tmp_path / "pasta"
    script.write_text("#!/bin/sh\necho broken\nexit 2\n")
    script.chmod(0o755)
    with pytest.raises(SlirpError, match=f'checking pasta binary {script}: pasta "broken\\\\n"'):
        probe_pasta_features(str(script))


@pytest.mark.root  # hygiene: nothing left
def test_ctrl_c_during_a_probe_leaves_no_zombie(hygiene, tmp_path: Path) -> None:
    started = tmp_path / "started"
    os.mkfifo(started)
    slow = tmp_path / "slirp4netns"
    slow.write_text(f"#!/bin/sh\necho up > {started}\nexec sleep 100\n")
    slow.chmod(0o755)

    def interrupt() -> None:
        with open(started) as fifo:  # once --help runs
            fifo.read()
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    sender = threading.Thread(target=interrupt)
    sender.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            probe_features(str(slow))
    finally:
        sender.join()
        signal.signal(signal.SIGINT, previous)
