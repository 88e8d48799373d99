"""The SetupOptions builder the tests share."""

from __future__ import annotations

from typing import Any

import pyslirp

from .ports import free_port


def options(
    config: pyslirp.Config,
    netns: str = "/run/netns/x",
    handler: str = "none",
    port: int | None = None,
    **kwargs: Any,
) -> pyslirp.SetupOptions:
    """SetupOptions for container id ``ctr`` (unless given); with a port ``handler``
    (rootlesskit, slirp4netns) one TCP port published through it: ``port``, else a free
    one per call, so that setups at once publish different ones."""
    if handler != "none":
        mapping = pyslirp.PortMapping(host_port=port or free_port(), container_port=80)
        kwargs["ports"] = [mapping]
        kwargs["extra_options"] = [f"port_handler={handler}"]
    kwargs.setdefault("container_id", "ctr")
    return pyslirp.SetupOptions(config=config, netns=netns, **kwargs)
