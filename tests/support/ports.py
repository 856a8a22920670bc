"""Ports for the processes the tests start on 127.0.0.1.

Binding port 0 and closing the socket hands out an ephemeral port, which any
outgoing connection may take as its local port before the service binds it. So
ports come from below Linux's ephemeral range instead, and a port is handed out
once per test session: a process of an earlier test that is still going away
never shares its port with a new one (gRPC servers bind with SO_REUSEPORT).
"""

from __future__ import annotations

import random
import socket

# A gRPC service also serves metrics on its port + BOOKSTORE_METRICS_PORT_OFFSET (1000),
# so a port is handed out only with that one free, and neither may be another's.
METRICS_OFFSET = 1000
_LOW, _HIGH = 20000, 31000  # port + offset below net.ipv4.ip_local_port_range (32768-60999)
_handed_out: set[int] = set()


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 and not handed out before, each with
    its metrics port (port + METRICS_OFFSET) free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(_LOW, _HIGH)
        metrics = port + METRICS_OFFSET
        if {port, metrics} & _handed_out or not (_bindable(port) and _bindable(metrics)):
            continue
        # the port below: its metrics port would be this one
        _handed_out.update((port - METRICS_OFFSET, port, metrics))
        ports.append(port)
    return ports
