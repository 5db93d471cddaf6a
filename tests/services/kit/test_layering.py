"""The kit is a library: it imports no gateway, no domain and not the composition root (services.mesh)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import services.kit
from services.kit.registry import DOMAINS
from tests.layering import offending

KIT = Path(services.kit.__file__).parent
REPO = KIT.parents[1]
FORBIDDEN = ("gateway", "services.mesh", *(d.module for d in DOMAINS.values()))


def kit_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages([str(KIT)], prefix="services.kit."))


def test_the_kit_source_imports_no_gateway_domain_or_composition_root():
    assert offending(KIT, FORBIDDEN) == []


def test_importing_every_kit_module_loads_no_gateway_domain_or_composition_root():
    modules = kit_modules()
    assert {"services.kit.config", "services.kit.server", "services.kit.bus.rabbitmq"} <= set(modules)
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout)
    assert [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)] == []
