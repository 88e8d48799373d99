"""pasta.setup() as nobody for a user and network namespace of nobody's own (pasta joins
the user namespace with --userns): publishes a port and reports as JSON what it saw.

usage: rootless_pasta.py TMP_DIR PORT publish|hold   (hold: prints pasta's pid and the
other processes to kill, then waits for EOF on stdin)
"""

import json
import os
import socket
import sys

import pyslirp
from pyslirp import pasta

from rootless import namespaces_with_server


def main() -> None:
    tmp_dir, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with namespaces_with_server() as (userns, netns, others):
        opts = pasta.SetupOptions(
            config=pyslirp.Config(tmp_dir=tmp_dir),
            netns=netns,
            userns_path=userns,
            addressing="slirp4netns",
            ports=[pyslirp.PortMapping(host_port=port, container_port=80)],
        )
        with pasta.setup(opts) as result:
            if mode == "hold":
                print(json.dumps({"pid": result.pid, "others": others}), flush=True)
                sys.stdin.read()
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(b"hi")
                reply = conn.recv(100).decode()
            report = {
                "reply": reply,
                "pasta_uid": os.stat(f"/proc/{result.pid}").st_uid,
                "ip_addresses": [str(a) for a in result.ip_addresses if a.version == 4],
                "pid": result.pid,
            }
            print(json.dumps(report))


if __name__ == "__main__":
    main()
