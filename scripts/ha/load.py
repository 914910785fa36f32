"""The steady load of the high-availability test, and the ledger that counts every one of its
requests in the phase under way.

Verify workers send 1:1 verifications through Traefik against subjects enrolled at set-up (a
second photo of the person where there is one); one enrol worker creates a subject with
consent and enrols one face, each POST with its own Idempotency-Key, the same key on every
retry. Every acknowledged enrolment is recorded, to be looked for on every replica at the end.
"""

from __future__ import annotations

import collections
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from client import Api, Client, Reply, log, make_collection

VERIFY_WORKERS = 3
# Enrolments per collection: an identify returns at most 20 candidates (verification.max_top_k),
# and every subject of a collection here is the same photo, so each must fit in one answer.
PER_COLLECTION = 15


@dataclass
class PhaseStats:
    name: str
    # 503s are the expected answer while PostgreSQL is down; anywhere else they are failures.
    expect_503: bool = False
    # Enrolment 503s are tolerated while Redis is down (idempotency may need it); verify's not.
    enrol_503_ok: bool = False
    started: float = 0.0
    ended: float = 0.0
    requests: int = 0
    failures: collections.Counter = field(default_factory=collections.Counter)
    s503: collections.Counter = field(default_factory=collections.Counter)
    time_note: str = ""
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    lost: int = 0
    acked: int = 0
    cut_off: int = 0  # upstream attempts Traefik retried after a 502 (its metrics)
    # 409 idempotency_in_progress: the key is still reserved by an earlier attempt (one cut off
    # by a killed replica keeps it until its reservation expires); retried, not a failure.
    deferred: int = 0
    # Longest time from an enrolment's first attempt to its acknowledgement.
    slowest_enrolment: float = 0.0


class Ledger:
    """Counters of the phase under way; the load threads report every request here."""

    def __init__(self):
        self.lock = threading.Lock()
        self.phases: list[PhaseStats] = []
        self.cut_off_mark = 0

    def begin(self, name: str, cut_off: int, **flags) -> PhaseStats:
        """Ends the phase under way (`cut_off`: Traefik's 502 count now) and starts the next."""
        with self.lock:
            now = time.monotonic()
            if self.phases:
                self.phases[-1].ended = now
                self.phases[-1].cut_off = cut_off - self.cut_off_mark
            self.cut_off_mark = cut_off
            phase = PhaseStats(name, started=now, **flags)
            self.phases.append(phase)
            return phase

    @property
    def current(self) -> PhaseStats:
        return self.phases[-1]

    def record(self, kind: str, reply: Reply, wrong: str | None = None) -> str:
        """Counts one load request; returns ok, 503 or failure."""
        with self.lock:
            phase = self.current
            phase.requests += 1
            if reply.ok and wrong is None:
                return "ok"
            if reply.status == 409 and reply.code == "idempotency_in_progress":
                phase.deferred += 1
                return "deferred"
            if reply.status == 503 and (phase.expect_503 or (kind == "enrol" and phase.enrol_503_ok)):
                source = reply.code or "proxy: no ready replica"
                phase.s503[f"{kind} {source}"] += 1
                return "503"
            phase.failures[f"{kind}: {wrong or reply.describe()}"] += 1
            return "failure"


@dataclass
class Enrolment:
    subject_id: str
    face_id: str
    collection: str
    image: str  # path of the enrolled photo
    phase: str
    acked_at: float


class Load:
    """The load workers and what they share: the ledger, the acknowledged enrolments, and the
    subjects and photos the set-up prepared (`verify_pairs`, `enrol_pool`)."""

    def __init__(self, front: Client, api: Api, ledger: Ledger, problems: list[str], run_id: str):
        self.front = front
        self.api = api
        self.ledger = ledger
        self.problems = problems
        self.run_id = run_id
        self.stop_event = threading.Event()
        self.stopped_at = 0.0
        self.enrolled: list[Enrolment] = []
        self.enrolled_lock = threading.Lock()
        self.verify_pairs: list[tuple[str, Path]] = []
        self.enrol_pool: list[Path] = []
        self.collections_made: set[str] = set()
        # Ids of the decisions answered while this is a list (the PostgreSQL outage), to be
        # looked for in the database once it is back.
        self.decision_ids: list[str] | None = None

    def workers(self) -> list[threading.Thread]:
        """The verify workers and the enrol worker, not started yet."""
        workers = [threading.Thread(target=self.guarded, args=(self.verify_worker, n), daemon=True)
                   for n in range(VERIFY_WORKERS)]
        workers.append(threading.Thread(target=self.guarded, args=(self.enrol_worker,), daemon=True))
        return workers

    def stop(self):
        self.stopped_at = time.monotonic()
        self.stop_event.set()

    def retry(self, kind: str, attempt):
        """Calls attempt() until its reply is a success, counting every one; None when
        attempt() gives up (returns None)."""
        while True:
            reply = attempt()
            if reply is None:
                return None
            if self.ledger.record(kind, reply) == "ok":
                return reply
            time.sleep(0.2)

    def enrol_one(self, client: Client, collection: str, external_id: str, photo: Path) -> Enrolment | None:
        """A subject with one face, retried with the same keys (counted like the load's)."""
        first_attempt = time.monotonic()
        if collection not in self.collections_made:
            if not self.retry("enrol", lambda: None if self.gave_up() else make_collection(client, collection)):
                return None
            self.collections_made.add(collection)
        subject_key, face_key = str(uuid.uuid4()), str(uuid.uuid4())
        subject = self.retry("enrol", lambda: None if self.gave_up()
                             else self.api.new_subject(client, collection, external_id, subject_key))
        if subject is None:
            return None
        subject_id = subject.json()["id"]
        face = self.retry("enrol", lambda: None if self.gave_up()
                          else self.api.enrol_face(client, subject_id, photo, face_key))
        if face is None:
            return None
        with self.ledger.lock:
            phase = self.ledger.current
            phase.slowest_enrolment = max(phase.slowest_enrolment, face.finished - first_attempt)
            phase = phase.name
        record = Enrolment(subject_id, face.json()["faces"][0]["id"], collection, str(photo), phase,
                           face.finished)
        with self.enrolled_lock:
            self.enrolled.append(record)
        return record

    def guarded(self, work, *args):
        """Runs a load worker; a crash (an answer of an unexpected shape) fails the test."""
        try:
            work(*args)
        except Exception as err:  # noqa: BLE001 - reported, and the test fails
            self.problems.append(f"a load worker stopped: {type(err).__name__}: {err}")
            log(f"  a load worker stopped: {type(err).__name__}: {err}")

    def verify_worker(self, seed: int):
        rng = random.Random(seed)
        while not self.stop_event.is_set():
            subject_id, probe = rng.choice(self.verify_pairs)
            reply = self.front.image(f"/v1/verify?subject_id={subject_id}", self.api.photo(probe))
            wrong = None
            if reply.ok and not (reply.json() or {}).get("match"):
                wrong = "200 but no match for the same person"
            if self.ledger.record("verify", reply, wrong) != "ok":
                time.sleep(0.1)
            else:
                self.note_decision(reply)

    def note_decision(self, reply: Reply):
        ids = self.decision_ids
        if ids is not None:
            with self.ledger.lock:
                ids.append((reply.json() or {}).get("verification_id"))

    def gave_up(self) -> bool:
        """An enrolment under way is finished after the load stops, but not forever."""
        return self.stop_event.is_set() and time.monotonic() - self.stopped_at > 30

    def enrol_worker(self):
        counts = collections.Counter()
        number = 0
        while not self.stop_event.is_set():
            photo = self.enrol_pool[number % len(self.enrol_pool)]
            slot = counts[photo] // PER_COLLECTION
            counts[photo] += 1
            collection = f"ha-{self.enrol_pool.index(photo):02d}-{slot}"
            if self.enrol_one(self.front, collection, f"{self.run_id}-e{number}", photo) is None:
                return
            number += 1
            time.sleep(0.05)

    def run_for(self, seconds: float, what: str):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            phase = self.ledger.current
            fails = sum(phase.failures.values())
            log(f"  {what}: {phase.requests} requests, {fails} failures, {sum(phase.s503.values())} 503s, "
                f"{len(self.enrolled)} enrolments acknowledged so far")
        # A phase that sent nothing tested nothing: its figures would pass by default.
        phase = self.ledger.current
        if phase.requests == 0:
            phase.problems.append(f"{what}: no request was made during the phase (the load did not run)")
