"""Soak: mixed load on `visage serve` (embedded storage) for a long time, sampling its memory,
open files, database size and latency. Passes when, after the warm-up, resident memory grows
less than 10%, open descriptors stay flat, the p95 of verifications drifts less than 20%, and
no request gets an answer it should not.

    python3 scripts/reliability/soak.py --bin target/release/visage --minutes 60 --svg docs/soak.svg
    python3 scripts/reliability/soak.py --bin target/debug/visage --minutes 5     # scripts/test.sh

The load (each worker paced, about half of what two cores serve): enrolment of new subjects,
erasure of some of them, 1:1 verification, 1:N identification, detection with liveness, and
bad input (corrupt and truncated images, a wrong content type) that must answer 4xx.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import Server, log, photos, rss_mib, verdict

WARM_UP_FRACTION = 0.2


class Load:
    def __init__(self, server: Server, pictures: list[Path], seed: int):
        self.server = server
        self.pictures = pictures
        self.images = {p: p.read_bytes() for p in pictures}
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.subjects: list[tuple[str, Path]] = []
        self.verify_latencies: list[float] = []
        self.answers: collections.Counter = collections.Counter()
        self.wrong: collections.Counter = collections.Counter()
        self.stop = threading.Event()

    def note(self, kind: str, reply, expect_4xx: bool = False):
        ok = (400 <= reply.status < 500) if expect_4xx else reply.ok
        with self.lock:
            self.answers[kind] += 1
            if not ok:
                self.wrong[f"{kind}: {reply.describe()}"] += 1

    def paced(self, every: float, work):
        while not self.stop.wait(every):
            work()

    def enrol(self):
        picture = self.rng.choice(self.pictures)
        payload = {"external_id": f"soak-{self.rng.getrandbits(40):010x}",
                   "consent": {"given_by": "the subject", "purpose": "soak test"}}
        subject = self.server.client.json("POST", "/v1/subjects", payload)
        self.note("create subject", subject)
        if not subject.ok:
            return
        subject_id = subject.json()["id"]
        face = self.server.client.image(f"/v1/subjects/{subject_id}/faces", self.images[picture])
        self.note("enrol", face)
        if face.ok:
            with self.lock:
                self.subjects.append((subject_id, picture))

    def erase(self):
        with self.lock:
            if len(self.subjects) < 20:
                return
            subject_id, _ = self.subjects.pop(self.rng.randrange(len(self.subjects)))
        self.note("erase", self.server.client.call("DELETE", f"/v1/subjects/{subject_id}"))

    def verify(self):
        with self.lock:
            if not self.subjects:
                return
            subject_id, picture = self.rng.choice(self.subjects)
        reply = self.server.client.image(f"/v1/verify?subject_id={subject_id}", self.images[picture])
        # An erasure may have taken the subject meanwhile.
        if reply.status == 404 and reply.code == "subject_not_found":
            return
        self.note("verify", reply)
        if reply.ok:
            with self.lock:
                self.verify_latencies.append(reply.finished - reply.started)

    def identify(self):
        picture = self.rng.choice(self.pictures)
        self.note("identify", self.server.client.image("/v1/identify?top_k=5", self.images[picture]))

    def detect(self):
        picture = self.rng.choice(self.pictures)
        self.note("detect+liveness", self.server.client.image("/v1/detect?liveness=true", self.images[picture]))

    def bad_input(self):
        good = self.images[self.rng.choice(self.pictures)]
        choice = self.rng.randrange(3)
        if choice == 0:
            body, content_type = good[: len(good) // 3], "image/jpeg"
        elif choice == 1:
            body, content_type = bytes(self.rng.getrandbits(8) for _ in range(2048)), "image/jpeg"
        else:
            body, content_type = good, "text/plain"
        reply = self.server.client.call("POST", "/v1/detect", body, content_type)
        self.note("bad input", reply, expect_4xx=True)


def disk_mib(directory: Path) -> float:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) / (1 << 20)


def p95(values: list[float]) -> float | None:
    if len(values) < 5:
        return None
    ordered = sorted(values)
    return ordered[int(0.95 * (len(ordered) - 1))]


def svg(samples: list[dict], path: Path, warm_up: float):
    """RSS and verification p95 over time, one small chart each."""
    width, height, pad = 640, 150, 40
    end = max(s["t"] for s in samples) or 1.0

    def chart(key: str, label: str, unit: str, top: int) -> str:
        points = [(s["t"], s[key]) for s in samples if s[key] is not None]
        high = max(v for _, v in points) * 1.15 or 1.0
        xy = " ".join(f"{pad + t / end * (width - 2 * pad):.1f},{top + height - pad / 2 - v / high * (height - pad):.1f}"
                      for t, v in points)
        warm_x = pad + warm_up / end * (width - 2 * pad)
        return (f'<text x="{pad}" y="{top + 14}" font-size="12">{label}</text>'
                f'<line x1="{warm_x:.1f}" y1="{top + 18}" x2="{warm_x:.1f}" y2="{top + height - pad / 2}" '
                f'stroke="#999" stroke-dasharray="4 3"/>'
                f'<text x="{warm_x + 4:.1f}" y="{top + 30}" font-size="10" fill="#666">end of warm-up</text>'
                f'<polyline fill="none" stroke="#1f5fbf" stroke-width="1.5" points="{xy}"/>'
                f'<text x="{width - pad}" y="{top + 14}" font-size="10" text-anchor="end">max {high / 1.15:.1f} {unit}</text>')

    body = chart("rss", "resident memory (MiB)", "MiB", 0) + chart("p95_ms", "verify p95 per sample (ms)", "ms", height)
    axis = f'<text x="{width - pad}" y="{2 * height + 12}" font-size="10" text-anchor="end">{end / 60:.0f} min</text>'
    path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{2 * height + 16}" '
                    f'font-family="sans-serif">{body}{axis}</svg>\n')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", required=True, type=Path)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--sample-every", type=float, default=10)
    parser.add_argument("--svg", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="visage-soak-"))
    server = Server(args.bin.resolve(), work / "data", work / "visage.log",
                    {"VISAGE_STORAGE__STORE_IMAGES": "true", "VISAGE_LIVENESS__VERIFY": "report"})
    server.start()
    pictures = [p for p in photos()
                if len((server.client.image("/v1/detect", p.read_bytes()).json() or {}).get("faces", [])) == 1]
    load = Load(server, pictures, args.seed)
    workers = [threading.Thread(target=load.paced, args=(every, work), daemon=True) for every, work in [
        (0.5, load.enrol), (1.0, load.erase), (0.1, load.verify), (0.1, load.verify), (0.3, load.identify),
        (0.5, load.detect), (0.5, load.bad_input)]]
    duration = args.minutes * 60
    warm_up = max(60.0, WARM_UP_FRACTION * duration) if duration >= 120 else duration / 3
    log(f"soak: {args.minutes:g} min of mixed load ({work}); samples every {args.sample_every:g} s, "
        f"warm-up {warm_up:.0f} s")
    for w in workers:
        w.start()
    started = time.monotonic()
    samples = []
    while (now := time.monotonic() - started) < duration:
        time.sleep(min(args.sample_every, duration - now))
        with load.lock:
            window, load.verify_latencies = load.verify_latencies, []
            subjects = len(load.subjects)
        pid = server.process.pid
        sample = {"t": time.monotonic() - started, "rss": rss_mib(pid), "fds": len(os.listdir(f"/proc/{pid}/fd")),
                  "db": disk_mib(server.data_dir), "p95_ms": (p95(window) or 0) * 1000 or None,
                  "subjects": subjects}
        samples.append(sample)
        if len(samples) % max(1, int(60 / args.sample_every)) == 0:
            log(f"  {sample['t'] / 60:.1f} min: RSS {sample['rss']:.0f} MiB, {sample['fds']} fds, data "
                f"{sample['db']:.1f} MiB, verify p95 {sample['p95_ms'] or 0:.0f} ms, {subjects} subjects")
    load.stop.set()
    for w in workers:
        w.join(timeout=60)
    server.stop()

    problems = []
    after = [s for s in samples if s["t"] > warm_up]
    base = after[0] if after else samples[-1]
    rss_growth = (max(s["rss"] for s in after) - base["rss"]) / base["rss"] if after else 0.0
    fds_spread = max(s["fds"] for s in after) - min(s["fds"] for s in after) if after else 0
    third = max(1, len(after) // 3)
    early = [s["p95_ms"] for s in after[:third] if s["p95_ms"]]
    late = [s["p95_ms"] for s in after[-third:] if s["p95_ms"]]
    drift = (statistics.median(late) - statistics.median(early)) / statistics.median(early) if early and late else 0.0
    if rss_growth >= 0.10:
        problems.append(f"resident memory grew {rss_growth:.1%} after the warm-up")
    if fds_spread > 8:
        problems.append(f"open descriptors moved by {fds_spread} after the warm-up")
    if drift >= 0.20:
        problems.append(f"verify p95 drifted {drift:+.1%}")
    if load.wrong:
        problems.append(f"unexpected answers: {dict(load.wrong.most_common(5))}")
    if args.svg:
        svg(samples, args.svg, warm_up)

    return verdict(
        f"soak ({args.minutes:g} min, samples every {args.sample_every:g} s, warm-up {warm_up:.0f} s)",
        [
            ("requests", ", ".join(f"{k} {v}" for k, v in load.answers.most_common())),
            ("unexpected answers", str(sum(load.wrong.values()))),
            ("RSS after warm-up / at most / end", f"{base['rss']:.0f} / {max(s['rss'] for s in samples):.0f} / "
             f"{samples[-1]['rss']:.0f} MiB (growth {rss_growth:+.1%})"),
            ("open descriptors after warm-up", f"{min(s['fds'] for s in after)}-{max(s['fds'] for s in after)}"
             if after else "-"),
            ("data directory start / end", f"{samples[0]['db']:.1f} / {samples[-1]['db']:.1f} MiB "
             f"({samples[-1]['subjects']} subjects)"),
            ("verify p95 early / late", f"{statistics.median(early):.0f} / {statistics.median(late):.0f} ms "
             f"(drift {drift:+.1%})" if early and late else "-"),
        ],
        problems,
        "soak",
    )


if __name__ == "__main__":
    sys.exit(main())
