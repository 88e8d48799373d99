"""The slirp4netns command line, in exactly the order podman builds it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import OptionError

if TYPE_CHECKING:
    from .features import Features
    from .options import NetworkOptions

BINARY_NAME = "slirp4netns"
READY_FD = 3  # slirp4netns writes "1" here once the interface is configured
EXIT_FD = 4  # slirp4netns exits at EOF here
NETNS_FD = 5  # the netns, handed over by fd where its path does not exist (see spawn)
NETNS_TYPE = "--netns-type=path"
TAP_NAME = "tap0"


def build_argv(
    binary: str,
    options: NetworkOptions,
    features: Features,
    *,
    netns: str,
    no_pivot_root: bool = False,
    exit_fd: bool = False,
    api_socket: str | None = None,
    userns_path: str | None = None,
) -> list[str]:
    """The full argv for ``binary``, as Go's createBasicSlirpCmdArgs and Setup build it.

    Flags the binary lacks are dropped where podman drops them (host loopback, mtu,
    sandbox, seccomp); an option that was asked for but is unsupported raises OptionError.
    """
    argv = [binary]
    if not options.allow_host_loopback and features.disable_host_loopback:
        argv.append("--disable-host-loopback")
    if features.mtu:
        argv.append(f"--mtu={options.mtu}")
    if not no_pivot_root and features.enable_sandbox:
        argv.append("--enable-sandbox")
    if features.enable_seccomp:
        argv.append("--enable-seccomp")
    if options.cidr is not None:
        if not features.cidr:
            raise OptionError("cidr not supported")
        argv.append(f"--cidr={options.cidr}")
    if options.enable_ipv6:
        if not features.ipv6:
            raise OptionError("enable_ipv6 not supported")
        argv.append("--enable-ipv6")
    if options.outbound_addr is not None:
        if not features.outbound_addr:
            raise OptionError("outbound_addr not supported")
        argv.append(f"--outbound-addr={options.outbound_addr}")
    if options.outbound_addr6 is not None:
        if not (features.outbound_addr and features.ipv6):
            raise OptionError("outbound_addr6 not supported")
        argv.append(f"--outbound-addr6={options.outbound_addr6}")
    argv += ["-c", "-r", str(READY_FD)]
    if exit_fd:
        argv += ["-e", str(EXIT_FD)]
    if api_socket is not None:
        argv += ["--api-socket", api_socket]
    if userns_path is not None:
        if not features.userns_path:
            raise OptionError("userns_path not supported")
        argv.append(f"--userns-path={userns_path}")
    argv += [NETNS_TYPE, netns, TAP_NAME]
    return argv
