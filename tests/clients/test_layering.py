"""The client distribution never imports server code: the server's commands reach `agora` through
entry points (clients/python/agora/cli.py), and the domain list lives in the client."""

from __future__ import annotations

from tests.clients.conftest import ROOT
from tests.layering import offending


def test_the_client_source_imports_no_services_and_no_gateway():
    assert offending(ROOT / "clients" / "python", ("services", "gateway")) == []


def test_the_check_sees_imports_inside_functions(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text("def f():\n    from services.kit import config\n"
                                  "    import importlib\n    importlib.import_module('gateway.app')\n")
    found = offending(package, ("services", "gateway"))
    assert found == ["pkg/m.py:2 services.kit", "pkg/m.py:4 gateway.app"]
