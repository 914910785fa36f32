"""What the reliability scripts share: a `visage serve` on the embedded storage that they start,
kill and restart, the photos they send, and a table printer. Python standard library only;
HTTP through the HA test's client (scripts/ha/client.py).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "ha"))

from client import Client, Reply, log  # noqa: E402

__all__ = ["Client", "Reply", "log", "Server", "photos", "integrity", "stored_templates", "table", "verdict",
           "rss_mib", "ROOT"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photos() -> list[Path]:
    """One photo per person of the LFW fixtures, for enrolments."""
    people = sorted((ROOT / "tests" / "fixtures" / "lfw").iterdir())
    return [sorted(p.glob("*.jpg"))[0] for p in people if p.is_dir() and any(p.glob("*.jpg"))]


class Server:
    """One `visage serve` on a data directory, with an admin key made by `visage keys create`.
    The caller's VISAGE_* variables are dropped: a stray one must not change what is tested."""

    def __init__(self, binary: Path, data_dir: Path, log_path: Path, extra_env: dict | None = None):
        self.binary, self.data_dir, self.log_path = binary, data_dir, log_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VISAGE_")}
        self.env.update({
            "VISAGE_LOG": "warn",
            "VISAGE_MODELS__DIR": str(ROOT / "models"),
            "VISAGE_LIVENESS__VERIFY": "off",
        })
        self.env.update(extra_env or {})
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        data_dir.mkdir(parents=True, exist_ok=True)
        key = subprocess.run([str(binary), "keys", "create", "--data-dir", str(data_dir), "--name", "reliability",
                              "--role", "admin"], env=self.env, capture_output=True, text=True, check=True)
        self.token = key.stdout.strip()
        self.client = Client(f"127.0.0.1:{self.port}", self.token, timeout=30.0)

    def start(self, timeout: float = 90.0) -> float:
        """Starts the server and waits until it is ready; returns the seconds it took."""
        started = time.monotonic()
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [str(self.binary), "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT)
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"visage serve exited with {self.process.returncode}; see {self.log_path}")
            if self.client.get("/health/ready").ok:
                return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError(f"visage serve not ready within {timeout:.0f} s; see {self.log_path}")

    def kill(self, sig: int = signal.SIGKILL):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=60)
        self.process = None

    def stop(self):
        self.kill(signal.SIGTERM)

    @property
    def database(self) -> Path:
        return self.data_dir / "visage.db"


def integrity(database: Path) -> str:
    """SQLite's own check of the whole file ("ok" when sound)."""
    with sqlite3.connect(database) as conn:
        return "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))


def stored_templates(database: Path) -> dict[str, int]:
    """Templates per collection, as the database has them."""
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT s.collection_id, count(*) FROM templates t JOIN subjects s ON s.id = t.subject_id "
                            "GROUP BY s.collection_id")
        return {collection: count for collection, count in rows}


def table(rows: list[tuple[str, str]]):
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")


def verdict(title: str, rows: list[tuple[str, str]], problems: list[str], check: str) -> int:
    """Prints a script's table and problems; returns its exit status."""
    print()
    print(title)
    table(rows + [("problems", str(len(problems)))])
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    print(f"{check} passed" if not problems else f"{check} FAILED")
    return 1 if problems else 0


def rss_mib(pid: int) -> float:
    """Resident memory of a process."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0
