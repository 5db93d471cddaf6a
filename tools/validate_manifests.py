"""Render every Kubernetes overlay with kustomize and validate each object offline; check compose.

    python tools/validate_manifests.py            # exit 1 on any error

Schemas come from the `kubernetes-validate` package (strict: unknown fields are errors), so no
cluster is needed. Custom resources of the operators we reference have no core schema: they are
skipped by name in OPERATOR_KINDS, and reported; any other kind without a schema is an error.
Tools come from tools/install-test-tools.sh.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deployments" / "k8s"
COMPOSE_FILE = ROOT / "deployments" / "compose" / "docker-compose.yml"
TOOLS_BIN = Path(os.environ.get("AGORA_TOOLS", "/opt/agora-tools")) / "bin"
KUBERNETES_VERSION = os.environ.get("AGORA_K8S_VERSION", "1.30.0")

# What gets rendered: each overlay as committed, and each with the opt-in components switched on.
RENDER_TARGETS: dict[str, tuple[str, list[str]]] = {
    "dev": ("overlays/dev", []),
    "prod": ("overlays/prod", []),
    "dev+loadgen": ("overlays/dev", ["components/loadgen"]),
    "prod+operators+loadgen": ("overlays/prod", ["components/operators", "components/loadgen"]),
    "dev+service-monitor": ("overlays/dev", ["components/observability/service-monitor"]),
}

# Operator custom resources: referenced, not re-implemented; their CRDs are not core schemas.
OPERATOR_KINDS = {
    ("postgresql.cnpg.io/v1", "Cluster"),  # CloudNativePG
    ("mongodbcommunity.mongodb.com/v1", "MongoDBCommunity"),  # MongoDB Community Operator
    ("k8ssandra.io/v1alpha1", "K8ssandraCluster"),  # K8ssandra
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"),  # RabbitMQ Cluster Operator
}
# The Prometheus Operator's scrape configuration (components/observability/service-monitor).
MONITORING_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}


def kustomize_command() -> list[str]:
    """The pinned kustomize from tools/install-test-tools.sh, else one on PATH, else kubectl's."""
    if os.environ.get("AGORA_KUSTOMIZE"):
        return [os.environ["AGORA_KUSTOMIZE"], "build"]
    for candidate in (TOOLS_BIN / "kustomize", shutil.which("kustomize")):
        if candidate and Path(candidate).exists():
            return [str(candidate), "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    raise FileNotFoundError("no kustomize renderer: run tools/install-test-tools.sh")


def render(target: str) -> list[dict]:
    """kustomize build of a named RENDER_TARGETS entry; returns the objects."""
    overlay, components = RENDER_TARGETS[target]
    with tempfile.TemporaryDirectory(prefix="agora-render-") as tmp:
        if components:
            path = _overlay_with_components(Path(tmp), K8S / overlay, [K8S / c for c in components])
            extra = ["--load-restrictor", "LoadRestrictionsNone"]
        else:
            path, extra = K8S / overlay, []
        out = subprocess.run(
            [*kustomize_command(), *extra, str(path)],
            capture_output=True,
            check=False,
            text=True,
            timeout=120,
        )
    if out.returncode != 0:
        raise RuntimeError(f"kustomize build {target} failed:\n{out.stderr}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def _overlay_with_components(tmp: Path, overlay: Path, components: list[Path]) -> Path:
    """A copy of `overlay`'s kustomization with more components: what uncommenting them does."""
    k = yaml.safe_load((overlay / "kustomization.yaml").read_text())

    def rel(p: str) -> str:
        return os.path.relpath(overlay / p, tmp)

    k["resources"] = [rel(r) for r in k.get("resources", [])]
    k["components"] = [rel(c) for c in k.get("components", [])] + [
        os.path.relpath(c, tmp) for c in components
    ]
    for patch in k.get("patches", []):
        if "path" in patch:
            patch["path"] = rel(patch["path"])
    (tmp / "kustomization.yaml").write_text(yaml.safe_dump(k))
    return tmp


@dataclass
class Report:
    validated: int = 0
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def validate_objects(objects: list[dict], version: str = KUBERNETES_VERSION) -> Report:
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    report = Report()
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if (obj.get("apiVersion"), obj.get("kind")) in OPERATOR_KINDS | MONITORING_KINDS:
            if not obj.get("metadata", {}).get("name") or not isinstance(obj.get("spec"), dict):
                report.errors.append(f"{name}: an operator resource needs metadata.name and a spec")
            report.skipped.append(f"{name} ({obj['apiVersion']}: operator CRD, no core schema)")
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            report.validated += 1
        except ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            report.errors.append(f"{name}: {path}: {e.message}")
        except SchemaNotFoundError as e:
            report.errors.append(f"{name}: {e.message} (an unknown kind is an error, not a skip)")
    return report


def compose_command() -> list[str]:
    for candidate in (shutil.which("docker-compose"),):
        if candidate:
            return [candidate]
    raise FileNotFoundError("no docker-compose: run tools/install-test-tools.sh (apt docker-compose)")


def validate_compose(path: Path = COMPOSE_FILE) -> str:
    """`docker-compose config` (no engine needed); returns the error text, '' when valid."""
    out = subprocess.run(
        [*compose_command(), "--file", str(path), "--project-directory", str(ROOT), "config", "--quiet"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent"},
    )
    return "" if out.returncode == 0 else (out.stderr or out.stdout or f"exit {out.returncode}")


def main() -> int:
    failed = False
    for target in RENDER_TARGETS:
        try:
            objects = render(target)
        except (RuntimeError, FileNotFoundError) as e:
            print(f"FAIL {target}: {e}")
            failed = True
            continue
        report = validate_objects(objects)
        for skipped in report.skipped:
            print(f"SKIP {target}: {skipped}")
        for error in report.errors:
            print(f"FAIL {target}: {error}")
        failed |= bool(report.errors)
        print(
            f"{'ok  ' if not report.errors else 'FAIL'} {target}: {report.validated} objects valid "
            f"against Kubernetes {KUBERNETES_VERSION}, {len(report.skipped)} operator resources skipped"
        )
    try:
        error = validate_compose()
    except FileNotFoundError as e:
        error = str(e)
    print(f"{'ok  ' if not error else 'FAIL'} compose: {error.strip() or COMPOSE_FILE.relative_to(ROOT)}")
    return 1 if failed or error else 0


if __name__ == "__main__":
    sys.exit(main())
