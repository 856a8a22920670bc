"""Run the deployment files' own configuration on lab hosts.

compose.yaml (as `docker-compose config` resolves it) and deploy/base (as
`kubectl kustomize` renders it) are turned into units: one process per
container, with the command and the environment the file gives it. Each unit
runs on its own lab host, and every host resolves the names the files use
(Compose service names; Kubernetes Service and pod DNS names) to the right
host, as the container network's DNS would. Only BOOKSTORE_DATA_DIR (a path
inside the container) becomes a temporary folder, and `bookstore` the
package's own script. The health checks are the files' own: the Compose
healthcheck command run inside the unit's host, the Kubernetes probes asked
over the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from netlab import Host
from netns_cluster import Cluster

from bookstore.settings import from_env, split_address

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the package's `bookstore` script lives here
HEALTHCHECK = [sys.executable, "-m", "bookstore.healthcheck"]


@dataclass
class Unit:
    name: str  # the Compose service or the pod
    dns: list[str]  # names that resolve to its host
    argv: list[str]
    env: dict[str, str]
    probes: list[tuple[str, Any]] = field(default_factory=list)  # (kind, what)
    host: Host | None = None


def _tool_output(args: list[str]) -> str:
    tool = shutil.which(args[0])
    if tool is None:
        pytest.fail(f"{args[0]} is not installed: run scripts/install --dev")
    env = {**os.environ, "GEMINI_API_KEY": "", "BOOKSTORE_LOG_LEVEL": ""}
    result = subprocess.run(
        [tool, *args[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args)}: {result.stderr}")
    return result.stdout


def _local(argv: list[str]) -> list[str]:
    """The container's command with this checkout's `bookstore` script."""
    if argv and argv[0] == "bookstore":
        return [str(BIN / "bookstore"), *argv[1:]]
    return list(argv)


def compose_units() -> list[Unit]:
    config = yaml.safe_load(_tool_output(["docker-compose", "-f", "compose.yaml", "config"]))
    units = []
    for name, service in config["services"].items():
        if service.get("profiles"):
            continue  # an optional profile's tool (observability), not a bookstore service
        if service["command"][:2] == ["bookstore", "certs"]:
            continue  # the one-shot that makes the certificates: `start` makes them
        test = [str(part) for part in service["healthcheck"]["test"]]
        assert test[:2] == ["CMD", "bookstore-healthcheck"], test
        units.append(
            Unit(
                name=name,
                dns=[name],
                argv=_local([str(part) for part in service["command"]]),
                env={k: str(v) for k, v in service["environment"].items()},
                probes=[("command", [*HEALTHCHECK, *test[2:]])],
            )
        )
    return units


def _pods(workload: dict[str, Any]) -> list[str]:
    name = workload["metadata"]["name"]
    if workload["kind"] == "StatefulSet":
        return [f"{name}-{n}" for n in range(int(workload["spec"]["replicas"]))]
    return [f"{name}-pod"]


def kubernetes_units() -> list[Unit]:
    objects = [o for o in yaml.safe_load_all(_tool_output(["kubectl", "kustomize", "deploy/base"]))]
    config_maps = {
        o["metadata"]["name"]: o["data"] for o in objects if o and o["kind"] == "ConfigMap"
    }
    services = [o for o in objects if o and o["kind"] == "Service"]
    units = []
    for workload in (o for o in objects if o and o["kind"] in ("Deployment", "StatefulSet")):
        pod = workload["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            env.update(config_maps[source["configMapRef"]["name"]])
        env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
        ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
        selecting = [
            s
            for s in services
            if s["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        ]
        pods = _pods(workload)
        for pod_name in pods:
            dns = [pod_name]
            for service in selecting:
                if workload["kind"] == "StatefulSet":
                    dns.append(f"{pod_name}.{service['metadata']['name']}")
                if len(pods) == 1:
                    dns.append(service["metadata"]["name"])
            probes: list[tuple[str, Any]] = []
            for kind in ("readinessProbe", "livenessProbe"):
                probe = container[kind]
                if "exec" in probe:
                    # bookstore-healthcheck reads the service from PID 1's command
                    # line in a pod; here it is told the same service and replica.
                    assert probe["exec"]["command"] == ["bookstore-healthcheck"]
                    target = [workload["metadata"]["name"]]
                    if target[0] in ("order-executor", "books-database"):  # id = ordinal + 1
                        target += ["--replica-id", str(int(pod_name.rsplit("-", 1)[1]) + 1)]
                    probes.append(("command", [*HEALTHCHECK, *target]))
                elif "grpc" in probe:
                    probes.append(("grpc", f"{dns[-1]}:{probe['grpc']['port']}"))
                else:
                    port = probe["httpGet"]["port"]
                    port = ports.get(port, port)
                    probes.append(("http", f"http://{dns[-1]}:{port}{probe['httpGet']['path']}"))
            units.append(
                Unit(
                    name=pod_name,
                    dns=dns,
                    argv=_local(list(container["command"]) + list(container.get("args", []))),
                    env={**env, "HOSTNAME": pod_name},
                    probes=probes,
                )
            )
    return units


def start(cluster: Cluster, units: list[Unit]) -> None:
    """One host per unit plus the client; names resolved; every unit and the agent started."""
    cluster.hosts["client"] = cluster.lab.add_host("client")
    for n, unit in enumerate(units):
        unit.host = cluster.hosts[unit.name] = cluster.lab.add_host(f"h{n}")
    cluster.lab.resolve({name: u.host.address for u in units if u.host for name in u.dns})
    # The certificates the volume or Secret would hold, for the file's own addresses.
    tls_dir = cluster.make_certs(units[0].env)
    for unit in units:
        assert unit.host is not None
        data = cluster.data_dir(unit.name)
        env = {
            **unit.env,
            "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(data),
            "PYTHONUNBUFFERED": "1",
            "BOOKSTORE_DATA_DIR": str(data),  # in a container: its volume's mount path
            "BOOKSTORE_TLS_DIR": str(tls_dir),  # in a container: the volume or Secret
        }
        unit.env = env
        cluster.launch(unit.host, unit.name, unit.argv, env)
    settings = from_env(units[0].env)
    cluster.start_agent(
        {
            "orchestrator": settings.orchestrator_address,
            "queue": settings.order_queue_address,
            "executors": {str(i): a for i, a in settings.order_executor_addresses.items()},
            "http_health": True,
            "tls_dir": str(tls_dir),
            "grpc": {
                name: settings.address_of(name)
                for name in ("transaction-verification", "fraud-detection", "suggestions")
            },
        }
    )
    for unit in units:
        for name in unit.dns:
            assert split_address(f"{name}:1", name)[0] == name


def probe_passes(cluster: Cluster, unit: Unit, kind: str, what: Any) -> bool:
    """One of the file's own health checks of the unit."""
    if kind == "command":
        assert unit.host is not None
        return cluster.lab.run_in(unit.host, what, unit.env).returncode == 0
    if kind == "grpc":
        return bool(cluster.call("grpc_health", target=what))
    return bool(cluster.call("http_get", url=what) == 200)
