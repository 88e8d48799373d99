"""Echo servers, for a test network namespace: each answers with the data, the peer's
address and its own port.

usage: echo_server.py tcp|udp PORT...   (prints "ready" once listening; ends at EOF on stdin)
"""

import socket
import sys
import threading


def serve(proto: str, sock: socket.socket) -> None:
    while True:
        if proto == "tcp":
            conn, peer = sock.accept()
            data = conn.recv(1024)
            conn.sendall(data + f" {peer[0]} {sock.getsockname()[1]}".encode())
            conn.close()
        else:
            data, peer = sock.recvfrom(1024)
            sock.sendto(data + f" {peer[0]} {sock.getsockname()[1]}".encode(), peer)


def main() -> None:
    proto, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
    for port in ports:
        if proto == "tcp":
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", port))
            sock.listen(8)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("0.0.0.0", port))
        threading.Thread(target=serve, args=(proto, sock), daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
