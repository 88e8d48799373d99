"""pasta.setup() run inside a namespace that plays the host (pasta's outside is that
namespace, so every packet stays in namespaces the test made): prints pasta's pid as JSON
(or the typed error it raised), then holds the network until EOF on stdin.

usage: pasta_in_netns.py TMP_DIR NETNS PORT host|slirp4netns   (PORT 0: none published)
"""

import json
import sys

import pyslirp
from pyslirp import pasta


def main() -> None:
    tmp_dir, netns, port, addressing = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    opts = pasta.SetupOptions(
        config=pyslirp.Config(tmp_dir=tmp_dir),
        netns=netns,
        addressing=addressing,  # type: ignore[arg-type]
        ports=[pyslirp.PortMapping(host_port=port, container_port=8080)] if port else [],
    )
    try:
        result = pasta.setup(opts)
    except pyslirp.SlirpError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
        return
    with result:
        print(json.dumps({"pid": result.pid}), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
