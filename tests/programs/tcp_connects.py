"""Exit 0 if a TCP connection to HOST PORT succeeds within 2 s, else 1."""

import socket
import sys

try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
except OSError:
    sys.exit(1)
