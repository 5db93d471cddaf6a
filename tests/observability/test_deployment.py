"""deployments/k8s/components/observability: rendered into both overlays, pods scrapeable and pointed
at the collector, a ServiceMonitor that matches what is there, a dashboard whose queries name only
metrics the mesh exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import services.kit.telemetry.metrics  # noqa: F401 - registers the mesh's instruments
from services.kit.config import METRICS_PORT
from services.kit.registry import DOMAINS
from tests.deployments.manifests import ROOT
from tests.deployments.manifests import validate_manifests as vm

DASHBOARD = ROOT / "deployments" / "k8s" / "components" / "observability" / "dashboards" / "agora.json"


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {target: vm.render(target) for target in ("dev", "prod", "dev+service-monitor")}


def of_kind(objects, kind):
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_every_pod_is_scraped_and_sends_spans_to_the_collector(rendered, target):
    objects = rendered[target]
    config = of_kind(objects, "ConfigMap")["agora-config"]["data"]
    assert config["AGORA_METRICS_PORT"] == str(METRICS_PORT)
    assert config["AGORA_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    collector = of_kind(objects, "Service")["otel-collector"]
    assert 4318 in {p["port"] for p in collector["spec"]["ports"]}
    assert "otel-collector" in of_kind(objects, "Deployment")
    deployments = of_kind(objects, "Deployment")
    for name in [*DOMAINS, "gateway"]:
        annotations = deployments[name]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == ("8080" if name == "gateway" else str(METRICS_PORT)), name
        assert annotations["prometheus.io/path"] == "/metrics"
    policy = of_kind(objects, "NetworkPolicy")["agora-telemetry"]["spec"]
    assert {p["port"] for rule in policy["ingress"] for p in rule["ports"]} == {METRICS_PORT, 8080}
    assert ([peer["podSelector"]["matchLabels"] for peer in policy["egress"][0]["to"]]
            == [{"app": "otel-collector"}])
    dashboard = of_kind(objects, "ConfigMap")["agora-grafana-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["agora.json"])["uid"] == "agora-golden-signals"


def test_the_service_monitor_selects_a_service_with_the_metrics_port(rendered):
    objects = rendered["dev+service-monitor"]
    monitors = of_kind(objects, "ServiceMonitor")
    services = of_kind(objects, "Service")
    metrics = services["agora-metrics"]
    selector = monitors["agora"]["spec"]["selector"]["matchExpressions"][0]
    assert metrics["metadata"]["labels"][selector["key"]] in selector["values"]
    assert {p["name"]: p["port"] for p in metrics["spec"]["ports"]} == {"metrics": METRICS_PORT}
    assert metrics["spec"]["selector"] == {"app.kubernetes.io/component": "service"}
    pods = [d for d in of_kind(objects, "Deployment").values()
            if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "service"]
    # every domain's pods, and the polls tally consumer's, which runs apart (polls-tally.yaml)
    assert {d["metadata"]["name"] for d in pods} == set(DOMAINS) | {"polls-tally"}
    gateway = monitors["agora-gateway"]["spec"]
    assert gateway["endpoints"][0]["port"] in {p["name"] for p in services["gateway"]["spec"]["ports"]}


def _exported_names() -> set[str]:
    names = set()
    for collector in list(REGISTRY._collector_to_names):  # noqa: SLF001 - the registry's own index
        names |= set(REGISTRY._collector_to_names[collector])  # noqa: SLF001
    return names


def test_the_dashboard_shows_golden_signals_from_metrics_that_exist():
    dashboard = json.loads(Path(DASHBOARD).read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    referenced = {m for e in exprs for m in re.findall(r"\b((?:agora|process)_[a-z_]+)", e)}
    missing = referenced - _exported_names()
    assert not missing, f"the dashboard queries metrics nobody exports: {missing}"
    titles = " | ".join(p["title"] for p in dashboard["panels"])
    for signal in ("Traffic", "Errors", "Latency", "Saturation", "bus", "lag", "dead letters", "Store",
                   "Bridge"):
        assert signal.lower() in titles.lower(), signal
    assert any("by service" in p["title"] for p in dashboard["panels"])
