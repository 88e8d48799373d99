"""``pyslirp``: run any command in a network namespace of its own, with slirp4netns
networking and published ports (``pyslirp run``), or show what it would use
(``pyslirp info``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .addresses import DEFAULT_SUBNET, get_dns, get_gateway, get_ip
from .argv import BINARY_NAME
from .config import Config
from .errors import SlirpError
from .features import probe_features
from .options import OPTION_KEYS, SetupOptions, parse_options
from .ports import parse_publish
from .rootlessport import BINARY_NAME as ROOTLESSPORT
from .slirp4netns import setup
from .spawn import Child, spawn

ERROR_STATUS = 125  # podman's status for an error of its own, not the command's

# CMD waits here, already in its namespaces, until the network is up: no race where it
# starts without one. The gate fd is closed before CMD runs.
GATE = 'read -r _ <&3 || exit 125; exec 3<&-; exec "$@"'
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

RUN_EXAMPLE = """\
examples:
  pyslirp run -p 8080:80 -- python3 -m http.server 80
  pyslirp run -o cidr=10.77.0.0/24 -o mtu=1500 -- ip addr show tap0
  pyslirp run --rootless -p 8080:8080 -- python3 -m http.server 8080
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyslirp`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
        return status
    except (SlirpError, OSError, ValueError) as exc:
        print(f"pyslirp: {exc}", file=sys.stderr)
        return ERROR_STATUS
    except KeyboardInterrupt:  # before CMD runs; after, SIGINT is CMD's to handle
        return 128 + signal.SIGINT


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pyslirp", description="User-mode networking for network namespaces.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run a command in a new network namespace with slirp4netns networking",
        description="Run CMD in a new network namespace with slirp4netns networking and "
        "published ports. Exits with CMD's status (128+N if a signal N ended it), or 125 "
        "for an error of pyslirp's own.",
        epilog=RUN_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="[IP:]HOST[-END]:CONTAINER[-END][/PROTO]",
        help="publish a port (podman's syntax); repeatable",
    )
    run.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"a slirp4netns network option ({', '.join(OPTION_KEYS)}); repeatable",
    )
    run.add_argument(
        "--rootless",
        action="store_true",
        help="also make a user namespace (the default when not run as root)",
    )
    run.add_argument(
        "--ready-timeout", type=float, default=10.0, metavar="S", help="default: %(default)s"
    )
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARG...]")
    run.set_defaults(func=_run)

    info = commands.add_parser(
        "info",
        help="show the binaries, features, config files and options pyslirp would use",
        epilog="example:\n  pyslirp info --json -o cidr=10.77.0.0/24",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    info.add_argument("--json", action="store_true", help="print JSON for scripts")
    info.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE")
    info.set_defaults(func=_info)
    return parser


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line and podman's status 125, not a usage dump and 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message}\n")
        raise SystemExit(ERROR_STATUS)


def _run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ValueError("no command given: pyslirp run [OPTIONS] -- CMD [ARG...]")
    if shutil.which(command[0]) is None:
        raise FileNotFoundError(f"command not found: {command[0]}")
    ports = [parse_publish(spec) for spec in args.publish]
    config = Config.load()
    parse_options(config.network_cmd_options, args.option)  # fail before any spawn
    rootless = args.rootless or os.geteuid() != 0

    # Signals are taken with sigwaitinfo, so every thread started from here blocks them.
    watched = {*FORWARDED, signal.SIGCHLD}
    saved_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        gate_r, gate_w = os.pipe()
        try:
            cmd = spawn(
                ["sh", "-c", GATE, "pyslirp-gate", *command],
                fds={3: gate_r},
                setpgid=False,  # CMD stays in the terminal's foreground process group
                new_netns=True,
                new_userns=rootless,
            )
        finally:
            os.close(gate_r)
        try:
            if rootless:
                _map_to_root(cmd.pid)
            opts = SetupOptions(
                config=config,
                container_id=f"pyslirp-{cmd.pid}",
                netns=f"/proc/{cmd.pid}/ns/net",
                userns_path=f"/proc/{cmd.pid}/ns/user" if rootless else None,
                ports=ports,
                extra_options=args.option,
                pdeathsig=signal.SIGKILL,
                ready_timeout=args.ready_timeout,
            )
            network = setup(opts)
        except BaseException:
            os.close(gate_w)
            cmd.kill()
            cmd.wait()
            raise
        with network:
            os.write(gate_w, b"\n")
            os.close(gate_w)
            returncode = _wait_forwarding(cmd, watched)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, saved_mask)
    return returncode if returncode >= 0 else 128 - returncode


def _map_to_root(pid: int) -> None:
    """Map the caller's uid and gid to root in the new user namespace of ``pid``."""
    Path(f"/proc/{pid}/setgroups").write_text("deny")
    Path(f"/proc/{pid}/uid_map").write_text(f"0 {os.geteuid()} 1")
    Path(f"/proc/{pid}/gid_map").write_text(f"0 {os.getegid()} 1")


def _wait_forwarding(cmd: Child, watched: set[signal.Signals]) -> int:
    """Wait for ``cmd`` to exit, forwarding the signals other processes send us.

    Signals from the terminal (si_code SI_KERNEL) reached CMD already: it is in the same
    foreground process group, so they are not sent twice.
    """
    while (returncode := cmd.poll()) is None:
        info = signal.sigwaitinfo(watched)
        if info.si_signo != signal.SIGCHLD and info.si_code <= 0:  # SI_USER, SI_QUEUE, ...
            cmd.send_signal(info.si_signo)
    return returncode


def _info(args: argparse.Namespace) -> int:
    config = Config.load()
    options = parse_options(config.network_cmd_options, args.option)
    slirp4netns = config.find_network_cmd()
    try:
        rootlessport: str | None = config.find_helper_binary(ROOTLESSPORT)
    except SlirpError:
        rootlessport = None
    subnet = options.cidr or DEFAULT_SUBNET
    report: dict[str, Any] = {
        "slirp4netns": {
            "path": slirp4netns,
            "version": _first_line([slirp4netns, "--version"]),
            "features": dataclasses.asdict(probe_features(slirp4netns)),
        },
        "rootlessport": {
            "path": rootlessport,
            "version": _first_line(["podman", "--version"]) if rootlessport else None,
        },
        "config_files": list(config.loaded_files),
        "tmp_dir": config.tmp_dir,
        "options": {
            key: str(value) if value is not None and not isinstance(value, (bool, int)) else value
            for key, value in dataclasses.asdict(options).items()
        },
        "subnet": str(subnet),
        "ip": str(get_ip(subnet)),
        "gateway": str(get_gateway(subnet)),
        "dns": str(get_dns(subnet)),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{BINARY_NAME}: {slirp4netns} ({report['slirp4netns']['version']})")
    enabled = [name for name, on in report["slirp4netns"]["features"].items() if on]
    print(f"  features: {', '.join(enabled)}")
    print(f"{ROOTLESSPORT}: {rootlessport or 'not found'}", end="")
    print(f" ({report['rootlessport']['version']})" if rootlessport else "")
    print(f"containers.conf: {', '.join(config.loaded_files) or 'none read'}")
    print(f"tmp_dir: {config.tmp_dir}")
    print("options: " + ", ".join(f"{k}={v}" for k, v in report["options"].items()))
    print(
        f"subnet: {subnet}  ip: {report['ip']}  gateway: {report['gateway']}  dns: {report['dns']}"
    )
    return 0


def _first_line(argv: list[str]) -> str | None:
    """The first line ``argv`` prints, or None if it cannot run."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.splitlines()
    return lines[0] if lines else None
