"""setup() when no thread can be made (RLIMIT_NPROC): prints the error it raised.

usage: no_threads.py NETNS TMP_DIR   (as root: it drops to nobody with no process to spare)
"""

from __future__ import annotations

import os
import resource
import sys

import pyslirp


def main() -> None:
    netns, tmp_dir = sys.argv[1:3]
    for name in pyslirp.__all__:  # pyslirp loads its modules on first use: all of them now
        getattr(pyslirp, name)
    config = pyslirp.Config(tmp_dir=tmp_dir)
    pyslirp.probe_features(config.find_network_cmd())  # cached before threads run out
    opts = pyslirp.SetupOptions(config=config, container_id="nothreads", netns=netns)
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    try:
        pyslirp.setup(opts)
    except pyslirp.StartError as exc:
        print(exc)
    else:
        print("setup succeeded")


if __name__ == "__main__":
    main()
