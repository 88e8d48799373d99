"""Send "hi" to HOST:PORT over TCP and print the answer.  usage: connect.py HOST PORT"""

import socket
import sys

with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as conn:
    conn.sendall(b"hi")
    print(conn.recv(1024).decode())
