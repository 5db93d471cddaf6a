"""The Kubernetes manifests and the compose file: rendered, schema-valid, and what the design asks.

Every overlay (and each with its opt-in components) is rendered with kustomize and every object
validated offline against the Kubernetes schemas (strict). Then the invariants: each domain in
services/kit/registry.py has a Deployment and a Service; every Deployment has probes on its port,
resources and a locked-down security context; the polls tally consumer runs apart (polls-tally)
and the polls pods do not run it too; no Secret value is committed anywhere.
Tools come from tools/install-test-tools.sh; a missing tool fails the test, it never skips.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.kit.config import Settings
from services.kit.health import LIVENESS
from services.kit.registry import DOMAINS, GATEWAY_PORT
from services.polls.handlers import READINESS, health_port
from tests.deployments.manifests import ROOT
from tests.deployments.manifests import validate_manifests as vm

TARGETS = list(vm.RENDER_TARGETS)
HOT = {"gateway", "polls", "auctions", "chat", "orders"}
TALLY = "polls-tally"  # the polls tally consumer, a Deployment of its own (no Service: nothing calls it)
DRAIN_SECONDS = 4  # AGORA_SHUTDOWN_GRACE in base/config.yaml


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {target: vm.render(target) for target in TARGETS}


def of_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def agora_deployments(objects: list[dict]) -> dict[str, dict]:
    return {
        name: d
        for name, d in of_kind(objects, "Deployment").items()
        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/part-of") == "agora"
    }


# ---------------------------------------------------------------- schemas ----
@pytest.mark.parametrize("target", TARGETS)
def test_every_object_is_valid_against_the_kubernetes_schemas(rendered, target: str) -> None:
    report = vm.validate_objects(rendered[target])
    assert not report.errors, "\n".join(report.errors)
    assert report.validated >= 50
    skipped_kinds = {s.split("/")[0] for s in report.skipped}
    assert skipped_kinds <= {kind for _, kind in vm.OPERATOR_KINDS | vm.MONITORING_KINDS}


def test_only_the_operator_overlay_skips_anything(rendered) -> None:
    assert not vm.validate_objects(rendered["prod"]).skipped
    skipped = vm.validate_objects(rendered["prod+operators+loadgen"]).skipped
    assert len(skipped) == len(vm.OPERATOR_KINDS), skipped


def test_the_validator_rejects_a_bad_object(rendered) -> None:
    # a negative control: the schema check really fails on an unknown field and an unknown kind
    deployment = yaml.safe_load(yaml.safe_dump(of_kind(rendered["dev"], "Deployment")["polls"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpcc"] = {"port": 1}
    unknown = {"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "x"}, "spec": {}}
    report = vm.validate_objects([deployment, unknown])
    assert len(report.errors) == 2, report.errors


# ----------------------------------------------------------- one per domain ----
@pytest.mark.parametrize("target", TARGETS)
def test_every_domain_has_a_deployment_and_a_service_on_its_port(rendered, target: str) -> None:
    deployments = of_kind(rendered[target], "Deployment")
    services = of_kind(rendered[target], "Service")
    for name, domain in DOMAINS.items():
        assert name in deployments, f"no Deployment {name}"
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == ["serve", name]
        assert [p["containerPort"] for p in container["ports"]] == [domain.port]
        assert name in services, f"no Service {name}"
        assert [p["port"] for p in services[name]["spec"]["ports"]] == [domain.port]
    assert "gateway" in deployments and "gateway" in services
    assert (
        of_kind(rendered[target], "Ingress")["agora"]["spec"]["rules"][0]["http"]["paths"][0]["backend"][
            "service"
        ]["name"]
        == "gateway"
    )


def test_one_image_for_every_role(rendered) -> None:
    images = {
        c["image"]
        for d in agora_deployments(rendered["prod+operators+loadgen"]).values()
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert len(images) == 1, images


# ------------------------------------------------------------------ probes ----
@pytest.mark.parametrize("target", TARGETS)
def test_domains_have_native_grpc_probes_on_their_port(rendered, target: str) -> None:
    deployments = of_kind(rendered[target], "Deployment")
    for name, domain in DOMAINS.items():
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == domain.port, f"{name} {probe}"
        assert container["readinessProbe"]["grpc"]["service"] == domain.service


@pytest.mark.parametrize("target", TARGETS)
def test_the_bridge_is_probed_over_http(rendered, target: str) -> None:
    container = of_kind(rendered[target], "Deployment")["gateway"]["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert container["ports"][0]["containerPort"] == GATEWAY_PORT
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/livez"


# ----------------------------------------------------- resources, security ----
@pytest.mark.parametrize("target", TARGETS)
def test_every_deployment_has_resources_and_a_locked_down_security_context(rendered, target: str) -> None:
    for name, d in of_kind(rendered[target], "Deployment").items():
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, name
        for c in pod["containers"]:
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
            assert "memory" in c["resources"]["limits"], name
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name


@pytest.mark.parametrize("target", TARGETS)
def test_writable_tmp_and_termination_longer_than_the_drain(rendered, target: str) -> None:
    for name, d in agora_deployments(rendered[target]).items():
        if name == "loadgen":
            continue
        pod = d["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], name
        lifecycle = pod["containers"][0].get("lifecycle")
        # a pod behind a Service pauses before stopping, so endpoints drop it first
        assert lifecycle or name == TALLY, f"{name}: no preStop pause"
        pre_stop = int(lifecycle["preStop"]["exec"]["command"][-1]) if lifecycle else 0
        assert pod["terminationGracePeriodSeconds"] > pre_stop + DRAIN_SECONDS, name
    config = of_kind(rendered[target], "ConfigMap")["agora-config"]["data"]
    assert float(config["AGORA_SHUTDOWN_GRACE"]) == DRAIN_SECONDS


# ------------------------------------------------------------------ scaling ----
@pytest.mark.parametrize("target", TARGETS)
def test_hpa_for_the_bridge_and_hot_services_and_a_pdb_for_everyone(rendered, target: str) -> None:
    objects = rendered[target]
    hpas = of_kind(objects, "HorizontalPodAutoscaler")
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()} == HOT
    deployments = of_kind(objects, "Deployment")
    for name in HOT:
        assert "replicas" not in deployments[name]["spec"], f"{name}: the HPA owns replicas"
    pdb_targets = {
        p["spec"]["selector"]["matchLabels"]["app"] for p in of_kind(objects, "PodDisruptionBudget").values()
    }
    assert set(DOMAINS) | {"gateway", TALLY} <= pdb_targets
    for name in set(DOMAINS) | {"gateway", TALLY}:
        spread = deployments[name]["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert {s["topologyKey"] for s in spread} >= {"kubernetes.io/hostname"}


# --------------------------------------------------------- network policies ----
def _ingress_open_to_all(policy: dict) -> bool:
    return any("from" not in rule for rule in policy["spec"].get("ingress", []))


@pytest.mark.parametrize("target", TARGETS)
def test_network_policies_only_the_bridge_is_reachable_from_outside(rendered, target: str) -> None:
    policies = of_kind(rendered[target], "NetworkPolicy")
    assert policies["default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    open_to_all = {n for n, p in policies.items() if _ingress_open_to_all(p)}
    assert open_to_all == {"gateway"}, open_to_all
    for name in DOMAINS:
        policy = policies[name]
        callers = {
            peer["podSelector"]["matchLabels"]["app"]
            for rule in policy["spec"]["ingress"]
            for peer in rule["from"]
        }
        expected = {"gateway"} | ({"orders"} if name in ("customers", "catalog") else set())
        assert callers == expected, (name, callers)
        callees = {
            peer["podSelector"]["matchLabels"]["app"]
            for rule in policy["spec"]["egress"]
            for peer in rule.get("to", [])
        }
        assert callees == ({"customers", "catalog"} if name == "orders" else set()), (name, callees)
        ports = {p["port"] for rule in policy["spec"]["egress"] if "to" not in rule for p in rule["ports"]}
        assert 5672 in ports and ports <= {5432, 27017, 9042, 5672}, (name, ports)
    tally = policies[TALLY]["spec"]
    assert tally["podSelector"]["matchLabels"] == {"app": TALLY}
    assert set(tally["policyTypes"]) == {"Ingress", "Egress"} and not tally.get("ingress"), \
        "nothing calls the tally"
    assert tally["egress"] == policies["polls"]["spec"]["egress"], "the tally reaches what polls reaches"


# ------------------------------------------------------- the tally apart ----
@pytest.mark.parametrize("target", TARGETS)
def test_the_tally_runs_apart_and_the_polls_pods_do_not_run_it_too(rendered, target: str) -> None:
    deployments = of_kind(rendered[target], "Deployment")
    assert TALLY in deployments
    tally, polls = (deployments[n]["spec"]["template"] for n in (TALLY, "polls"))
    container = tally["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "services.polls.handlers"] and "args" not in container
    assert container["image"] == polls["spec"]["containers"][0]["image"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    port = health_port(Settings.from_env({"AGORA_GRPC_PORT": env["AGORA_GRPC_PORT"]}))
    assert port == health_port(Settings.from_env({})), "the documented default port"
    assert [p["containerPort"] for p in container["ports"]] == [port]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == port, probe
    assert container["readinessProbe"]["grpc"]["service"] == READINESS
    assert container["livenessProbe"]["grpc"]["service"] == LIVENESS
    # the same settings, datastores, scrape annotations and datastore access as the domain pods
    assert tally["metadata"]["labels"]["app.kubernetes.io/component"] == "service"
    assert tally["metadata"].get("annotations") == polls["metadata"].get("annotations")
    assert container["envFrom"] == polls["spec"]["containers"][0]["envFrom"]
    polls_env = {e["name"]: e for e in polls["spec"]["containers"][0]["env"]}
    assert polls_env["AGORA_POLLS_TALLY_IN_PROCESS"]["value"] == "false"
    assert Settings.from_env({"AGORA_POLLS_TALLY_IN_PROCESS": "false"}).polls_tally_in_process is False
    assert {e["name"] for e in container.get("env", [])} >= {
        n for n in polls_env if n not in ("AGORA_GRPC_PORT", "AGORA_POLLS_TALLY_IN_PROCESS")}
    selectors = [s["spec"].get("selector", {}) for s in of_kind(rendered[target], "Service").values()]
    assert not [s for s in selectors if s.get("app") == TALLY], "nothing calls the tally: no Service"


# ------------------------------------------------------------------ secrets ----
def _repo_yaml_files() -> list[Path]:
    skip = {".venv", "node_modules", ".git", ".tox", "build"}
    return [
        p
        for pattern in ("*.yaml", "*.yml")
        for p in ROOT.rglob(pattern)
        if not skip & set(p.relative_to(ROOT).parts)
    ]


def test_no_secret_values_anywhere_in_git() -> None:
    offenders = []
    for path in _repo_yaml_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if (
                isinstance(doc, dict)
                and doc.get("kind") == "Secret"
                and (doc.get("data") or doc.get("stringData"))
            ):
                offenders.append(str(path.relative_to(ROOT)))
            if isinstance(doc, dict) and doc.get("kind") == "Kustomization" and doc.get("secretGenerator"):
                offenders.append(f"{path.relative_to(ROOT)} (secretGenerator)")
    assert not offenders, f"Secret values committed: {offenders}"


@pytest.mark.parametrize("target", TARGETS)
def test_rendered_manifests_reference_secrets_but_contain_none(rendered, target: str) -> None:
    assert not of_kind(rendered[target], "Secret")


# ------------------------------------------------------------------ compose ----
def test_compose_file_validates_offline() -> None:
    error = vm.validate_compose()
    assert not error, error


def test_compose_validation_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = yaml.safe_load(vm.COMPOSE_FILE.read_text())
    broken["services"]["polls"]["depends_on"]["postgres"]["condition"] = "service_sleeping"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    assert vm.validate_compose(path)


def test_compose_runs_every_domain_and_the_bridge_with_health_checks() -> None:
    services = yaml.safe_load(vm.COMPOSE_FILE.read_text())["services"]
    for store in ("postgres", "mongodb", "cassandra", "rabbitmq"):
        assert "healthcheck" in services[store], store
    for name, domain in DOMAINS.items():
        svc = services[name]
        assert svc["command"] == ["serve", name]
        assert str(domain.port) in " ".join(svc["healthcheck"]["test"])
        assert svc["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    images = {s["image"] for n, s in services.items() if n in DOMAINS or n == "gateway"}
    assert len(images) == 1
    assert all(c["condition"] == "service_healthy" for c in services["gateway"]["depends_on"].values())
    tally = services[TALLY]  # the tally apart, as on Kubernetes
    assert tally["entrypoint"] == ["python", "-m", "services.polls.handlers"] and tally["image"] in images
    port = tally["environment"]["AGORA_GRPC_PORT"]
    assert f"127.0.0.1:{port}" in " ".join(tally["healthcheck"]["test"]) \
        and f"'{READINESS}'" in tally["healthcheck"]["test"][-1]
    assert services["polls"]["environment"]["AGORA_POLLS_TALLY_IN_PROCESS"] == "false"
    assert {"postgres", "mongodb", "rabbitmq"} <= set(tally["depends_on"])


def test_validate_manifests_cli_passes() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "validate_manifests.py")],
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
