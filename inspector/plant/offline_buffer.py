"""The MQTT publisher's bounded on-disk buffer: every message is stored here first (SQLite, WAL,
``synchronous=FULL``: a committed message survives a crash or a power cut), published from here, and
deleted only when the broker acknowledged it (QoS 1 PUBACK).

So a broker outage, a broken TLS handshake or a restart of the publisher loses nothing the buffer
can hold. It holds at most ``max_messages``; a message that arrives when it is full pushes out the
**oldest** one (the newest results are the ones a plant system still acts on), and every message
pushed out is counted in ``dropped`` (kept in the file, so it survives restarts and is reported in
the status message and the metrics). Each message gets a number ``n`` (SQLite's AUTOINCREMENT key:
increasing, never reused in this file), which travels in its payload; a consumer that sees a gap in
a box's ``n`` knows exactly which messages were dropped.

The file also keeps a few named JSON values (``state``): the publisher's per-camera counts, so that
a restarted publisher continues them as the PLC's counters continue.

Thread safety: every method may be called from any thread (one connection behind one lock).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (n INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
                                     payload BLOB NOT NULL, retain INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Stored:
    """One buffered message: its number, topic, payload (bytes) and retain flag."""

    n: int
    topic: str
    payload: bytes
    retain: bool = False


class BufferError(RuntimeError):
    """The buffer file cannot be opened or written (disk full, not a buffer, permissions)."""


class OfflineBuffer:
    """Bounded FIFO of MQTT messages in an SQLite file at ``path`` (created when missing)."""

    def __init__(self, path: str | Path, max_messages: int) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be >= 1")
        self.path, self.max_messages = Path(path), max_messages
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise BufferError(f"offline buffer {self.path}: {exc}") from None
        self.dropped = int(self.get_state("dropped", 0))

    # ---------------------------------------------------------------- writing
    def append(self, messages: list[tuple[str, bytes]], *, retain: bool = False,
               payload_for=None, state: dict[str, Any] | None = None) -> list[Stored]:
        """Store ``messages`` [(topic, payload)] in one transaction (one fsync) and return them as
        stored. ``payload_for(n, payload) -> bytes``, when given, rewrites each payload once its
        number is known (the publisher puts ``n`` into the JSON). ``state``: named values stored in
        the same transaction (counts that must agree with the messages after a crash). Pushes out
        the oldest messages beyond ``max_messages`` (counted in ``dropped``). Raises BufferError
        when the disk refuses (nothing of the call is stored then)."""
        stored: list[Stored] = []
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for topic, payload in messages:
                    n = self._db.execute("INSERT INTO messages (topic, payload, retain) VALUES (?, ?, ?)",
                                         (topic, payload, int(retain))).lastrowid
                    if payload_for is not None:
                        payload = payload_for(n, payload)
                        self._db.execute("UPDATE messages SET payload = ? WHERE n = ?", (payload, n))
                    stored.append(Stored(n, topic, payload, retain))
                for key, value in (state or {}).items():
                    self._put_state_locked(key, value)
                self._trim_locked()
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback_locked()
                self.dropped = int(self.get_state_locked("dropped", self.dropped))
                raise BufferError(f"offline buffer {self.path}: {exc}") from None
        return stored

    def _trim_locked(self) -> None:
        depth = self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        excess = depth - self.max_messages
        if excess > 0:
            self._db.execute("DELETE FROM messages WHERE n IN (SELECT n FROM messages ORDER BY n LIMIT ?)", (excess,))
            self.dropped += excess
            self._put_state_locked("dropped", self.dropped)

    def _rollback_locked(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def acknowledge(self, numbers: list[int]) -> None:
        """Delete the messages ``numbers`` (the broker has them). Unknown numbers are ignored."""
        if not numbers:
            return
        with self._lock:
            try:
                self._db.executemany("DELETE FROM messages WHERE n = ?", [(n,) for n in numbers])
            except sqlite3.Error as exc:
                raise BufferError(f"offline buffer {self.path}: {exc}") from None

    # ---------------------------------------------------------------- reading
    def after(self, n: int, limit: int) -> list[Stored]:
        """Up to ``limit`` stored messages numbered above ``n``, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT n, topic, payload, retain FROM messages WHERE n > ? ORDER BY n LIMIT ?",
                                    (n, limit)).fetchall()
        return [Stored(row[0], row[1], bytes(row[2]), bool(row[3])) for row in rows]

    def depth(self) -> int:
        """Messages waiting for the broker's acknowledgement."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    # ---------------------------------------------------------------- named values
    def get_state(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self.get_state_locked(key, default)

    def get_state_locked(self, key: str, default: Any = None) -> Any:
        try:
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            return default
        return default if row is None else json.loads(row[0])

    def put_state(self, key: str, value: Any) -> None:
        with self._lock:
            self._put_state_locked(key, value)

    def _put_state_locked(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def close(self) -> None:
        with self._lock:
            self._db.close()
