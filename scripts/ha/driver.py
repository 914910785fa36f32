#!/usr/bin/env python3
"""Load and checks of the high-availability test. scripts/ha/run.sh starts the cluster, runs
this, and stops everything afterwards; actions on the cluster (kill a replica, stop Redis or
PostgreSQL) go back through `run.sh --ctl`. Python standard library only.

Steady load through Traefik for the whole run: verify workers (1:1 against subjects enrolled at
set-up, a second photo of the person where there is one) and one enrol worker (a subject with
consent and one face, each POST with its own Idempotency-Key, the same key on every retry).
Every acknowledged enrolment is recorded and looked for on every replica at the end.

Phases, each with its own counters:
  1 baseline        load only
  2 replica kill    kill -9 replica 2, load goes on, restart it; it must identify a subject
                    enrolled while it was down
  3 sync            enrol on replica 1 -> identify on replica 3 finds it within 1 s; erase on
                    replica 2 -> gone from replicas 1 and 3 (identify and index) within 1 s
  4 redis down      Redis master stopped: verifications go on, readiness says Redis is down
  5 postgres down   PostgreSQL primary stopped ~10 s: 503s only, then full recovery (timed)
  6 recovered       load after the recovery: no failures
  7 final check     every acknowledged enrolment on every replica (subject, face, identify,
                    listing), the S3 bucket, the streaming replica's readers
A feature the replicas are not configured with is reported "not configured" and fails the
run. Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

BASELINE_SECONDS = 10
REPLICA_DOWN_SECONDS = 10
REDIS_DOWN_SECONDS = 8
PG_DOWN_SECONDS = 10
RECOVERED_SECONDS = 5
SYNC_LIMIT_SECONDS = 1.0
# How long a sync is waited for before it counts as missing (the limit is checked separately).
SYNC_WAIT_SECONDS = 5.0
READY_TIMEOUT_SECONDS = 90.0
VERIFY_WORKERS = 3
# Enrolments per collection: an identify returns at most 20 candidates (verification.max_top_k),
# and every subject of a collection here is the same photo, so each must fit in one answer.
PER_COLLECTION = 15
KILLED = 2  # the replica killed in phase 2 (1-based)

T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


# --- HTTP -----------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int  # 0: no HTTP answer (refused, reset, timed out)
    body: bytes = b""
    error: str = ""
    started: float = 0.0
    finished: float = 0.0

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def code(self) -> str | None:
        """The API's error code, None when the body is not the API's error shape (a proxy's)."""
        body = self.json()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return body["error"].get("code")
        return None

    def describe(self) -> str:
        if self.status == 0:
            return f"no answer ({self.error})"
        if self.ok:
            return str(self.status)
        code = self.code
        return f"{self.status} {code}" if code else f"{self.status} (not from visage)"


class Client:
    """HTTP/1.1 to one address, a fresh connection per request: a failure is never a stale
    keep-alive connection of the client's own making."""

    def __init__(self, address: str, token: str, timeout: float = 30.0):
        host, port = address.rsplit(":", 1)
        self.host, self.port, self.token, self.timeout = host, int(port), token, timeout
        self.address = address

    def call(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
             headers: dict | None = None) -> Reply:
        all_headers = {"X-API-Key": self.token, "Connection": "close"}
        if content_type:
            all_headers["Content-Type"] = content_type
        all_headers.update(headers or {})
        started = time.monotonic()
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request(method, path, body=body, headers=all_headers)
            response = connection.getresponse()
            data = response.read()
            return Reply(response.status, data, started=started, finished=time.monotonic())
        except (OSError, http.client.HTTPException) as err:
            return Reply(0, error=type(err).__name__, started=started, finished=time.monotonic())
        finally:
            connection.close()

    def json(self, method: str, path: str, payload, headers: dict | None = None) -> Reply:
        return self.call(method, path, json.dumps(payload).encode(), "application/json", headers)

    def image(self, path: str, image: bytes, headers: dict | None = None) -> Reply:
        return self.call("POST", path, image, "image/jpeg", headers)

    def get(self, path: str) -> Reply:
        return self.call("GET", path)


# --- bookkeeping ----------------------------------------------------------------------------


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


# --- the test -------------------------------------------------------------------------------


class HaTest:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.work)
        self.token = (self.work / "admin.key").read_text().strip()
        self.front = Client(args.traefik, self.token)
        self.replicas = [Client(address, self.token) for address in args.replica]
        self.ledger = Ledger()
        self.stop = threading.Event()
        self.enrolled: list[Enrolment] = []
        self.enrolled_lock = threading.Lock()
        self.erased: set[str] = set()  # subject ids
        self.erased_faces: set[str] = set()
        self.run_id = uuid.uuid4().hex[:8]
        self.features: dict[str, str] = {}  # feature -> "" when supported, else why not
        self.problems: list[str] = []
        self.images: dict[str, list[Path]] = {}
        self.images_bytes: dict[Path, bytes] = {}
        self.verify_pairs: list[tuple[str, Path]] = []
        self.enrol_pool: list[Path] = []
        self.collections_made: set[str] = set()
        self.idempotent = {"subjects": False, "faces": False}
        self.duplicate_retries = 0
        self.stopped_at = 0.0

    # -- helpers ---------------------------------------------------------------------------

    def ctl(self, *action: str) -> str:
        env = dict(os.environ, HA_WORK=str(self.work))
        done = subprocess.run([self.args.ctl, "--ctl", *action], env=env, capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"run.sh --ctl {' '.join(action)} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def photo(self, path: Path) -> bytes:
        if path not in self.images_bytes:
            self.images_bytes[path] = path.read_bytes()
        return self.images_bytes[path]

    def ready(self, client: Client) -> tuple[bool, dict]:
        reply = client.get("/health/ready")
        body = reply.json() if reply.status in (200, 503) else None
        return reply.status == 200, (body or {}).get("checks", {}) if isinstance(body, dict) else {}

    def wait_ready(self, clients: list[Client], timeout: float = READY_TIMEOUT_SECONDS) -> float | None:
        """Seconds until every client answered ready, or None."""
        started = time.monotonic()
        pending = list(clients)
        while pending and time.monotonic() - started < timeout:
            pending = [c for c in pending if not self.ready(c)[0]]
            if pending:
                time.sleep(0.1)
        return None if pending else time.monotonic() - started

    def traefik_servers(self) -> dict:
        api = Client(self.args.traefik_api, "")
        reply = api.get("/api/http/services/visage@file")
        body = reply.json() if reply.ok else None
        return (body or {}).get("serverStatus", {}) if isinstance(body, dict) else {}

    def wait_traefik_up(self, count: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for s in self.traefik_servers().values() if s == "UP") >= count:
                return True
            time.sleep(0.2)
        return False

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

    def identify(self, client: Client, collection: str, image: Path) -> Reply:
        return client.image(f"/v1/identify?collection={collection}&top_k=20", self.photo(image))

    @staticmethod
    def candidates(reply: Reply) -> set[str]:
        body = reply.json() or {}
        return {c["subject_id"] for c in body.get("candidates", [])}

    def index_size(self, client: Client, collection: str) -> int | None:
        """Templates of a collection in the replica's in-memory 1:N index (GET /v1/collections)."""
        reply = client.get("/v1/collections")
        if not reply.ok:
            return None
        for item in (reply.json() or {}).get("collections", []):
            if item["id"] == collection:
                return item["templates"]
        return 0

    def make_collection(self, client: Client, name: str) -> Reply:
        reply = client.json("POST", "/v1/collections", {"id": name})
        if reply.status == 409 and reply.code == "collection_exists":
            return Reply(200, reply.body, started=reply.started, finished=reply.finished)
        return reply

    def new_subject(self, client: Client, collection: str, external_id: str, key: str | None) -> Reply:
        headers = {"Idempotency-Key": key} if key else None
        payload = {"external_id": external_id, "collection": collection,
                   "consent": {"given_by": "the subject", "purpose": "visage HA test"}}
        reply = client.json("POST", "/v1/subjects", payload, headers)
        if reply.status == 409 and reply.code == "subject_exists":
            # An earlier attempt was stored although its answer was lost (no idempotency):
            # the subject is there; look it up.
            found = client.get(f"/v1/subjects?collection={collection}&external_id={external_id}")
            items = (found.json() or {}).get("items", []) if found.ok else []
            if items:
                self.duplicate_retries += 1
                return Reply(201, json.dumps(items[0]).encode(), started=reply.started,
                             finished=found.finished)
            return found if not found.ok else reply
        return reply

    def enrol_face(self, client: Client, subject_id: str, image: Path, key: str | None) -> Reply:
        headers = {"Idempotency-Key": key} if key else None
        return client.image(f"/v1/subjects/{subject_id}/faces", self.photo(image), headers)

    # -- set-up ----------------------------------------------------------------------------

    def detect_features(self):
        config = {}
        for line in (self.work / "logs" / "replica1.log").read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            # JSON log lines: the event's fields at the top level (or under "fields").
            fields = entry.get("fields", entry)
            if fields.get("message") == "configuration" and "config" in fields:
                config = json.loads(fields["config"])
                break
        if not config:
            self.problems.append("replica 1 logged no configuration line: features unknown")

        def has(section: str, key: str) -> bool:
            return isinstance(config.get(section), dict) and key in config[section]

        checks = self.ready(self.replicas[0])[1]
        self.features = {
            "read replica (database.read_url)": "" if has("database", "read_url") else "database.read_url is not in the service's configuration",
            "Redis (redis.url)": "redis.url is not in the service's configuration" if not has("redis", "url")
            else "" if "redis" in checks else "readiness has no checks.redis",
            "S3 images (images.backend = s3)": "" if has("images", "backend") and config["images"]["backend"] == "s3"
            else "images.backend is not in the service's configuration",
        }

    def setup(self):
        log(f"waiting for the replicas and Traefik (run {self.run_id})")
        took = self.wait_ready(self.replicas)
        if took is None:
            raise RuntimeError("the replicas did not become ready")
        log(f"3 replicas ready after {took:.1f} s")
        if not self.wait_traefik_up(3):
            raise RuntimeError(f"Traefik does not see 3 ready replicas: {self.traefik_servers()}")
        self.detect_features()
        for feature, why in self.features.items():
            log(f"feature {feature}: " + ("configured" if not why else f"NOT CONFIGURED ({why})"))

        for folder in sorted(Path(self.args.fixtures).iterdir()):
            photos = sorted(folder.glob("*.jpg"))
            if photos:
                self.images[folder.name] = photos
        # Subjects to verify against, one per identity; their photos are the enrolment pool.
        for collection in ("ha-verify", "ha-sync", "ha-idempotency"):
            if not self.make_collection(self.front, collection).ok:
                raise RuntimeError(f"cannot create collection {collection}")
        for number, (name, photos) in enumerate(self.images.items()):
            subject = self.new_subject(self.front, "ha-verify", f"{self.run_id}-v{number}", None)
            if not subject.ok:
                raise RuntimeError(f"cannot create a subject: {subject.describe()}")
            subject_id = subject.json()["id"]
            face = self.enrol_face(self.front, subject_id, photos[0], None)
            if face.status == 422:
                continue  # no usable face in this photo (quality gate)
            if not face.ok:
                raise RuntimeError(f"cannot enrol a face: {face.describe()}")
            self.enrol_pool.append(photos[0])
            probe = photos[-1]
            if probe != photos[0]:
                check = self.front.image(f"/v1/verify?subject_id={subject_id}", self.photo(probe))
                if not (check.ok and check.json()["match"]):
                    probe = photos[0]  # this second photo does not match at the threshold
            self.verify_pairs.append((subject_id, probe))
        if len(self.enrol_pool) < 5:
            raise RuntimeError(f"only {len(self.enrol_pool)} usable fixture photos")
        second = {str(p) for photos in self.images.values() for p in photos[1:]}
        genuine = sum(1 for _, probe in self.verify_pairs if str(probe) in second)
        log(f"{len(self.verify_pairs)} subjects to verify against ({genuine} with a second photo), "
            f"{len(self.enrol_pool)} photos to enrol")
        self.probe_idempotency()

    def probe_idempotency(self):
        """The same POST twice with one Idempotency-Key: the second must return the first's result."""
        key = str(uuid.uuid4())
        external_id = f"{self.run_id}-idempotency"
        first = self.new_subject(self.front, "ha-idempotency", external_id, key)
        second = self.front.json("POST", "/v1/subjects", {
            "external_id": external_id, "collection": "ha-idempotency",
            "consent": {"given_by": "the subject", "purpose": "visage HA test"}}, {"Idempotency-Key": key})
        if not first.ok:
            raise RuntimeError(f"cannot create a subject: {first.describe()}")
        subject_id = first.json()["id"]
        self.idempotent["subjects"] = second.ok and (second.json() or {}).get("id") == subject_id
        key = str(uuid.uuid4())
        one = self.enrol_face(self.front, subject_id, self.enrol_pool[0], key)
        two = self.enrol_face(self.front, subject_id, self.enrol_pool[0], key)
        faces = self.front.get(f"/v1/subjects/{subject_id}/faces")
        count = len((faces.json() or {}).get("faces", [])) if faces.ok else -1
        ids = [(r.json() or {}).get("faces", [{}])[0].get("id") if r.ok else None for r in (one, two)]
        self.idempotent["faces"] = one.ok and two.ok and ids[0] == ids[1] and count == 1
        if self.front.call("DELETE", f"/v1/subjects/{subject_id}").status == 204:
            self.erased_faces |= {i for i in ids if i}
        for what, works in self.idempotent.items():
            route = "/v1/subjects/{id}/faces" if what == "faces" else "/v1/subjects"
            if works:
                log(f"Idempotency-Key on POST {route}: replays the first answer")
                continue
            why = f"the same POST again: {(second if what == 'subjects' else two).describe()}"
            if what == "faces":
                why += f", {count} faces stored"
            log(f"Idempotency-Key on POST {route}: NOT CONFIGURED ({why})")
            self.problems.append(f"Idempotency-Key on POST {route}: not configured ({why})")

    # -- load ------------------------------------------------------------------------------

    def enrol_one(self, client: Client, collection: str, external_id: str, photo: Path) -> Enrolment | None:
        """A subject with one face, retried with the same keys (counted like the load's)."""
        first_attempt = time.monotonic()
        if collection not in self.collections_made:
            if not self.retry("enrol", lambda: None if self.gave_up() else self.make_collection(client, collection)):
                return None
            self.collections_made.add(collection)
        subject_key, face_key = str(uuid.uuid4()), str(uuid.uuid4())
        subject = self.retry("enrol", lambda: None if self.gave_up()
                             else self.new_subject(client, collection, external_id, subject_key))
        if subject is None:
            return None
        subject_id = subject.json()["id"]
        face = self.retry("enrol", lambda: None if self.gave_up()
                          else self.enrol_face(client, subject_id, photo, face_key))
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
        while not self.stop.is_set():
            subject_id, probe = rng.choice(self.verify_pairs)
            reply = self.front.image(f"/v1/verify?subject_id={subject_id}", self.photo(probe))
            wrong = None
            if reply.ok and not (reply.json() or {}).get("match"):
                wrong = "200 but no match for the same person"
            if self.ledger.record("verify", reply, wrong) != "ok":
                time.sleep(0.1)

    def gave_up(self) -> bool:
        """An enrolment under way is finished after the load stops, but not forever."""
        return self.stop.is_set() and time.monotonic() - self.stopped_at > 30

    def enrol_worker(self):
        counts = collections.Counter()
        number = 0
        while not self.stop.is_set():
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

    # -- phases ----------------------------------------------------------------------------

    def phase_baseline(self, workers: list[threading.Thread]):
        self.ledger.begin("1 baseline", self.traefik_cut_off())
        log(f"phase 1: baseline load for {BASELINE_SECONDS} s "
            f"({VERIFY_WORKERS} verify workers, 1 enrol worker, through Traefik)")
        for worker in workers:
            worker.start()
        self.run_for(BASELINE_SECONDS, "baseline")

    def phase_kill(self):
        phase = self.ledger.begin("2 replica kill", self.traefik_cut_off())
        victim = self.replicas[KILLED - 1]
        log(f"phase 2: kill -9 replica {KILLED} ({victim.address})")
        killed_at = time.monotonic()
        self.ctl("kill-replica", str(KILLED))
        # One enrolment of our own through Traefik while the replica is down (the enrol worker's
        # may be waiting on a key the killed replica had reserved).
        probe = self.enrol_one(self.front, "ha-down", f"{self.run_id}-down", self.enrol_pool[2])
        self.run_for(max(0.0, REPLICA_DOWN_SECONDS - (time.monotonic() - killed_at)), f"replica {KILLED} down")
        with self.enrolled_lock:
            while_down = [e for e in self.enrolled if e.acked_at > killed_at]
        log(f"restarting replica {KILLED}")
        self.ctl("start-replica", str(KILLED))
        took = self.wait_ready([victim])
        if took is None:
            phase.problems.append(f"replica {KILLED} did not become ready within {READY_TIMEOUT_SECONDS:.0f} s")
            return
        phase.time_note = f"restart->ready {took:.1f} s"
        if not self.wait_traefik_up(3):
            phase.problems.append(f"Traefik did not take replica {KILLED} back")
        if probe is None:
            phase.problems.append(f"no enrolment through Traefik while replica {KILLED} was down")
            return
        reply = self.identify(victim, probe.collection, Path(probe.image))
        if not reply.ok:
            phase.problems.append(f"identify on the restarted replica: {reply.describe()}")
        elif probe.subject_id not in self.candidates(reply):
            phase.problems.append("the restarted replica does not identify a subject enrolled while it was down")
        else:
            others = sum(1 for e in while_down if e is not probe)
            phase.notes.append(f"the restarted replica identifies a subject enrolled while it was down "
                               f"(the load's {others} other enrolments meanwhile are checked at the end)")
        log(f"  replica {KILLED} ready {took:.1f} s after its restart; " + (phase.problems[-1] if phase.problems
                                                                          else phase.notes[-1]))

    @staticmethod
    def poll(client: Client, done, since: float) -> tuple[float | None, str]:
        """Calls done(client) back to back until it returns True. Returns (seconds from `since`
        to the moment the first request that saw it was sent, or None; the last answer)."""
        last = ""
        while time.monotonic() - since < SYNC_WAIT_SECONDS:
            sent = time.monotonic()
            result, last = done(client)
            if result:
                return sent - since, last
        return None, last

    def phase_sync(self):
        phase = self.ledger.begin("3 sync", self.traefik_cut_off())
        one, two, three = self.replicas
        photo = self.enrol_pool[1]
        log("phase 3: enrol on replica 1, identify on replica 3; erase on replica 2, gone from 1 and 3")
        subject = self.new_subject(one, "ha-sync", f"{self.run_id}-sync", str(uuid.uuid4()))
        face = self.enrol_face(one, subject.json()["id"], photo, str(uuid.uuid4())) if subject.ok else subject
        if not face.ok:
            phase.problems.append(f"enrolment on replica 1 failed: {face.describe()}")
            return
        subject_id = subject.json()["id"]
        # The clock starts at the acknowledgement: an identify sent that long after it finds the face.
        acked = face.finished

        def found(client):
            reply = self.identify(client, "ha-sync", photo)
            if not reply.ok:
                return False, reply.describe()
            return subject_id in self.candidates(reply), "not among the candidates"

        delay, last = self.poll(three, found, acked)
        self._sync_result(phase, "enrol 1->3", delay, last)
        indexed_one, indexed_three = self.index_size(one, "ha-sync"), self.index_size(three, "ha-sync")

        erase = two.call("DELETE", f"/v1/subjects/{subject_id}")
        if erase.status != 204:
            phase.problems.append(f"erasure on replica 2 failed: {erase.describe()}")
            return
        self.erased.add(subject_id)
        self.erased_faces.add(face.json()["faces"][0]["id"])
        erased_at = erase.finished
        # What the replicas' indexes held just before: a replica that never had the face passes
        # trivially, and says so.
        indexed_before = {1: indexed_one, 3: indexed_three}

        def gone(client):
            reply = self.identify(client, "ha-sync", photo)
            if not reply.ok:
                return False, reply.describe()
            if subject_id in self.candidates(reply):
                return False, "still identified"
            size = self.index_size(client, "ha-sync")
            return size == 0, f"identify no longer finds it, but {size} template(s) stay in the index"

        results = {}
        threads = [threading.Thread(target=lambda c=c, n=n: results.__setitem__(n, self.poll(c, gone, erased_at)))
                   for n, c in ((1, one), (3, three))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for number in (1, 3):
            delay, last = results[number]
            never = " (never indexed there)" if indexed_before[number] == 0 else ""
            self._sync_result(phase, f"erase 2->{number}", delay, last + never, never)

    @staticmethod
    def _sync_result(phase: PhaseStats, what: str, delay: float | None, last: str, remark: str = ""):
        if delay is None:
            phase.problems.append(f"{what}: not seen within {SYNC_WAIT_SECONDS:.0f} s ({last})")
            phase.time_note += f"{what} >{SYNC_WAIT_SECONDS:.0f}s; "
            log(f"  {what}: NOT seen within {SYNC_WAIT_SECONDS:.0f} s ({last})")
            return
        log(f"  {what}: seen by a request sent {delay:.2f} s after the acknowledgement{remark}")
        phase.time_note += f"{what} {delay:.2f}s{remark}; "
        if delay > SYNC_LIMIT_SECONDS:
            phase.problems.append(f"{what}: {delay:.2f} s, over the {SYNC_LIMIT_SECONDS:.0f} s limit")

    def phase_redis(self):
        phase = self.ledger.begin("4 redis down", self.traefik_cut_off(), enrol_503_ok=True)
        supported = not self.features["Redis (redis.url)"]
        log(f"phase 4: stop the Redis master for {REDIS_DOWN_SECONDS} s")
        self.ctl("stop-redis")
        stopped = time.monotonic()
        self.run_for(REDIS_DOWN_SECONDS / 2, "Redis down")
        states = []
        for number, client in enumerate(self.replicas, 1):
            ok, checks = self.ready(client)
            states.append(f"{number}: {'ready' if ok else 'NOT ready'}, redis {checks.get('redis', 'absent')}")
        log("  readiness while Redis is down: " + "; ".join(states))
        if supported:
            for number, client in enumerate(self.replicas, 1):
                checks = self.ready(client)[1]
                if checks.get("redis") in (None, "ok"):
                    phase.problems.append(f"replica {number}'s readiness does not show Redis down "
                                          f"(checks.redis = {checks.get('redis')})")
        else:
            phase.problems.append("Redis: not configured (" + self.features["Redis (redis.url)"] + ")")
        self.run_for(max(0.0, REDIS_DOWN_SECONDS - (time.monotonic() - stopped)), "Redis down")
        log("  starting the Redis master again")
        self.ctl("start-redis")
        restarted = time.monotonic()
        if supported:
            deadline = restarted + 30
            while time.monotonic() < deadline:
                if all(self.ready(c)[1].get("redis") == "ok" for c in self.replicas):
                    phase.time_note = f"redis ok again after {time.monotonic() - restarted:.1f} s"
                    break
                time.sleep(0.1)
            else:
                phase.problems.append("readiness does not show Redis back within 30 s")
        if phase.s503:
            phase.notes.append(f"enrolments answered 503 while Redis was down: {sum(phase.s503.values())}")

    def phase_pg(self):
        phase = self.ledger.begin("5 postgres down", self.traefik_cut_off(), expect_503=True)
        log(f"phase 5: stop the PostgreSQL primary (pg_ctl stop -m fast) for {PG_DOWN_SECONDS} s")
        self.ctl("stop-pg")
        self.run_for(PG_DOWN_SECONDS, "PostgreSQL down")
        with self.enrolled_lock:
            before = len(self.enrolled)
        log("  starting the PostgreSQL primary again")
        self.ctl("start-pg")
        restarted = time.monotonic()
        enrolled_after = ready_after = None
        while time.monotonic() - restarted < READY_TIMEOUT_SECONDS:
            now = time.monotonic() - restarted
            with self.enrolled_lock:
                if enrolled_after is None and any(e.acked_at > restarted for e in self.enrolled[before:]):
                    enrolled_after = now
            if ready_after is None and all(self.ready(c)[0] for c in self.replicas):
                ready_after = time.monotonic() - restarted
            if enrolled_after is not None and ready_after is not None:
                break
            time.sleep(0.1)
        if enrolled_after is None or ready_after is None:
            phase.problems.append(f"no full recovery within {READY_TIMEOUT_SECONDS:.0f} s "
                                  f"(first enrolment: {enrolled_after}, all ready: {ready_after})")
            return
        recovery = max(enrolled_after, ready_after)
        phase.time_note = f"recovery {recovery:.1f} s (enrol {enrolled_after:.1f}, ready {ready_after:.1f})"
        log(f"  recovered {recovery:.1f} s after the restart: first enrolment after {enrolled_after:.1f} s, "
            f"all replicas ready after {ready_after:.1f} s")
        if not phase.s503:
            phase.problems.append("no 503 while PostgreSQL was down")

    def phase_recovered(self):
        self.ledger.begin("6 recovered", self.traefik_cut_off())
        log(f"phase 6: load after the recovery for {RECOVERED_SECONDS} s")
        self.run_for(RECOVERED_SECONDS, "recovered")

    # -- final check -----------------------------------------------------------------------

    def final_check(self, workers: list[threading.Thread]):
        phase = self.ledger.begin("7 final check", self.traefik_cut_off())
        log("stopping the load")
        self.stopped_at = time.monotonic()
        self.stop.set()
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                phase.problems.append("a load worker did not finish within 60 s")
        with self.enrolled_lock:
            live = [e for e in self.enrolled if e.subject_id not in self.erased]
        log(f"phase 7: {len(live)} acknowledged enrolments, looked for on each replica directly")
        by_collection = collections.defaultdict(list)
        for e in live:
            by_collection[e.collection].append(e)
        missing: dict[int, set[str]] = {}
        unindexed: dict[int, set[str]] = {}
        unlisted: dict[int, set[str]] = {1: set(), 2: set(), 3: set()}
        errors: dict[int, collections.Counter] = {}
        requests = [0, 0, 0]
        faces_seen: dict[str, int] = {}

        def check(number: int, client: Client):
            lost, not_found, failed = set(), set(), collections.Counter()
            for e in live:
                for path in (f"/v1/subjects/{e.subject_id}", f"/v1/subjects/{e.subject_id}/faces"):
                    reply = client.get(path)
                    requests[number - 1] += 1
                    if reply.status == 404:
                        lost.add(e.face_id)
                    elif not reply.ok:
                        failed[reply.describe()] += 1
                    elif path.endswith("/faces"):
                        ids = [f["id"] for f in reply.json()["faces"]]
                        faces_seen[e.subject_id] = len(ids)
                        if e.face_id not in ids:
                            lost.add(e.face_id)
            for collection, members in by_collection.items():
                reply = self.identify(client, collection, Path(members[0].image))
                requests[number - 1] += 1
                if not reply.ok:
                    failed[f"identify {reply.describe()}"] += 1
                    continue
                seen = self.candidates(reply)
                not_found |= {e.face_id for e in members if e.subject_id not in seen}
                # The listing reads from the streaming replica where one is configured.
                for attempt in range(2):
                    reply = client.get(f"/v1/subjects?collection={collection}&limit=500")
                    requests[number - 1] += 1
                    if not reply.ok:
                        failed[f"listing {reply.describe()}"] += 1
                        break
                    listed = {item["id"] for item in reply.json()["items"]}
                    absent = {e.face_id for e in members if e.subject_id not in listed}
                    if not absent:
                        break
                    if attempt == 0:
                        time.sleep(1.0)  # replication lag: once more, a second later
                    else:
                        unlisted[number] |= absent
            missing[number], unindexed[number], errors[number] = lost, not_found, failed

        threads = [threading.Thread(target=check, args=(n, c)) for n, c in enumerate(self.replicas, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        phase.requests = sum(requests)
        lost_ids = set().union(*missing.values())
        phase.lost = len(lost_ids)
        for e in live:
            if e.face_id in lost_ids:
                for p in self.ledger.phases:
                    if p.name == e.phase:
                        p.lost += 1
            for p in self.ledger.phases:
                if p.name == e.phase:
                    p.acked += 1
        for number in (1, 2, 3):
            for what, count in errors[number].items():
                phase.failures[f"replica {number}: {what}"] += count
            if missing[number]:
                phase.problems.append(f"replica {number}: {len(missing[number])} acknowledged enrolments missing")
            if unlisted[number]:
                phase.problems.append(f"replica {number}: GET /v1/subjects does not list {len(unlisted[number])} of "
                                      f"{len(live)} enrolments (a second later either)")
            if unindexed[number]:
                phase.problems.append(f"replica {number}: identify misses {len(unindexed[number])} of "
                                      f"{len(live)} enrolments (1:N index not following the other replicas)")
        duplicates = sum(1 for count in faces_seen.values() if count > 1)
        if duplicates:
            phase.notes.append(f"{duplicates} subjects hold more than one face (a retried enrolment "
                               "stored twice: no idempotency)")
        if self.duplicate_retries:
            phase.notes.append(f"{self.duplicate_retries} subject creations were stored although their "
                               "answer was lost (found by external id on retry)")
        self.check_s3(phase, live)
        self.check_read_replica(phase)
        found = "; ".join(phase.problems + phase.notes) or "everything found everywhere"
        log(f"  {phase.requests} requests; {phase.lost} lost; {found}")

    def check_s3(self, phase: PhaseStats, live: list[Enrolment]):
        why = self.features["S3 images (images.backend = s3)"]
        images_dirs = [self.work / f"replica{n}" / "images" for n in (1, 2, 3)]
        local = sum(len(list(d.iterdir())) for d in images_dirs if d.is_dir())
        keys = self.s3_keys()
        if why:
            phase.problems.append(f"S3 images: not configured ({why}); {local} images in the replicas' "
                                  f"local directories, {len(keys or [])} in the bucket")
            return
        if keys is None:
            phase.problems.append("S3 images: the bucket cannot be listed")
            return
        # Object names are not part of the API; each holds its template (face) id somewhere.
        names = "\n".join(keys)
        absent = sum(1 for e in live if e.face_id not in names)
        left = sum(1 for face_id in self.erased_faces if face_id in names)
        if absent:
            phase.problems.append(f"S3 images: {absent} of {len(live)} acknowledged faces have no object in the bucket")
        if left:
            phase.problems.append(f"S3 images: {left} erased faces still have an object in the bucket")
        if local:
            phase.problems.append(f"S3 images: {local} images written to the replicas' local directories")
        phase.notes.append(f"S3: {len(keys)} objects in the bucket; every acknowledged face has one"
                           if not absent else f"S3: {len(keys)} objects in the bucket")

    def s3_keys(self) -> list[str] | None:
        """Object names in the bucket (ListObjectsV2, unsigned: moto accepts it)."""
        client = Client(self.args.s3, "")
        keys, token = [], None
        namespace = "{http://s3.amazonaws.com/doc/2006-03-01/}"
        while True:
            query = "list-type=2" + (f"&continuation-token={urllib.parse.quote(token)}" if token else "")
            reply = client.get(f"/{self.args.bucket}?{query}")
            if not reply.ok:
                return None
            root = ElementTree.fromstring(reply.body)
            keys += [item.findtext(f"{namespace}Key") or "" for item in root.findall(f"{namespace}Contents")]
            token = root.findtext(f"{namespace}NextContinuationToken")
            if not token:
                return keys

    def check_read_replica(self, phase: PhaseStats):
        why = self.features["read replica (database.read_url)"]
        if why:
            phase.problems.append(f"read replica: not configured ({why})")
            return
        # Listings read from the standby: one per replica opens its read connection.
        for client in self.replicas:
            client.get("/v1/subjects?limit=1")
        readers = self.ctl("replica-readers")
        if readers in ("", "0"):
            phase.problems.append("read replica: configured, but no visage connection to the streaming replica "
                                  "(after a listing on every replica)")
        else:
            phase.notes.append(f"read replica: {readers} visage connections on the streaming replica; every "
                               "replica lists every acknowledged subject")

    # -- report ----------------------------------------------------------------------------

    def traefik_cut_off(self) -> int:
        """Upstream attempts Traefik saw cut off (502: the replica died mid-request); with
        `status: ["502"]` in its retry middleware each was retried on another replica."""
        reply = Client(self.args.traefik_api, "").get("/metrics")
        total = 0
        for line in reply.body.decode(errors="replace").splitlines() if reply.ok else []:
            if line.startswith("traefik_service_requests_total{") and 'code="502"' in line:
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    def report(self) -> bool:
        last = self.ledger.current
        last.ended = time.monotonic()
        last.cut_off = self.traefik_cut_off() - self.ledger.cut_off_mark
        rows = []
        failed = bool(self.problems)
        for p in self.ledger.phases:
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
        for p in self.ledger.phases:
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
        for feature, why in self.features.items():
            print(f"  feature {feature}: " + ("configured" if not why else f"not configured ({why})"))
        for problem in self.problems:
            print(f"  FAIL: {problem}")
        print(f"\nHA test {'FAILED' if failed else 'passed'} in {time.monotonic() - T0:.0f} s")
        return not failed

    def run(self) -> bool:
        self.ledger.begin("0 set-up", self.traefik_cut_off())
        try:
            self.setup()
        except RuntimeError as err:
            self.problems.append(str(err))
            return self.report()
        self.ledger.phases.clear()
        workers = [threading.Thread(target=self.guarded, args=(self.verify_worker, n), daemon=True)
                   for n in range(VERIFY_WORKERS)]
        workers.append(threading.Thread(target=self.guarded, args=(self.enrol_worker,), daemon=True))
        try:
            self.phase_baseline(workers)
            self.phase_kill()
            self.phase_sync()
            self.phase_redis()
            self.phase_pg()
            self.phase_recovered()
        except RuntimeError as err:
            self.problems.append(str(err))
        self.final_check(workers)
        return self.report()


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
    return 0 if HaTest(args).run() else 1


if __name__ == "__main__":
    sys.exit(main())
