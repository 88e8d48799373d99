"""setup() as nobody for a user and network namespace of nobody's own (userns_path):
publishes a port through rootlessport and prints as JSON what it saw.

usage: rootless_publish.py TMP_DIR PORT
"""

import json
import os
import socket
import sys

import pyslirp

from rootless import namespaces_with_server


def publish(tmp_dir: str, port: int, userns: str, netns: str) -> dict[str, object]:
    opts = pyslirp.SetupOptions(
        config=pyslirp.Config(tmp_dir=tmp_dir),
        container_id="rootless",
        netns=netns,
        userns_path=userns,
        ports=[pyslirp.PortMapping(host_port=port, container_port=80)],
    )
    with pyslirp.setup(opts) as result:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"hi")
            reply = conn.recv(100).decode()
        return {
            "reply": reply,
            "uid": os.getuid(),
            "slirp4netns_uid": os.stat(f"/proc/{result.pid}").st_uid,
            "rootlessport": result.rootlessport is not None,
        }


def main() -> None:
    tmp_dir, port = sys.argv[1], int(sys.argv[2])
    with namespaces_with_server() as (userns, netns, _):
        print(json.dumps(publish(tmp_dir, port, userns, netns)))


if __name__ == "__main__":
    main()
