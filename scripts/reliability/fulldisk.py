"""A full disk, embedded storage: the data directory on a small tmpfs of its own, filled up.
Enrolment must answer 503 with a stable code (never another 5xx, never a 2xx it cannot keep),
reads go on, nothing stored before is lost or corrupted, and the service recovers by itself
when space returns.

    python3 scripts/reliability/fulldisk.py --bin target/debug/visage [--size-mib 64]

Mounting a tmpfs needs root (CI runs as root); without it the script says so and fails.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Server, integrity, log, photos, verdict

# What a refused write may answer while the disk is full.
FULL_DISK_CODES = {"storage_unavailable", "image_storage_unavailable"}


def enrol(server: Server, number: int, picture: Path):
    """A subject with one face; the replies of both steps."""
    payload = {"external_id": f"fd-{number}", "consent": {"given_by": "the subject", "purpose": "full disk test"}}
    subject = server.client.json("POST", "/v1/subjects", payload)
    if subject.status != 201:
        return subject, None
    face = server.client.image(f"/v1/subjects/{subject.json()['id']}/faces", picture.read_bytes())
    return subject, face


def fill(directory: Path, leave: int) -> Path:
    """Writes a file that leaves about `leave` bytes free on the file system."""
    filler = directory / "filler"
    free = shutil.disk_usage(directory).free
    with open(filler, "wb") as out:
        chunk = b"\0" * (1 << 20)
        remaining = max(0, free - leave)
        while remaining > 0:
            written = out.write(chunk[: min(len(chunk), remaining)])
            remaining -= written
    return filler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", required=True, type=Path)
    parser.add_argument("--size-mib", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="visage-fulldisk-"))
    mount = work / "disk"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.size_mib}m,mode=0700", "tmpfs", str(mount)],
                       check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as err:
        print(f"full disk check: cannot mount a tmpfs ({getattr(err, 'stderr', '') or err}); it needs root")
        return 1
    try:
        return run(args, work, mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def run(args, work: Path, mount: Path) -> int:
    problems: list[str] = []
    server = Server(args.bin.resolve(), mount / "data", work / "visage.log", {"VISAGE_STORAGE__STORE_IMAGES": "true"})
    server.start()
    pictures = [p for p in photos()
                if len((server.client.image("/v1/detect", p.read_bytes()).json() or {}).get("faces", [])) == 1]
    log(f"full disk: data directory on a {args.size_mib} MiB tmpfs ({mount})")
    acked: dict[str, tuple[str, Path]] = {}  # subject id -> (face id, photo)
    number = 0

    def enrol_and_note(answers: collections.Counter) -> bool:
        nonlocal number
        picture = pictures[number % len(pictures)]
        subject, face = enrol(server, number, picture)
        number += 1
        last = face if face is not None else subject
        answers[last.status if last.ok else f"{last.status} {last.code}"] += 1
        if face is not None and face.status == 201:
            acked[subject.json()["id"]] = (face.json()["faces"][0]["id"], picture)
            return True
        if not (last.status == 503 and last.code in FULL_DISK_CODES):
            problems.append(f"an enrolment answered {last.describe()}, not 201 or 503 with a full-disk code")
        return False

    before = collections.Counter()
    for _ in range(10):
        enrol_and_note(before)
    stored_before = dict(acked)
    filler = fill(mount, leave=64 * 1024)
    log(f"  {len(acked)} subjects enrolled, then the disk filled ({shutil.disk_usage(mount).free} bytes free)")

    full = collections.Counter()
    for _ in range(30):
        enrol_and_note(full)
    reads = collections.Counter()
    for subject_id, (face_id, picture) in list(stored_before.items())[:5]:
        reply = server.client.get(f"/v1/subjects/{subject_id}/faces")
        reads["get faces " + (str(reply.status) if reply.ok else reply.describe())] += 1
        verify = server.client.image(f"/v1/verify?subject_id={subject_id}", picture.read_bytes())
        reads["verify " + (str(verify.status) if verify.ok else verify.describe())] += 1
        if verify.ok and not verify.json().get("match"):
            problems.append("a verification of an enrolled subject did not match while the disk was full")
    live = server.client.get("/health/live").ok
    log(f"  while full: enrolments {dict(full)}; reads {dict(reads)}; live {live}")
    if not live:
        problems.append("the process stopped answering /health/live while the disk was full")
    if not any(str(k).startswith("503") for k in full):
        problems.append("no enrolment was refused while the disk was full (was it full?)")
    if any(not str(k).startswith("get faces 200") for k in reads if str(k).startswith("get faces")):
        problems.append(f"reads failed while the disk was full: {dict(reads)}")

    filler.unlink()
    freed = time.monotonic()
    recovered_after = None
    after = collections.Counter()
    while time.monotonic() - freed < 30:
        if enrol_and_note(after):
            recovered_after = time.monotonic() - freed
            break
        time.sleep(0.2)
    if recovered_after is None:
        problems.append("enrolment did not work again within 30 s of space returning")

    server.stop()
    checked = integrity(server.database)
    if checked != "ok":
        problems.append(f"PRAGMA integrity_check: {checked}")
    server.start()
    missing = 0
    for subject_id, (face_id, picture) in acked.items():
        reply = server.client.get(f"/v1/subjects/{subject_id}/faces")
        faces = {f["id"] for f in (reply.json() or {}).get("faces", [])} if reply.ok else set()
        if face_id not in faces or not (server.data_dir / "images" / f"{face_id}.img").exists():
            missing += 1
    sample = list(acked.items())[:3]
    for subject_id, (_, picture) in sample:
        verify = server.client.image(f"/v1/verify?subject_id={subject_id}", picture.read_bytes())
        if not (verify.ok and verify.json().get("match")):
            problems.append(f"after the restart a stored subject does not verify: {verify.describe()}")
    server.stop()
    if missing:
        problems.append(f"{missing} of {len(acked)} acknowledged enrolments missing (template or image) after restart")

    return verdict(
        f"full disk, embedded storage ({args.size_mib} MiB tmpfs)",
        [
            ("enrolled before the disk filled", f"{len(stored_before)} ({dict(before)})"),
            ("enrolments while full", str(dict(full))),
            ("reads while full", str(dict(reads))),
            ("space returned -> enrolment works", f"{recovered_after:.2f} s" if recovered_after is not None else "no"),
            ("integrity_check after restart", checked),
            ("acknowledged enrolments kept", f"{len(acked) - missing} of {len(acked)}"),
        ],
        problems,
        "full disk check",
    )


if __name__ == "__main__":
    if os.geteuid() != 0:
        # A developer's machine without root skips it, loudly; CI (root) must run it.
        print("full disk check: SKIPPED, it needs root to mount a tmpfs" + ("" if os.environ.get("CI") else
              " (CI=true makes this a failure)"))
        sys.exit(1 if os.environ.get("CI") else 0)
    sys.exit(main())
