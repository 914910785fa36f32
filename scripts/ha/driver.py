#!/usr/bin/env python3
"""Load and checks of the high-availability test. scripts/ha/run.sh starts the cluster, runs
this, and stops everything afterwards. Python standard library only.

  driver.py   this entry point: the arguments, and the run in order
  client.py   HTTP: the visage calls, Traefik's API, the S3 listing
  load.py     the steady verify and enrol load, and the ledger that counts it by phase
  phases.py   set-up, phases 1-6 and the final check (what each phase does: its docstring)
  report.py   the summary table and the verdict

Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

from phases import HaTest
from report import summary


def run(test: HaTest) -> bool:
    test.begin("0 set-up")
    try:
        test.setup()
    except RuntimeError as err:
        test.problems.append(str(err))
        return summary(test.ledger, test.traefik.cut_off(), test.features, test.problems)
    test.ledger.phases.clear()
    workers = test.load.workers()
    try:
        test.phase_baseline(workers)
        test.phase_kill()
        test.phase_sync()
        test.phase_redis()
        test.phase_pg()
        test.phase_recovered()
    except RuntimeError as err:
        test.problems.append(str(err))
    test.final_check(workers)
    return summary(test.ledger, test.traefik.cut_off(), test.features, test.problems)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="the test's temporary directory")
    parser.add_argument("--ctl", required=True, help="scripts/ha/run.sh (its --ctl actions)")
    parser.add_argument("--fixtures", required=True, help="tests/fixtures/lfw")
    parser.add_argument("--traefik", required=True, help="host:port of Traefik's entry point")
    parser.add_argument("--traefik-api", required=True, help="host:port of Traefik's API")
    parser.add_argument("--replica", action="append", required=True, help="host:port of a replica (x3)")
    parser.add_argument("--s3", required=True, help="host:port of the S3 server")
    parser.add_argument("--bucket", required=True)
    args = parser.parse_args()
    return 0 if run(HaTest(args)) else 1


if __name__ == "__main__":
    sys.exit(main())
