"""HTTP for the high-availability test: one request per connection to a replica or to Traefik,
the visage calls the test makes, Traefik's own API, and the S3 bucket's listing. Python
standard library only.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT_SECONDS = 90.0

T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


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


# --- visage ---------------------------------------------------------------------------------


def ready(client: Client) -> tuple[bool, dict]:
    reply = client.get("/health/ready")
    body = reply.json() if reply.status in (200, 503) else None
    return reply.status == 200, (body or {}).get("checks", {}) if isinstance(body, dict) else {}


def wait_ready(clients: list[Client], timeout: float = READY_TIMEOUT_SECONDS) -> float | None:
    """Seconds until every client answered ready, or None."""
    started = time.monotonic()
    pending = list(clients)
    while pending and time.monotonic() - started < timeout:
        pending = [c for c in pending if not ready(c)[0]]
        if pending:
            time.sleep(0.1)
    return None if pending else time.monotonic() - started


def candidates(reply: Reply) -> set[str]:
    body = reply.json() or {}
    return {c["subject_id"] for c in body.get("candidates", [])}


def index_size(client: Client, collection: str) -> int | None:
    """Templates of a collection in the replica's in-memory 1:N index (GET /v1/collections)."""
    reply = client.get("/v1/collections")
    if not reply.ok:
        return None
    for item in (reply.json() or {}).get("collections", []):
        if item["id"] == collection:
            return item["templates"]
    return 0


def make_collection(client: Client, name: str) -> Reply:
    reply = client.json("POST", "/v1/collections", {"id": name})
    if reply.status == 409 and reply.code == "collection_exists":
        return Reply(200, reply.body, started=reply.started, finished=reply.finished)
    return reply


class Api:
    """The visage calls that send a photo or create a subject: the photos are read once, and
    subject creations found stored on a retry are counted."""

    def __init__(self):
        self.images_bytes: dict[Path, bytes] = {}
        self.duplicate_retries = 0

    def photo(self, path: Path) -> bytes:
        if path not in self.images_bytes:
            self.images_bytes[path] = path.read_bytes()
        return self.images_bytes[path]

    def identify(self, client: Client, collection: str, image: Path) -> Reply:
        return client.image(f"/v1/identify?collection={collection}&top_k=20", self.photo(image))

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


# --- Traefik and S3 -------------------------------------------------------------------------


class Traefik:
    """Traefik's own API: the state of its servers and its count of cut-off requests."""

    def __init__(self, api_address: str):
        self.api_address = api_address

    def servers(self) -> dict:
        api = Client(self.api_address, "")
        reply = api.get("/api/http/services/visage@file")
        body = reply.json() if reply.ok else None
        return (body or {}).get("serverStatus", {}) if isinstance(body, dict) else {}

    def wait_up(self, count: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for s in self.servers().values() if s == "UP") >= count:
                return True
            time.sleep(0.2)
        return False

    def cut_off(self) -> int:
        """Upstream attempts Traefik saw cut off (502: the replica died mid-request); with
        `status: ["502"]` in its retry middleware each was retried on another replica."""
        reply = Client(self.api_address, "").get("/metrics")
        total = 0
        for line in reply.body.decode(errors="replace").splitlines() if reply.ok else []:
            if line.startswith("traefik_service_requests_total{") and 'code="502"' in line:
                total += int(float(line.rsplit(" ", 1)[1]))
        return total


def s3_keys(address: str, bucket: str) -> list[str] | None:
    """Object names in the bucket (ListObjectsV2, unsigned: moto accepts it)."""
    client = Client(address, "")
    keys, token = [], None
    namespace = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    while True:
        query = "list-type=2" + (f"&continuation-token={urllib.parse.quote(token)}" if token else "")
        reply = client.get(f"/{bucket}?{query}")
        if not reply.ok:
            return None
        root = ElementTree.fromstring(reply.body)
        keys += [item.findtext(f"{namespace}Key") or "" for item in root.findall(f"{namespace}Contents")]
        token = root.findtext(f"{namespace}NextContinuationToken")
        if not token:
            return keys
