"""``pyslirp``: run any command in a network namespace of its own, with slirp4netns
networking and published ports (``pyslirp run``), or show what it would use
(``pyslirp info``)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .errors import SlirpError
from .options import OPTION_KEYS

ERROR_STATUS = 125  # podman's status for an error of its own, not the command's

RUN_EXAMPLE = """\
examples:
  pyslirp run -p 8080:80 -- python3 -m http.server 80
  pyslirp run -o cidr=10.77.0.0/24 -o mtu=1500 -- ip addr show tap0
  pyslirp run --rootless -p 8080:8080 -- python3 -m http.server 8080
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyslirp`` console script; returns the exit status.

    pyslirp's own errors and the user's show as one line and status 125 (126/127 when CMD
    cannot be run, as podman's); a bug keeps its traceback. Ctrl-C before CMD runs: 130.
    """
    try:
        args = _parser().parse_args(argv)
        status: int = args.func(args)
        return status
    except SlirpError as exc:
        print(f"pyslirp: {exc}", file=sys.stderr)
        return getattr(exc, "status", ERROR_STATUS)  # a CommandError's is podman's 126/127
    except KeyboardInterrupt:  # before CMD runs; after, SIGINT is CMD's to handle
        return 128 + signal.SIGINT


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pyslirp", description="User-mode networking for network namespaces.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run a command in a sandbox of its own with slirp4netns networking",
        description="Run CMD in new network, PID and mount namespaces (and a user namespace "
        "when rootless) with slirp4netns networking and published ports; a small init is its "
        "PID 1. Exits with CMD's status (128+N if a signal N ended it), 125 for an error of "
        "pyslirp's own, 126 if CMD cannot be executed, 127 if it is not found.",
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
        "--network",
        default="slirp4netns",
        metavar="slirp4netns[:OPT=V,...]|pasta[:ARG,...]",
        help="the network backend, with options as podman takes them (default: %(default)s; "
        "pasta gets slirp4netns's addresses: 10.0.2.100, gateway .2, DNS .3)",
    )
    run.add_argument(
        "--rootless",
        action="store_true",
        help="also make a user namespace (the default when not run as root)",
    )
    run.add_argument(
        "--dns",
        action="append",
        default=[],
        metavar="IP",
        help="a nameserver for CMD's /etc/resolv.conf instead of slirp4netns's; repeatable",
    )
    run.add_argument(
        "--ready-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="bound on setting up the network, in seconds (default: %(default)s)",
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
    from .config import Config
    from .ports import parse_publish
    from .sandbox import RunOptions, run

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    network, _, network_options = args.network.partition(":")
    extra = network_options.split(",") if network_options else []
    return run(
        RunOptions(
            command=command,
            config=Config.load(),
            ports=[parse_publish(spec) for spec in args.publish],
            network=network,
            extra_options=[*args.option, *extra],
            rootless=args.rootless or os.geteuid() != 0,
            dns=args.dns,
            ready_timeout=args.ready_timeout,
        )
    )


def _info(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from .addresses import DEFAULT_SUBNET, get_dns, get_gateway, get_ip
    from .argv import BINARY_NAME
    from .config import Config
    from .features import probe_features, probe_pasta_features
    from .options import parse_options
    from .rootlessport import BINARY_NAME as ROOTLESSPORT

    config = Config.load()
    options = parse_options(config.network_cmd_options, args.option)
    slirp4netns = config.find_network_cmd()
    try:
        rootlessport: str | None = config.find_helper_binary(ROOTLESSPORT)
    except SlirpError:
        rootlessport = None
    try:
        pasta: str | None = config.find_pasta()
    except SlirpError:
        pasta = None
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
        "pasta": {
            "path": pasta,
            "version": _first_line([pasta, "--version"]) if pasta else None,
            "features": dataclasses.asdict(probe_pasta_features(pasta)) if pasta else None,
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
    print(f"pasta: {pasta or 'not found'}", end="")
    if pasta:
        features = [name for name, on in report["pasta"]["features"].items() if on]
        print(f" ({report['pasta']['version']}; features: {', '.join(features) or 'none'})")
    else:
        print()
    print(f"containers.conf: {', '.join(config.loaded_files) or 'none read'}")
    print(f"tmp_dir: {config.tmp_dir}")
    print("options: " + ", ".join(f"{k}={v}" for k, v in report["options"].items()))
    print(
        f"subnet: {subnet}  ip: {report['ip']}  gateway: {report['gateway']}  dns: {report['dns']}"
    )
    return 0


def _first_line(argv: list[str]) -> str | None:
    """The first line ``argv`` prints, or None if it cannot run."""
    import subprocess

    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.splitlines()
    return lines[0] if lines else None
