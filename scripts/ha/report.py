"""The summary of the high-availability test: a table with one row per phase, the failures,
503s and notes of each under it, and the verdict.
"""

from __future__ import annotations

import time

from client import T0
from load import Ledger


def summary(ledger: Ledger, cut_off_now: int, features: dict[str, str], problems: list[str]) -> bool:
    """Prints the summary; True when every check passed. `cut_off_now`: Traefik's count of
    cut-off requests at the end, which closes the last phase's count."""
    last = ledger.current
    last.ended = time.monotonic()
    last.cut_off = cut_off_now - ledger.cut_off_mark
    rows = []
    failed = bool(problems)
    for p in ledger.phases:
        fails = sum(p.failures.values())
        bad = fails > 0 or bool(p.problems) or p.lost > 0
        failed |= bad
        retries = p.cut_off
        rows.append([p.name, str(p.requests), str(fails), str(sum(p.s503.values())),
                     f"{p.lost}/{p.acked}" if p.name != "7 final check" else str(p.lost),
                     str(retries), p.time_note.strip().rstrip(";") or "-", "FAIL" if bad else "ok"])
    header = ["phase", "requests", "failures", "503s", "lost/acked", "retried 502s",
              "recovery / sync time", "result"]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = "+".join("-" * (w + 2) for w in widths)
    print("\nHA test summary. requests, failures, 503s: the load's requests through Traefik (the final check:"
          " its own, to each replica directly); lost/acked: acknowledged enrolments of the phase missing at"
          " the end; retried 502s: attempts Traefik saw cut off by a dying replica and retried elsewhere")
    print(line)
    print("|".join(f" {h:<{w}} " for h, w in zip(header, widths)))
    print(line)
    for row in rows:
        print("|".join(f" {c:<{w}} " for c, w in zip(row, widths)))
    print(line)
    for p in ledger.phases:
        for what, count in p.failures.most_common():
            print(f"  {p.name}: failure x{count}: {what}")
        for what, count in p.s503.most_common():
            print(f"  {p.name}: 503 x{count}: {what}")
        if p.deferred:
            print(f"  {p.name}: 409 idempotency_in_progress x{p.deferred} (the key was still reserved by an "
                  "attempt cut off with its replica; retried until the reservation expired)")
        if p.slowest_enrolment > 2:
            print(f"  {p.name}: slowest enrolment {p.slowest_enrolment:.1f} s from its first attempt to "
                  "its acknowledgement")
        for problem in p.problems:
            print(f"  {p.name}: FAIL: {problem}")
        for note in p.notes:
            print(f"  {p.name}: {note}")
    for feature, why in features.items():
        print(f"  feature {feature}: " + ("configured" if not why else f"not configured ({why})"))
    for problem in problems:
        print(f"  FAIL: {problem}")
    print(f"\nHA test {'FAILED' if failed else 'passed'} in {time.monotonic() - T0:.0f} s")
    return not failed
