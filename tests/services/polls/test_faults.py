"""Exactness under faults, scaled for CI: 4,000 votes from 400 voters while RabbitMQ restarts and the
tally consumer (a separate process) is SIGKILLed. bench/polls_faults.py runs the full 20,000 / 2,000."""

from __future__ import annotations

import pytest

from tests.services.polls import fault_scenario

pytestmark = [pytest.mark.real, pytest.mark.slow]


async def test_tallies_exact_through_broker_restart_and_consumer_kill(postgres_url, mongo_url, amqp_url,
                                                                     tmp_path):
    report = await fault_scenario.run(tmp_path, voters=400)
    assert 0 < report.broker_restarted_at < report.consumer_killed_at < report.accepted, \
        "faults not mid-stream"
    assert report.accepted == 4000 + 80, report  # every first vote and every change; repeats refused
    assert dict(report.refused) == {"ALREADY_EXISTS": 80}, report
    assert report.mismatches == [], report.mismatches
