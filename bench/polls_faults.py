"""The full-size fault run behind tests/services/polls/test_faults.py: 20,000 votes from 2,000 voters
(plus 400 changed votes and 400 refused repeats) while RabbitMQ restarts (`rabbitmqctl stop_app` /
`start_app`) and the tally consumer process is SIGKILLed and restarted; then every poll closes and
its final tallies (MongoDB live, PostgreSQL consolidated) must equal the accepted votes exactly.

    .venv/bin/python bench/polls_faults.py [--voters 2000] [--seconds 30]

It prints one line for the "Live polls" section of bench/RESULTS.md (copied there by hand).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.services.polls import fault_scenario  # noqa: E402 - after the path is set

MARK = "Exactness under faults (bench/polls_faults.py)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voters", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = asyncio.run(fault_scenario.run(Path(tmp), voters=args.voters, seconds=args.seconds,
                                                settle_timeout=300))
    votes = args.voters * 10
    ok = not report.mismatches and report.accepted == votes + args.voters // 5
    line = (f"- {MARK}: `.venv/bin/python bench/polls_faults.py --voters {args.voters} "
            f"--seconds {args.seconds:g}` "
            f"({time.strftime('%Y-%m-%d')}): {report.accepted:,} votes accepted ({votes:,} first votes from "
            f"{args.voters:,} voters + {args.voters // 5:,} changes; refused {dict(report.refused)}); broker "
            f"restarted at vote {report.broker_restarted_at:,}, consumer SIGKILLed at vote "
            f"{report.consumer_killed_at:,}; final tallies == accepted votes in all 10 polls: "
            f"{'yes' if ok else 'NO: ' + '; '.join(report.mismatches)} ({report.seconds:.0f} s)")
    print(line)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
