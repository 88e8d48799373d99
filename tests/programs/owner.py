"""An owner of helpers, as a separate process a test can kill: sets up, prints what it
started as one JSON line, then waits for a line on stdin.

usage: owner.py NETNS TMP_DIR HANDLER PORT MODE [EXIT_FD]
HANDLER is none, rootlesskit or slirp4netns; MODE is keep (hold the result), detach
(detach it and drop the handle), caller-pipe (slirp4netns's exit pipe is EXIT_FD, the
read end of a pipe whose write end the test holds) or fork-worker (keep, and fork a
worker, as a pre-fork server does, that waits for stdin's EOF too).
"""

from __future__ import annotations

import gc
import json
import os
import sys

import pyslirp


def main() -> None:
    netns, tmp_dir, handler, port, mode = sys.argv[1:6]
    ports = [pyslirp.PortMapping(host_port=int(port), container_port=80)]
    opts = pyslirp.SetupOptions(
        config=pyslirp.Config(tmp_dir=tmp_dir),
        container_id="owner",
        netns=netns,
        ports=ports if handler != "none" else (),
        extra_options=[f"port_handler={handler}"] if handler != "none" else (),
        slirp4netns_exit_pipe_r=int(sys.argv[6]) if mode == "caller-pipe" else None,
    )
    result = pyslirp.setup(opts)
    started = {"slirp4netns": result.pid}
    if result.rootlessport is not None:
        started["rootlessport"] = result.rootlessport.pid
    if mode == "detach":
        result.detach()
        del result
        gc.collect()
    worker = os.fork() if mode == "fork-worker" else -1
    if worker == 0:
        sys.stdin.readline()
        os._exit(0)
    print(json.dumps({"started": started, "worker": worker}), flush=True)
    sys.stdin.readline()


if __name__ == "__main__":
    main()
