"""A VM's identity service: answers every TCP connection with the VM's name.

Connectivity probes over TCP read the answer, so a reply from the wrong VM (an
overlapping address in another project) is caught, not counted as success.
Run inside a VM namespace: `python -m spanwire.qualify.whoami NAME PORT`.

On the outside host it runs as `python -m spanwire.qualify.whoami --peer PORT`
and answers with the address the connection came *from*: that is how a SNAT
probe proves which external address (the node's, or a floating IP) a VM's
traffic left the cloud with.
"""

from __future__ import annotations

import socketserver
import sys

PEER = "--peer"


def serve(name: str, port: int) -> None:
    """Answer with `name`, or with the client's address when `name` is `--peer`."""
    reply = (name + "\n").encode()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            if name == PEER:
                self.request.sendall((self.client_address[0] + "\n").encode())
            else:
                self.request.sendall(reply)

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    with Server(("0.0.0.0", port), Handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
