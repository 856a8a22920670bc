"""compose.yaml and deploy/base, run as configured across lab hosts (needs root).

Each file's services run with the file's own commands and environment, one
host per container or pod, every host resolving the names the file uses. The
file's own health checks must pass, the executors must elect the highest id,
and an order must go through end to end. So a wrong host name, port, variable
or command in a file fails here, not first on a user's cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from netlab import close_lab, open_lab
from netns_cluster import Cluster, order_body
from netns_deployed import Unit, compose_units, kubernetes_units, probe_passes, start

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

WAYS: dict[str, Callable[[], list[Unit]]] = {
    "compose": compose_units,
    "kubernetes": kubernetes_units,
}


@pytest.mark.parametrize("way", sorted(WAYS))
def test_the_deployment_files_run_the_bookstore_across_hosts(way: str, tmp_path: Path) -> None:
    units = WAYS[way]()
    lab = open_lab(tmp_path)
    cluster = Cluster(lab, tmp_path / "data")
    try:
        start(cluster, units)

        def failing() -> list[str]:
            return [
                f"{unit.name} {kind} {what}"
                for unit in units
                for kind, what in unit.probes
                if not probe_passes(cluster, unit, kind, what)
            ]

        cluster.wait_none_failing("every health check passing", failing, 90)
        cluster.wait_for_leader(4, (1, 2, 3), timeout=30)
        reply = cluster.call("checkout", timeout=30, body=order_body(0), timeout_s=25)
        body = reply["body"]
        assert reply["status"] == 200 and body["status"] == "Order Approved", reply
        assert body["execution"]["state"] == "executed"
        assert body["execution"]["executor"] == 4
    finally:
        try:
            cluster.close()
        finally:
            close_lab(lab)
