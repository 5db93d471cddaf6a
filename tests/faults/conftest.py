"""The fault mesh (separate processes, real servers, names unique to the run) and the fault/invariant
table."""

from __future__ import annotations

import pytest

from tests.realservers import require

RESULTS: list[tuple[str, str, str, str]] = []  # fault, workload, invariant, outcome


@pytest.fixture(scope="session")
def fault_mesh(tmp_path_factory):
    for kind in ("postgres", "rabbitmq", "mongodb", "cassandra"):
        require(kind)
    from tests.faults.harness import FaultMesh

    mesh = FaultMesh(tmp_path_factory.mktemp("faultmesh"))
    try:
        mesh.start()
        yield mesh
    finally:
        mesh.close()


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    terminalreporter.section("fault / invariant")
    for fault, workload, invariant, outcome in RESULTS:
        terminalreporter.write_line(f"{fault:<20} {workload:<8} {invariant:<52} {outcome}")
