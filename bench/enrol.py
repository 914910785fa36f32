#!/usr/bin/env python3
"""Enrolment against a running `visage serve`, driven by bench/enrol.sh and bench/reembed.sh.

  enrol.py latency URL KEY DIR [ROUNDS]  median time of one enrolment request holding
                                         1, 4 and 8 portraits, one request at a time
  enrol.py fill URL KEY DIR COUNT        enrols COUNT portraits, one subject each, 4 at a time

DIR holds one folder per person (lfw-dev). A portrait that does not enrol alone (no face,
two faces, too small) is skipped, so every request measured is one the service accepts.
"""

import base64
import concurrent.futures
import json
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def call(url, key, path, body):
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused)


def portraits(directory):
    """Every image of DIR, one person after another, in a fixed order."""
    return sorted(p for p in Path(directory).glob("*/*.jpg"))


def new_subject(url, key, name):
    status, body = call(url, key, "/v1/subjects", {
        "external_id": name,
        "consent": {"given_by": "bench", "purpose": "benchmark"},
    })
    assert status == 201, body
    return body["id"]


def enrol(url, key, subject, images):
    encoded = [base64.b64encode(p.read_bytes()).decode() for p in images]
    return call(url, key, f"/v1/subjects/{subject}/faces", {"images": encoded})


def enrolable(url, key, candidates, wanted):
    """The first `wanted` portraits that enrol alone."""
    scratch = new_subject(url, key, "bench-scratch")
    good = []
    for path in candidates:
        if enrol(url, key, scratch, [path])[0] == 201:
            good.append(path)
            if len(good) == wanted:
                return good
    sys.exit(f"enrol: only {len(good)} of {wanted} portraits enrol")


def latency(url, key, directory, rounds):
    sizes = (1, 4, 8)
    good = enrolable(url, key, portraits(directory), rounds * max(sizes))
    for size in sizes:
        seconds = []
        for round_ in range(rounds):
            subject = new_subject(url, key, f"bench-{size}-{round_}")
            images = good[round_ * size:(round_ + 1) * size]
            started = time.perf_counter()
            status, body = enrol(url, key, subject, images)
            seconds.append(time.perf_counter() - started)
            assert status == 201, body
        median = statistics.median(seconds) * 1000
        print(json.dumps({
            "images_per_request": size,
            "requests": rounds,
            "median_ms": round(median, 1),
            "median_ms_per_image": round(median / size, 2),
            "max_ms": round(max(seconds) * 1000, 1),
        }))


def fill(url, key, directory, count):
    candidates = portraits(directory)

    def one(path):
        subject = new_subject(url, key, f"bench-{path.stem}")
        return enrol(url, key, subject, [path])[0] == 201

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        enrolled = sum(pool.map(one, candidates[:count]))
    print(f"enrol: {enrolled} of {min(count, len(candidates))} portraits enrolled", file=sys.stderr)


def main():
    command, url, key, directory = sys.argv[1:5]
    if command == "latency":
        latency(url, key, directory, int(sys.argv[5]) if len(sys.argv) > 5 else 20)
    elif command == "fill":
        fill(url, key, directory, int(sys.argv[5]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
