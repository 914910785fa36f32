#!/usr/bin/env python3
"""Print the median of every criterion benchmark of a saved run (target/criterion/*/*/BASELINE).

usage: bench/medians.py [BASELINE]   (default: new, criterion's latest run)
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main():
    baseline = sys.argv[1] if len(sys.argv) > 1 else "new"
    rows = []
    for estimates in sorted((ROOT / "target/criterion").glob(f"*/*/{baseline}/estimates.json")):
        bench = estimates.parent.parent
        median = json.loads(estimates.read_text())["median"]["point_estimate"]
        rows.append((f"{bench.parent.name}/{bench.name}", median / 1e6))
    if not rows:
        raise SystemExit(f"no criterion results for baseline {baseline!r}: run cargo bench first")
    width = max(len(name) for name, _ in rows)
    print(f"{'benchmark'.ljust(width)}  median ms")
    for name, ms in rows:
        print(f"{name.ljust(width)}  {ms:9.3f}")


if __name__ == "__main__":
    main()
