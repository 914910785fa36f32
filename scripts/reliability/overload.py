"""Overload: `visage serve` driven at five times the verifications per second it can serve, for a
minute. Passes when every answer is 200 or 503 `overloaded` with `Retry-After`, the p99 of the
accepted requests stays within twice the unloaded p99, memory stays bounded, and full service
is back within a second of the load stopping.

    python3 scripts/reliability/overload.py --bin target/debug/visage [--seconds 60] [--factor 5]
"""

from __future__ import annotations

import argparse
import collections
import http.client
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, Server, log, rss_mib, verdict

PROBE = ROOT / "tests" / "fixtures" / "lfw" / "Bob_Graham" / "Bob_Graham_0005.jpg"
ENROLLED = ROOT / "tests" / "fixtures" / "lfw" / "Bob_Graham" / "Bob_Graham_0001.jpg"
PROCESSES = 4
THREADS = 24
UNLOADED_REQUESTS = 400


class Target:
    """Just enough of a Server for `verify` in a sender process."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token


def send_share(port: int, token: str, subject: str, image: bytes, rate: float, end_at: float, seed: int):
    """One process's share of the offered load: THREADS senders, each at rate/THREADS."""
    target = Target(port, token)
    answers: collections.Counter = collections.Counter()
    accepted: list[float] = []
    lock = threading.Lock()
    interval = THREADS / rate

    def sender(offset: float):
        next_at = time.time() + offset
        while True:
            now = time.time()
            if next_at > now:
                time.sleep(next_at - now)
            if time.time() >= end_at:
                return
            next_at += interval
            status, code, retry_after, took = verify(target, subject, image)
            with lock:
                if status == 200:
                    accepted.append(took)
                    answers["200"] += 1
                elif status == 503 and code == "overloaded" and retry_after:
                    answers["503 overloaded"] += 1
                else:
                    answers[f"{status} {code} (Retry-After {retry_after})"] += 1

    senders = [threading.Thread(target=sender, args=((seed + i / THREADS) * interval / PROCESSES,))
               for i in range(THREADS)]
    for s in senders:
        s.start()
    for s in senders:
        s.join()
    return answers, accepted


def verify(server, subject: str, image: bytes) -> tuple[int, str | None, str | None, float]:
    """One verification on a fresh connection: status, error code, Retry-After, seconds."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", f"/v1/verify?subject_id={subject}", body=image,
                           headers={"X-API-Key": server.token, "Content-Type": "image/jpeg", "Connection": "close"})
        response = connection.getresponse()
        body = response.read()
        code = None
        if response.status != 200:
            try:
                import json
                code = json.loads(body)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "not visage's error shape"
        return response.status, code, response.getheader("Retry-After"), time.monotonic() - started
    except (OSError, http.client.HTTPException) as err:
        return 0, type(err).__name__, None, time.monotonic() - started
    finally:
        connection.close()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def closed_loop(server: Server, subject: str, image: bytes, threads: int, seconds: float) -> list[float]:
    """`threads` clients each sending the next verification when the last is answered."""
    latencies: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client():
        while time.monotonic() < end:
            status, _, _, took = verify(server, subject, image)
            if status == 200:
                with lock:
                    latencies.append(took)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", required=True, type=Path)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--factor", type=float, default=5)
    # The goal is 2; scripts/test.sh allows more (docs/reliability.md says why).
    parser.add_argument("--set", action="append", default=[], metavar="VISAGE_X=VALUE",
                        help="a setting of the server under test, e.g. VISAGE_INFERENCE__MAX_QUEUE_WAIT_MS=25")
    parser.add_argument("--p99-factor", type=float, default=2, help="accepted p99 may be this many unloaded p99s")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="visage-overload-"))
    settings = dict(item.split("=", 1) for item in args.set)
    server = Server(args.bin.resolve(), work / "data", work / "visage.log", {"VISAGE_LIVENESS__VERIFY": "report", **settings})
    server.start()
    reply = server.client.json("POST", "/v1/subjects", {"external_id": "overload", "consent": {
        "given_by": "the subject", "purpose": "overload test"}})
    subject = reply.json()["id"]
    server.client.image(f"/v1/subjects/{subject}/faces", ENROLLED.read_bytes())
    image = PROBE.read_bytes()
    problems: list[str] = []

    # Enough requests for a p99 that is not just the slowest one: with 80, it moved from 23 to
    # 64 ms between runs on one machine while the accepted p99 stayed at 62-76 ms.
    unloaded = [verify(server, subject, image)[3] for _ in range(UNLOADED_REQUESTS)]
    unloaded_p99 = percentile(unloaded, 99)
    capacity_latencies = closed_loop(server, subject, image, 4, 10)
    capacity = len(capacity_latencies) / 10
    rate = capacity * args.factor
    rss_before = rss_mib(server.process.pid)
    log(f"overload: unloaded p99 {unloaded_p99 * 1000:.0f} ms, capacity {capacity:.1f} verifications/s; "
        f"now {rate:.0f}/s ({args.factor:g}x) for {args.seconds:.0f} s from {PROCESSES} x {THREADS} senders")

    # Senders in processes of their own: threads of one Python process would wait for its
    # interpreter lock, and that wait would show up as the server's latency.
    rss_peak = rss_before
    end_at = time.time() + args.seconds
    with multiprocessing.Pool(PROCESSES) as pool:
        pending = pool.starmap_async(send_share, [
            (server.port, server.token, subject, image, rate / PROCESSES, end_at, p) for p in range(PROCESSES)])
        while not pending.ready():
            rss_peak = max(rss_peak, rss_mib(server.process.pid))
            pending.wait(0.5)
        shares = pending.get()
    answers: collections.Counter = collections.Counter()
    accepted: list[float] = []
    for share_answers, share_accepted in shares:
        answers.update(share_answers)
        accepted += share_accepted
    stopped = time.monotonic()
    recovered = None
    while time.monotonic() - stopped < 10:
        status, _, _, took = verify(server, subject, image)
        if status == 200 and took <= args.p99_factor * unloaded_p99:
            recovered = time.monotonic() - stopped
            break
    sent = sum(answers.values())
    offered = sent / args.seconds
    accepted_p99 = percentile(accepted, 99) if accepted else float("inf")
    others = {k: v for k, v in answers.items() if k not in ("200", "503 overloaded")}
    if others:
        problems.append(f"answers other than 200 and 503 overloaded with Retry-After: {others}")
    if offered < 0.8 * rate:
        problems.append(f"the senders offered {offered:.0f}/s, short of the {rate:.0f}/s aimed at (client-bound)")
    if accepted_p99 > args.p99_factor * unloaded_p99:
        problems.append(f"accepted p99 {accepted_p99 * 1000:.0f} ms is over {args.p99_factor:g} times the unloaded "
                        f"{unloaded_p99 * 1000:.0f} ms")
    if rss_peak > rss_before + 256:
        problems.append(f"memory grew from {rss_before:.0f} to {rss_peak:.0f} MiB")
    if recovered is None or recovered > 1.0:
        problems.append(f"full service back after {recovered} s, not within 1 s")
    server.stop()

    return verdict(
        f"overload ({args.factor:g}x for {args.seconds:.0f} s, POST /v1/verify with liveness reported)",
        [
            ("unloaded p50 / p99", f"{statistics.median(unloaded) * 1000:.0f} / {unloaded_p99 * 1000:.0f} ms"),
            ("capacity (4 closed-loop clients)", f"{capacity:.1f} verifications/s"),
            ("offered", f"{offered:.0f} requests/s ({sent} in all)"),
            ("answers", ", ".join(f"{k}: {v}" for k, v in answers.most_common())),
            ("accepted per second", f"{answers['200'] / args.seconds:.1f}"),
            ("accepted p50 / p99", f"{statistics.median(accepted) * 1000:.0f} / {accepted_p99 * 1000:.0f} ms "
             f"({accepted_p99 / unloaded_p99:.1f}x the unloaded p99)" if accepted else "none"),
            ("RSS before / peak", f"{rss_before:.0f} / {rss_peak:.0f} MiB"),
            ("full service after the load", f"{recovered:.2f} s" if recovered is not None else "not within 10 s"),
        ],
        problems,
        "overload check",
    )


if __name__ == "__main__":
    sys.exit(main())
