"""kill -9 during writes, embedded storage: enrolment and erasure traffic against `visage serve`,
killed with SIGKILL at a random moment and restarted, again and again. Afterwards the SQLite
file passes `PRAGMA integrity_check`, every acknowledged enrolment is there, every acknowledged
erasure is gone (subject, templates, images, index), and the 1:N index equals the database.

    python3 scripts/reliability/kill9.py --bin target/debug/visage [--cycles 50] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from common import Server, integrity, log, photos, stored_templates, table


@dataclass
class Ledger:
    """What the service acknowledged, and what was cut off without an answer."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    subjects: dict = field(default_factory=dict)  # subject id -> face ids acknowledged
    erased: set = field(default_factory=set)  # acknowledged erasures
    maybe_erased: set = field(default_factory=set)  # erasures cut off (either outcome is right)
    cut_off: int = 0
    enrolments: int = 0
    unexpected: list = field(default_factory=list)

    def note_unexpected(self, what: str, reply) -> bool:
        """Counts a request that failed; True when the server is gone (the loop ends)."""
        with self.lock:
            if reply.status == 0:
                self.cut_off += 1
                return True
            self.unexpected.append(f"{what}: {reply.describe()}")
            return False


def enrol_loop(server: Server, ledger: Ledger, stop: threading.Event, rng: random.Random, pictures: list[Path]):
    client = server.client
    while not stop.is_set():
        external_id = f"k9-{rng.getrandbits(48):012x}"
        payload = {"external_id": external_id, "consent": {"given_by": "the subject", "purpose": "kill -9 test"}}
        reply = client.json("POST", "/v1/subjects", payload)
        if reply.status != 201:
            if ledger.note_unexpected("create subject", reply):
                return
            continue
        subject_id = reply.json()["id"]
        with ledger.lock:
            ledger.subjects[subject_id] = []
        picture = rng.choice(pictures)
        reply = client.image(f"/v1/subjects/{subject_id}/faces", picture.read_bytes())
        if reply.status != 201:
            if ledger.note_unexpected("enrol", reply):
                return
            continue
        with ledger.lock:
            ledger.subjects[subject_id] += [face["id"] for face in reply.json()["faces"]]
            ledger.enrolments += 1


def erase_loop(server: Server, ledger: Ledger, stop: threading.Event, rng: random.Random):
    client = server.client
    while not stop.wait(0.12):
        with ledger.lock:
            # Subjects whose face is in: one still being enrolled is the enrol loop's.
            candidates = [s for s, faces in ledger.subjects.items()
                          if faces and s not in ledger.erased and s not in ledger.maybe_erased]
        if len(candidates) < 3:
            continue
        subject_id = rng.choice(candidates)
        reply = client.call("DELETE", f"/v1/subjects/{subject_id}")
        with ledger.lock:
            if reply.status == 204:
                ledger.erased.add(subject_id)
            elif reply.status == 0:
                ledger.maybe_erased.add(subject_id)
                ledger.cut_off += 1
                return
            else:
                ledger.unexpected.append(f"erase: {reply.describe()}")


def check(server: Server, ledger: Ledger) -> list[str]:
    """Everything acknowledged is as acknowledged; returns the problems."""
    problems = []
    client = server.client
    images = server.data_dir / "images"
    lost = resurrected = kept_images = 0
    for subject_id, faces in ledger.subjects.items():
        if subject_id in ledger.erased:
            if client.get(f"/v1/subjects/{subject_id}").status != 404:
                resurrected += 1
            kept_images += sum(1 for face in faces if (images / f"{face}.img").exists())
            continue
        reply = client.get(f"/v1/subjects/{subject_id}/faces")
        if reply.status == 404 and subject_id in ledger.maybe_erased:
            continue
        stored = {f["id"] for f in (reply.json() or {}).get("faces", [])} if reply.ok else set()
        if not reply.ok or not set(faces) <= stored:
            lost += 1
    if lost:
        problems.append(f"{lost} acknowledged subjects or faces missing")
    if resurrected:
        problems.append(f"{resurrected} acknowledged erasures came back")
    if kept_images:
        problems.append(f"{kept_images} images of erased subjects still on disk")
    listed = client.get("/v1/collections")
    indexed = {c["id"]: c["templates"] for c in (listed.json() or {}).get("collections", [])} if listed.ok else None
    stored = stored_templates(server.database)
    if indexed is None or any(indexed.get(c, 0) != n for c, n in stored.items()) \
            or any(n and c not in stored for c, n in indexed.items()):
        problems.append(f"the 1:N index ({indexed}) differs from the database ({stored})")
    return problems


def orphan_images(server: Server) -> int:
    """Image files no template names: an enrolment killed between storing its image and
    committing its templates (never acknowledged; `visage images sweep` removes them)."""
    with sqlite3.connect(server.database) as conn:
        ids = {str(uuid.UUID(bytes=row[0])) for row in conn.execute("SELECT id FROM templates")}
    files = list((server.data_dir / "images").glob("*.img"))
    return sum(1 for f in files if f.stem not in ids)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", required=True, type=Path)
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    pictures = photos()
    work = Path(tempfile.mkdtemp(prefix="visage-kill9-"))
    server = Server(args.bin.resolve(), work / "data", work / "visage.log", {"VISAGE_STORAGE__STORE_IMAGES": "true"})
    ledger = Ledger()
    ready_times, integrity_failures = [], []
    # Photos with one face: an enrolment of a photo with several is refused, and is not the point.
    ready_times.append(server.start())
    pictures = [p for p in pictures if len((server.client.image("/v1/detect", p.read_bytes()).json() or {}).get("faces", [])) == 1]
    server.stop()
    log(f"kill -9: {args.cycles} cycles of enrolment and erasure traffic on the embedded storage ({work})")
    started = time.monotonic()
    for cycle in range(1, args.cycles + 1):
        ready_times.append(server.start())
        stop = threading.Event()
        threads = [threading.Thread(target=enrol_loop, args=(server, ledger, stop, random.Random(rng.random()), pictures)),
                   threading.Thread(target=erase_loop, args=(server, ledger, stop, random.Random(rng.random())))]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 1.5))
        server.kill()
        stop.set()
        for t in threads:
            t.join(timeout=60)
        verdict = integrity(server.database)
        if verdict != "ok":
            integrity_failures.append(f"cycle {cycle}: {verdict}")
        if cycle % 10 == 0:
            log(f"  {cycle} kills: {ledger.enrolments} enrolments and {len(ledger.erased)} erasures acknowledged, "
                f"{ledger.cut_off} requests cut off")
    ready_times.append(server.start())
    problems = check(server, ledger) + integrity_failures + ledger.unexpected[:10]
    orphans = orphan_images(server)
    server.stop()
    final = integrity(server.database)
    if final != "ok":
        problems.append(f"integrity after a clean stop: {final}")
    elapsed = time.monotonic() - started
    print()
    print(f"kill -9 during writes, embedded storage ({args.cycles} kills, seed {args.seed}, {elapsed:.0f} s)")
    table([
        ("kills (SIGKILL mid-traffic)", str(args.cycles)),
        ("enrolments acknowledged", str(ledger.enrolments)),
        ("subjects acknowledged", str(len(ledger.subjects))),
        ("erasures acknowledged", str(len(ledger.erased))),
        ("requests cut off by a kill", str(ledger.cut_off)),
        ("PRAGMA integrity_check", "ok after every kill" if not integrity_failures else f"{len(integrity_failures)} failed"),
        ("restart to ready, median / max", f"{statistics.median(ready_times):.2f} s / {max(ready_times):.2f} s"),
        ("orphan image files (swept later)", str(orphans)),
        ("unexpected answers", str(len(ledger.unexpected))),
        ("problems", str(len(problems))),
    ])
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    (work / "summary.json").write_text(json.dumps({"problems": problems, "cycles": args.cycles}))
    print("kill -9 check passed" if not problems else "kill -9 check FAILED")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
