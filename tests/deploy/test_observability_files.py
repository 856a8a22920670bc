"""deploy/observability: the Prometheus configuration, the Grafana dashboard and
provisioning, the Compose profile and the Kubernetes scrape annotations, checked
offline (promtool from Debian's `prometheus` package; missing, the tests fail)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

from bookstore.settings import from_env
from bookstore.telemetry import metrics
from bookstore.telemetry.metrics import metrics_target

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "deploy" / "observability"
PROMETHEUS_YML = OBSERVABILITY / "prometheus.yml"
DASHBOARD = OBSERVABILITY / "grafana" / "dashboards" / "bookstore.json"
PROVISIONING = OBSERVABILITY / "grafana" / "provisioning"
PROFILE = ("prometheus", "grafana", "jaeger")


def _promtool(promtool: str, *args: str, stdin: bytes = b"") -> str:
    result = subprocess.run(
        [promtool, *args], input=stdin, capture_output=True, timeout=60, check=False
    )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, output
    return output


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    return queries


def _scrape_targets() -> dict[str, tuple[str, set[str]]]:
    """job -> (metrics path, targets) from prometheus.yml."""
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    return {
        job["job_name"]: (
            job.get("metrics_path", "/metrics"),
            {t for c in job["static_configs"] for t in c["targets"]},
        )
        for job in config["scrape_configs"]
    }


def test_promtool_accepts_the_prometheus_configuration(promtool: str) -> None:
    assert "SUCCESS" in _promtool(promtool, "check", "config", str(PROMETHEUS_YML))


def test_the_metrics_exposition_passes_promtools_lint(promtool: str) -> None:
    _promtool(promtool, "check", "metrics", stdin=metrics.exposition())


def test_every_dashboard_query_parses(promtool: str, tmp_path: Path) -> None:
    queries = _dashboard_queries()
    assert len(queries) >= 20
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"bookstore:dashboard_query_{i}", "expr": query}
                    for i, query in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    assert f"SUCCESS: {len(queries)} rules found" in _promtool(
        promtool, "check", "rules", str(path)
    )


def test_a_broken_query_is_caught(promtool: str, tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    rule = {"record": "bookstore:broken", "expr": "sum(rate(bookstore_checkouts_total[1m])"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [rule]}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, timeout=60, check=False
    )
    assert result.returncode != 0


def test_dashboard_queries_use_only_metrics_the_services_define() -> None:
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    defined = {
        f"{wrapper._name}{suffix}"
        for wrapper in vars(metrics).values()
        if isinstance(wrapper, MetricWrapperBase)
        for suffix in suffixes[wrapper._type]
    }
    used = {name for query in _dashboard_queries() for name in re.findall(r"bookstore_\w+", query)}
    assert used, "the dashboard queries no bookstore metric"
    assert used <= defined, sorted(used - defined)


def test_the_dashboard_covers_red_queue_elections_and_ai() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Checkouts (orchestrator)", "RED per service", "Queue", "Elections", "AI"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    text = " ".join(_dashboard_queries())
    for metric in (
        "bookstore_http_requests_total",
        "bookstore_grpc_server_handled_total",
        "bookstore_queue_depth",
        "bookstore_elections_total",
        "bookstore_ai_fallbacks_total",
    ):
        assert metric in text, metric


def test_prometheus_scrapes_every_compose_service_on_its_metrics_port(
    compose_config: dict[str, Any],
) -> None:
    jobs = _scrape_targets()
    for name, service in compose_config["services"].items():
        settings = from_env(service["environment"])
        runs = service["command"][2]
        replicated = ("order-executor", "books-database")
        replica = int(name.rsplit("-", 1)[1]) if runs in replicated else None
        if runs == "orchestrator":
            expected = settings.orchestrator_address
        else:
            expected = metrics_target(settings, runs, replica) or ""
        path, targets = jobs[runs]
        assert expected in targets, (name, expected)
        assert path == "/metrics"


def test_the_observability_profile_runs_prometheus_grafana_and_jaeger(
    compose_rendered: dict[str, Any],
) -> None:
    services = compose_rendered["services"]
    for name in PROFILE:
        assert services[name]["profiles"] == ["observability"], name
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    mounts = set()
    for name in PROFILE:
        for volume in services[name].get("volumes", []):
            if isinstance(volume, str):
                source, target = volume.split(":")[:2]
            else:
                source, target = volume["source"], volume["target"]
            mounts.add((Path(source).resolve(), target))
    assert (PROMETHEUS_YML, "/etc/prometheus/prometheus.yml") in mounts
    assert (PROVISIONING, "/etc/grafana/provisioning") in mounts
    assert (DASHBOARD.parent, "/var/lib/grafana/dashboards") in mounts
    for source, _ in mounts:
        assert source.exists(), source


def test_the_bookstore_services_pass_on_the_otlp_endpoint(
    compose_config: dict[str, Any],
) -> None:
    for name, service in compose_config["services"].items():
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" in service["environment"], name


def test_grafana_provisioning_matches_the_dashboard() -> None:
    sources = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yml").read_text())
    uids = {s["uid"]: s for s in sources["datasources"]}
    assert uids["prometheus"]["url"] == "http://prometheus:9090"
    assert uids["jaeger"]["type"] == "jaeger"
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads(DASHBOARD.read_text())
    used = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    assert used == {"prometheus"}


def test_every_kubernetes_workload_has_scrape_annotations(
    k8s_objects: list[dict[str, Any]],
) -> None:
    (config_map,) = [o for o in k8s_objects if o["kind"] == "ConfigMap"]
    settings = from_env(config_map["data"])
    for workload in (o for o in k8s_objects if o["kind"] in ("Deployment", "StatefulSet")):
        name = workload["metadata"]["name"]
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        if name == "orchestrator":
            port = settings.orchestrator_address.rsplit(":", 1)[1]
        else:
            replica = 1 if name in ("order-executor", "books-database") else None
            port = (metrics_target(settings, name, replica) or "").rsplit(":", 1)[1]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": port,
            "prometheus.io/path": "/metrics",
        }, name
