"""A VM's identity service: answers every TCP connection with the VM's name.

Connectivity probes over TCP read the answer, so a reply from the wrong VM (an
overlapping address in another project) is caught, not counted as success.
Run inside a VM namespace: `python -m spanwire.qualify.whoami NAME PORT`.
"""

from __future__ import annotations

import socketserver
import sys


def serve(name: str, port: int) -> None:
    reply = (name + "\n").encode()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(reply)

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    with Server(("0.0.0.0", port), Handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
