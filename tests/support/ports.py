"""Ports for the processes the tests start on 127.0.0.1.

Binding port 0 and closing the socket hands out an ephemeral port, which any
outgoing connection may take as its local port before the service binds it. So
ports come from below Linux's ephemeral range instead, and a port is handed out
once per test session: a process of an earlier test that is still going away
never shares its port with a new one (gRPC servers bind with SO_REUSEPORT).

Under pytest-xdist each worker is a process of its own that cannot see what the
others handed out, so the range is cut into blocks of METRICS_OFFSET ports, paired
(services in one, their metrics ports in the next), and each worker draws only from
its own pairs: two workers never hand out the same port, nor one's metrics port.
"""

from __future__ import annotations

import os
import random
import socket

# A gRPC service also serves metrics on its port + BOOKSTORE_METRICS_PORT_OFFSET (1000),
# so a port is handed out only with that one free, and neither may be another's.
METRICS_OFFSET = 1000
_LOW, _HIGH = 12000, 32000  # port + offset below net.ipv4.ip_local_port_range (32768-60999)
_PAIRS = (_HIGH - _LOW) // (2 * METRICS_OFFSET)  # 10 pairs of blocks
_handed_out: set[int] = set()


def _own_blocks() -> list[int]:
    """The first ports of this process's service blocks (every block without xdist)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker[2:]) if worker.startswith("gw") else 0
    if count > _PAIRS:
        raise RuntimeError(f"ports: at most {_PAIRS} workers get ports of their own")
    pairs = [p for p in range(_PAIRS) if p % count == index]
    return [_LOW + 2 * p * METRICS_OFFSET for p in pairs]


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
    blocks = _own_blocks()
    while len(ports) < count:
        port = random.choice(blocks) + random.randrange(METRICS_OFFSET)
        metrics = port + METRICS_OFFSET
        if {port, metrics} & _handed_out or not (_bindable(port) and _bindable(metrics)):
            continue
        _handed_out.update((port, metrics))
        ports.append(port)
    return ports
