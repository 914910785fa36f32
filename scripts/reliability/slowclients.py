"""Slow clients: slowloris connections that never finish their headers, and bodies trickled byte
by byte, against `visage serve` with a small connection limit. Passes when the server closes
every header-stalling connection within its header timeout (in waves of `max_connections`),
answers every trickled body within its request timeout, never holds more descriptors than its
limit allows, and keeps answering a well-behaved client throughout.

    python3 scripts/reliability/slowclients.py --bin target/debug/visage [--attackers 300]
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import Server, log, verdict

MAX_CONNECTIONS = 128
HEADER_TIMEOUT = 2
REQUEST_TIMEOUT = 5


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Watch:
    """A well-behaved client and the server's descriptors, sampled while an attack runs."""

    def __init__(self, server: Server):
        self.server = server
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.max_fds = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        while not self.stop.wait(0.25):
            self.max_fds = max(self.max_fds, open_fds(self.server.process.pid))
            reply = self.server.client.get("/v1/collections")
            if reply.ok:
                self.latencies.append(reply.finished - reply.started)
            else:
                self.failures.append(reply.describe())

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join()


def closed_within(sockets: list[socket.socket], opened: list[float], deadline: float, trickle: bytes,
                  every: float) -> list[float | None]:
    """Trickles `trickle` into every open socket each `every` seconds until the server closes it
    (or answers); returns each socket's seconds from opening to that, None if still open."""
    ended: list[float | None] = [None] * len(sockets)
    next_byte = time.monotonic()
    while time.monotonic() < deadline and any(e is None for e in ended):
        live = [s for s, e in zip(sockets, ended) if e is None]
        readable, _, _ = select.select(live, [], [], 0.05)
        for s in readable:
            i = sockets.index(s)
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            # An answer (a 408/503 status line) or the close itself ends the connection's hold.
            ended[i] = time.monotonic() - opened[i]
            _ = data
        if time.monotonic() >= next_byte:
            next_byte += every
            for i, s in enumerate(sockets):
                if ended[i] is None:
                    try:
                        s.send(trickle)
                    except OSError:
                        ended[i] = time.monotonic() - opened[i]
    return ended


def attack(server: Server, count: int, first: bytes, trickle: bytes, every: float, limit: float):
    sockets, opened = [], []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.send(first)
        sockets.append(s)
        opened.append(time.monotonic())
    ended = closed_within(sockets, opened, time.monotonic() + limit, trickle, every)
    for s in sockets:
        s.close()
    return ended


def summary(ended: list[float | None]) -> str:
    done = [e for e in ended if e is not None]
    if not done:
        return f"none of {len(ended)} closed"
    return (f"{len(done)} of {len(ended)} closed by the server; after {statistics.median(done):.1f} s median, "
            f"{max(done):.1f} s at most")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", required=True, type=Path)
    parser.add_argument("--attackers", type=int, default=300)
    parser.add_argument("--tricklers", type=int, default=60)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="visage-slow-"))
    server = Server(args.bin.resolve(), work / "data", work / "visage.log", {
        "VISAGE_SERVER__MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "VISAGE_SERVER__HEADER_READ_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "VISAGE_SERVER__REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT),
    })
    server.start()
    problems = []
    baseline_fds = open_fds(server.process.pid)
    waves = -(-args.attackers // MAX_CONNECTIONS)
    log(f"slow clients: {args.attackers} connections that never finish their headers "
        f"(limit {MAX_CONNECTIONS} connections, header timeout {HEADER_TIMEOUT} s)")
    with Watch(server) as headers_watch:
        stalled = attack(server, args.attackers, b"GET /v1/collections HTTP/1.1\r\nHost: visage\r\n",
                         b"X-Slow: 1\r\n", 0.5, waves * HEADER_TIMEOUT + 10)
    log(f"  {summary(stalled)}")
    if any(e is None or e > waves * HEADER_TIMEOUT + 3 for e in stalled):
        problems.append(f"header-stalling connections were held too long: {summary(stalled)}")

    log(f"slow clients: {args.tricklers} request bodies trickled a byte every 0.5 s (request timeout {REQUEST_TIMEOUT} s)")
    head = (f"POST /v1/detect HTTP/1.1\r\nHost: visage\r\nX-API-Key: {server.token}\r\n"
            "Content-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n").encode()
    with Watch(server) as body_watch:
        trickled = attack(server, args.tricklers, head, b"\xff", 0.5, REQUEST_TIMEOUT + 10)
    log(f"  {summary(trickled)}")
    if any(e is None or e > REQUEST_TIMEOUT + 3 for e in trickled):
        problems.append(f"trickled bodies were held too long: {summary(trickled)}")

    fds = max(headers_watch.max_fds, body_watch.max_fds)
    # The limit plus what the process holds anyway, plus the well-behaved client's connection.
    if fds > baseline_fds + MAX_CONNECTIONS + 2:
        problems.append(f"{fds} descriptors open, more than {baseline_fds} + the limit {MAX_CONNECTIONS}")
    for name, watch in (("header stall", headers_watch), ("body trickle", body_watch)):
        if watch.failures:
            problems.append(f"{name}: a well-behaved client's requests failed: {watch.failures[:3]}")
        if not watch.latencies:
            problems.append(f"{name}: the well-behaved client got no answer at all")
    after = server.client.get("/health/ready")
    if not after.ok:
        problems.append(f"not ready after the attack: {after.describe()}")
    server.stop()

    def latency(watch: Watch) -> str:
        if not watch.latencies:
            return "no answer"
        return (f"{len(watch.latencies)} answered, {len(watch.failures)} failed; median "
                f"{statistics.median(watch.latencies) * 1000:.0f} ms, max {max(watch.latencies):.2f} s")

    return verdict(
        f"slow clients (limit {MAX_CONNECTIONS} connections, header timeout {HEADER_TIMEOUT} s, "
          f"request timeout {REQUEST_TIMEOUT} s)",
            [
            (f"{args.attackers} headers never finished", summary(stalled)),
            ("  a well-behaved client meanwhile", latency(headers_watch)),
            (f"{args.tricklers} bodies trickled", summary(trickled)),
            ("  a well-behaved client meanwhile", latency(body_watch)),
            ("descriptors: before / most during", f"{baseline_fds} / {fds}"),
        ],
        problems,
        "slow clients check",
    )


if __name__ == "__main__":
    sys.exit(main())
