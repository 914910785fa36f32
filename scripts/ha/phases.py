"""Set-up, phases and final check of the high-availability test. Actions on the cluster (kill
a replica, stop Redis or PostgreSQL) go back through `scripts/ha/run.sh --ctl`.

Phases, each with its own counters:
  1 baseline        load only
  2 replica kill    kill -9 replica 2, load goes on, restart it; it must identify a subject
                    enrolled while it was down
  3 sync            enrol on replica 1 -> identify on replica 3 finds it within 1 s; erase on
                    replica 2 -> gone from replicas 1 and 3 (identify and index) within 1 s
  4 redis down      Redis master stopped: verifications go on, readiness says Redis is down
  5 postgres down   PostgreSQL primary stopped ~10 s: verify and identify go on from memory
                    (the subject erased in phase 3 stays unfound), enrolments answer 503; then
                    full recovery (timed), and every decision of the outage, with its audit
                    event, is in the database once the replicas' spools are replayed
  6 recovered       load after the recovery: no failures
  7 final check     every acknowledged enrolment on every replica (subject, face, identify,
                    listing), the S3 bucket, the streaming replica's readers
A feature the replicas are not configured with is reported "not configured" and fails the run.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

from client import (READY_TIMEOUT_SECONDS, Api, Client, Traefik, candidates, index_size, log, make_collection,
                    ready, s3_keys, wait_ready)
from load import VERIFY_WORKERS, Enrolment, Ledger, Load, PhaseStats

BASELINE_SECONDS = 10
REPLICA_DOWN_SECONDS = 10
REDIS_DOWN_SECONDS = 8
PG_DOWN_SECONDS = 10
RECOVERED_SECONDS = 5
SYNC_LIMIT_SECONDS = 1.0
# How long a sync is waited for before it counts as missing (the limit is checked separately).
SYNC_WAIT_SECONDS = 5.0
KILLED = 2  # the replica killed in phase 2 (1-based)


class HaTest:
    """The cluster under test (Traefik in front of three replicas) and what the test learns
    about it: the features the replicas run with, the subjects it erased, the problems found."""

    def __init__(self, args):
        self.args = args
        self.work = Path(args.work)
        self.token = (self.work / "admin.key").read_text().strip()
        self.front = Client(args.traefik, self.token)
        self.replicas = [Client(address, self.token) for address in args.replica]
        self.traefik = Traefik(args.traefik_api)
        self.api = Api()
        self.ledger = Ledger()
        self.run_id = uuid.uuid4().hex[:8]
        self.problems: list[str] = []
        self.load = Load(self.front, self.api, self.ledger, self.problems, self.run_id)
        self.erased: set[str] = set()  # subject ids
        self.erased_faces: set[str] = set()
        self.sync_erased: tuple[str, Path] | None = None  # the subject erased in phase 3, and its photo
        self.features: dict[str, str] = {}  # feature -> "" when supported, else why not
        self.images: dict[str, list[Path]] = {}
        self.idempotent = {"subjects": False, "faces": False}

    def ctl(self, *action: str) -> str:
        env = dict(os.environ, HA_WORK=str(self.work))
        done = subprocess.run([self.args.ctl, "--ctl", *action], env=env, capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"run.sh --ctl {' '.join(action)} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def begin(self, name: str, **flags) -> PhaseStats:
        return self.ledger.begin(name, self.traefik.cut_off(), **flags)

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

        checks = ready(self.replicas[0])[1]
        self.features = {
            "read replica (database.read_url)": "" if has("database", "read_url") else "database.read_url is not in the service's configuration",
            "Redis (redis.url)": "redis.url is not in the service's configuration" if not has("redis", "url")
            else "" if "redis" in checks else "readiness has no checks.redis",
            "S3 images (images.backend = s3)": "" if has("images", "backend") and config["images"]["backend"] == "s3"
            else "images.backend is not in the service's configuration",
        }

    def setup(self):
        log(f"waiting for the replicas and Traefik (run {self.run_id})")
        took = wait_ready(self.replicas)
        if took is None:
            raise RuntimeError("the replicas did not become ready")
        log(f"3 replicas ready after {took:.1f} s")
        if not self.traefik.wait_up(3):
            raise RuntimeError(f"Traefik does not see 3 ready replicas: {self.traefik.servers()}")
        self.detect_features()
        for feature, why in self.features.items():
            log(f"feature {feature}: " + ("configured" if not why else f"NOT CONFIGURED ({why})"))

        for folder in sorted(Path(self.args.fixtures).iterdir()):
            photos = sorted(folder.glob("*.jpg"))
            if photos:
                self.images[folder.name] = photos
        # Subjects to verify against, one per identity; their photos are the enrolment pool.
        for collection in ("ha-verify", "ha-sync", "ha-idempotency"):
            if not make_collection(self.front, collection).ok:
                raise RuntimeError(f"cannot create collection {collection}")
        for number, (name, photos) in enumerate(self.images.items()):
            subject = self.api.new_subject(self.front, "ha-verify", f"{self.run_id}-v{number}", None)
            if not subject.ok:
                raise RuntimeError(f"cannot create a subject: {subject.describe()}")
            subject_id = subject.json()["id"]
            face = self.api.enrol_face(self.front, subject_id, photos[0], None)
            if face.status == 422:
                continue  # no usable face in this photo (quality gate)
            if not face.ok:
                raise RuntimeError(f"cannot enrol a face: {face.describe()}")
            self.load.enrol_pool.append(photos[0])
            probe = photos[-1]
            if probe != photos[0]:
                check = self.front.image(f"/v1/verify?subject_id={subject_id}", self.api.photo(probe))
                if not (check.ok and check.json()["match"]):
                    probe = photos[0]  # this second photo does not match at the threshold
            self.load.verify_pairs.append((subject_id, probe))
        if len(self.load.enrol_pool) < 5:
            raise RuntimeError(f"only {len(self.load.enrol_pool)} usable fixture photos")
        second = {str(p) for photos in self.images.values() for p in photos[1:]}
        genuine = sum(1 for _, probe in self.load.verify_pairs if str(probe) in second)
        log(f"{len(self.load.verify_pairs)} subjects to verify against ({genuine} with a second photo), "
            f"{len(self.load.enrol_pool)} photos to enrol")
        self.probe_idempotency()

    def probe_idempotency(self):
        """The same POST twice with one Idempotency-Key: the second must return the first's result."""
        key = str(uuid.uuid4())
        external_id = f"{self.run_id}-idempotency"
        first = self.api.new_subject(self.front, "ha-idempotency", external_id, key)
        second = self.front.json("POST", "/v1/subjects", {
            "external_id": external_id, "collection": "ha-idempotency",
            "consent": {"given_by": "the subject", "purpose": "visage HA test"}}, {"Idempotency-Key": key})
        if not first.ok:
            raise RuntimeError(f"cannot create a subject: {first.describe()}")
        subject_id = first.json()["id"]
        self.idempotent["subjects"] = second.ok and (second.json() or {}).get("id") == subject_id
        key = str(uuid.uuid4())
        one = self.api.enrol_face(self.front, subject_id, self.load.enrol_pool[0], key)
        two = self.api.enrol_face(self.front, subject_id, self.load.enrol_pool[0], key)
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

    # -- phases ----------------------------------------------------------------------------

    def phase_baseline(self, workers: list[threading.Thread]):
        self.begin("1 baseline")
        log(f"phase 1: baseline load for {BASELINE_SECONDS} s "
            f"({VERIFY_WORKERS} verify workers, 1 enrol worker, through Traefik)")
        for worker in workers:
            worker.start()
        self.load.run_for(BASELINE_SECONDS, "baseline")

    def phase_kill(self):
        phase = self.begin("2 replica kill")
        victim = self.replicas[KILLED - 1]
        log(f"phase 2: kill -9 replica {KILLED} ({victim.address})")
        killed_at = time.monotonic()
        self.ctl("kill-replica", str(KILLED))
        # One enrolment of our own through Traefik while the replica is down (the enrol worker's
        # may be waiting on a key the killed replica had reserved).
        probe = self.load.enrol_one(self.front, "ha-down", f"{self.run_id}-down", self.load.enrol_pool[2])
        self.load.run_for(max(0.0, REPLICA_DOWN_SECONDS - (time.monotonic() - killed_at)), f"replica {KILLED} down")
        with self.load.enrolled_lock:
            while_down = [e for e in self.load.enrolled if e.acked_at > killed_at]
        log(f"restarting replica {KILLED}")
        self.ctl("start-replica", str(KILLED))
        took = wait_ready([victim])
        if took is None:
            phase.problems.append(f"replica {KILLED} did not become ready within {READY_TIMEOUT_SECONDS:.0f} s")
            return
        phase.time_note = f"restart->ready {took:.1f} s"
        if not self.traefik.wait_up(3):
            phase.problems.append(f"Traefik did not take replica {KILLED} back")
        if probe is None:
            phase.problems.append(f"no enrolment through Traefik while replica {KILLED} was down")
            return
        reply = self.api.identify(victim, probe.collection, Path(probe.image))
        if not reply.ok:
            phase.problems.append(f"identify on the restarted replica: {reply.describe()}")
        elif probe.subject_id not in candidates(reply):
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
        phase = self.begin("3 sync")
        one, two, three = self.replicas
        photo = self.load.enrol_pool[1]
        log("phase 3: enrol on replica 1, identify on replica 3; erase on replica 2, gone from 1 and 3")
        subject = self.api.new_subject(one, "ha-sync", f"{self.run_id}-sync", str(uuid.uuid4()))
        face = self.api.enrol_face(one, subject.json()["id"], photo, str(uuid.uuid4())) if subject.ok else subject
        if not face.ok:
            phase.problems.append(f"enrolment on replica 1 failed: {face.describe()}")
            return
        subject_id = subject.json()["id"]
        # The clock starts at the acknowledgement: an identify sent that long after it finds the face.
        acked = face.finished

        def found(client):
            reply = self.api.identify(client, "ha-sync", photo)
            if not reply.ok:
                return False, reply.describe()
            return subject_id in candidates(reply), "not among the candidates"

        delay, last = self.poll(three, found, acked)
        self._sync_result(phase, "enrol 1->3", delay, last)
        indexed_one, indexed_three = index_size(one, "ha-sync"), index_size(three, "ha-sync")

        erase = two.call("DELETE", f"/v1/subjects/{subject_id}")
        if erase.status != 204:
            phase.problems.append(f"erasure on replica 2 failed: {erase.describe()}")
            return
        self.erased.add(subject_id)
        self.erased_faces.add(face.json()["faces"][0]["id"])
        self.sync_erased = (subject_id, photo)
        erased_at = erase.finished
        # What the replicas' indexes held just before: a replica that never had the face passes
        # trivially, and says so.
        indexed_before = {1: indexed_one, 3: indexed_three}

        def gone(client):
            reply = self.api.identify(client, "ha-sync", photo)
            if not reply.ok:
                return False, reply.describe()
            if subject_id in candidates(reply):
                return False, "still identified"
            size = index_size(client, "ha-sync")
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
        phase = self.begin("4 redis down", enrol_503_ok=True)
        supported = not self.features["Redis (redis.url)"]
        log(f"phase 4: stop the Redis master for {REDIS_DOWN_SECONDS} s")
        self.ctl("stop-redis")
        stopped = time.monotonic()
        self.load.run_for(REDIS_DOWN_SECONDS / 2, "Redis down")
        states = []
        for number, client in enumerate(self.replicas, 1):
            ok, checks = ready(client)
            states.append(f"{number}: {'ready' if ok else 'NOT ready'}, redis {checks.get('redis', 'absent')}")
        log("  readiness while Redis is down: " + "; ".join(states))
        if supported:
            for number, client in enumerate(self.replicas, 1):
                checks = ready(client)[1]
                if checks.get("redis") in (None, "ok"):
                    phase.problems.append(f"replica {number}'s readiness does not show Redis down "
                                          f"(checks.redis = {checks.get('redis')})")
        else:
            phase.problems.append("Redis: not configured (" + self.features["Redis (redis.url)"] + ")")
        self.load.run_for(max(0.0, REDIS_DOWN_SECONDS - (time.monotonic() - stopped)), "Redis down")
        log("  starting the Redis master again")
        self.ctl("start-redis")
        restarted = time.monotonic()
        if supported:
            deadline = restarted + 30
            while time.monotonic() < deadline:
                if all(ready(c)[1].get("redis") == "ok" for c in self.replicas):
                    phase.time_note = f"redis ok again after {time.monotonic() - restarted:.1f} s"
                    break
                time.sleep(0.1)
            else:
                phase.problems.append("readiness does not show Redis back within 30 s")
        if phase.s503:
            phase.notes.append(f"enrolments answered 503 while Redis was down: {sum(phase.s503.values())}")

    def identify_during_outage(self, stop: threading.Event, live: list[Enrolment]):
        """Identifies enrolled faces (each must be found) and the subject erased in phase 3
        (never found again) through Traefik, until `stop`."""
        number = 0
        while not stop.is_set():
            if self.sync_erased and (number % 4 == 3 or not live):
                subject_id, photo = self.sync_erased
                reply = self.api.identify(self.front, "ha-sync", photo)
                wrong = "the subject erased before the outage was identified" \
                    if reply.ok and subject_id in candidates(reply) else None
            else:
                e = live[number % len(live)]
                reply = self.api.identify(self.front, e.collection, Path(e.image))
                wrong = "200 but the enrolled subject is not among the candidates" \
                    if reply.ok and e.subject_id not in candidates(reply) else None
            if self.ledger.record("identify", reply, wrong) == "ok":
                self.load.note_decision(reply)
            number += 1
            time.sleep(0.2)

    def phase_pg(self):
        phase = self.begin("5 postgres down", enrol_503_ok=True)
        log(f"phase 5: stop the PostgreSQL primary (pg_ctl stop -m fast) for {PG_DOWN_SECONDS} s; "
            "verify and identify must go on")
        with self.load.enrolled_lock:
            live = [e for e in self.load.enrolled if e.subject_id not in self.erased]
        self.load.decision_ids = []
        stop_identify = threading.Event()
        identifier = threading.Thread(target=self.identify_during_outage, args=(stop_identify, live), daemon=True)
        self.ctl("stop-pg")
        identifier.start()
        self.load.run_for(PG_DOWN_SECONDS, "PostgreSQL down")
        stop_identify.set()
        identifier.join(timeout=30)
        with self.ledger.lock:
            decided, self.load.decision_ids = self.load.decision_ids, None
        states = []
        for number, client in enumerate(self.replicas, 1):
            reply = client.get("/health/read")
            checks = (reply.json() or {}).get("checks", {})
            states.append(f"{number}: {checks.get('mode')}, {checks.get('spooled_events')} spooled")
            if checks.get("mode") != "read-only":
                phase.problems.append(f"replica {number}'s readiness does not say read-only: {reply.describe()}")
        log("  replicas while PostgreSQL is down: " + "; ".join(states))
        with self.load.enrolled_lock:
            before = len(self.load.enrolled)
        log("  starting the PostgreSQL primary again")
        self.ctl("start-pg")
        restarted = time.monotonic()
        enrolled_after = ready_after = None
        while time.monotonic() - restarted < READY_TIMEOUT_SECONDS:
            now = time.monotonic() - restarted
            with self.load.enrolled_lock:
                if enrolled_after is None and any(e.acked_at > restarted for e in self.load.enrolled[before:]):
                    enrolled_after = now
            if ready_after is None and all(ready(c)[0] for c in self.replicas):
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
            phase.problems.append("no enrolment answered 503 while PostgreSQL was down")
        self.check_outage_decisions(phase, decided)

    def check_outage_decisions(self, phase: PhaseStats, decided: list[str]):
        """Every decision answered during the outage, and its audit event, reached the
        database once the replicas' spools were replayed."""
        if not decided:
            phase.problems.append("no verify or identify succeeded while PostgreSQL was down")
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            waiting = [(c.get("/health/ready").json() or {}).get("checks", {}).get("spooled_events")
                       for c in self.replicas]
            if all(w == 0 for w in waiting):
                break
            time.sleep(0.2)
        else:
            phase.problems.append(f"spools not replayed within 30 s (spooled_events {waiting})")
        ids_file = self.work / "outage-decisions.txt"
        ids_file.write_text("\n".join(decided) + "\n")
        kept, audited = (int(n) for n in self.ctl("decisions-kept", str(ids_file)).split("|"))
        log(f"  {len(decided)} decisions answered during the outage: {kept} in the database, "
            f"{audited} audit events naming them")
        phase.notes.append(f"outage: {len(decided)} decisions answered, {kept} kept, {audited} audited")
        if kept != len(decided) or audited != len(decided):
            phase.problems.append(f"of {len(decided)} decisions answered during the outage, {kept} are in the "
                                  f"database and {audited} audit events name them (each must be there once)")

    def phase_recovered(self):
        self.begin("6 recovered")
        log(f"phase 6: load after the recovery for {RECOVERED_SECONDS} s")
        self.load.run_for(RECOVERED_SECONDS, "recovered")

    # -- final check -----------------------------------------------------------------------

    def final_check(self, workers: list[threading.Thread]):
        phase = self.begin("7 final check")
        log("stopping the load")
        self.load.stop()
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                phase.problems.append("a load worker did not finish within 60 s")
        with self.load.enrolled_lock:
            live = [e for e in self.load.enrolled if e.subject_id not in self.erased]
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
                reply = self.api.identify(client, collection, Path(members[0].image))
                requests[number - 1] += 1
                if not reply.ok:
                    failed[f"identify {reply.describe()}"] += 1
                    continue
                seen = candidates(reply)
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
        # Every POST was retried with its Idempotency-Key: anything stored twice is a failure.
        duplicates = sum(1 for count in faces_seen.values() if count > 1)
        if duplicates:
            phase.problems.append(f"{duplicates} subjects hold more than one face (a retried enrolment "
                                  "stored twice: the Idempotency-Key did not replay)")
        if self.api.duplicate_retries:
            phase.problems.append(f"{self.api.duplicate_retries} subject creations were stored although their "
                                  "retry was refused as subject_exists (the Idempotency-Key did not replay)")
        self.check_s3(phase, live)
        self.check_read_replica(phase)
        found = "; ".join(phase.problems + phase.notes) or "everything found everywhere"
        log(f"  {phase.requests} requests; {phase.lost} lost; {found}")

    def check_s3(self, phase: PhaseStats, live: list[Enrolment]):
        why = self.features["S3 images (images.backend = s3)"]
        images_dirs = [self.work / f"replica{n}" / "images" for n in (1, 2, 3)]
        local = sum(len(list(d.iterdir())) for d in images_dirs if d.is_dir())
        keys = s3_keys(self.args.s3, self.args.bucket)
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
