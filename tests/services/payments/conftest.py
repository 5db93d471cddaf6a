"""The pipeline (every commerce domain + payments + notifications + identity + bridge + SMTP), once per
module, on embedded and on real backends."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", params=["embedded", "real"])
async def pipeline(request, tmp_path_factory):
    from tests.services.orders import commerce as harness
    from tests.services.payments import pipeline as harness_pipeline

    patcher = pytest.MonkeyPatch()
    run_id = harness.new_run_id()
    harness.unique_names(patcher.setattr, run_id)
    if request.param == "real":
        from tests.realservers import require

        for server in ("postgres", "mongodb", "cassandra", "rabbitmq"):
            require(server)
    p = await harness_pipeline.start(request.param, tmp_path_factory.mktemp("pipeline"), run_id)
    try:
        yield p
    finally:
        await harness_pipeline.stop(p)
        patcher.undo()
