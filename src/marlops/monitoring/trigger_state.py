"""The retrain trigger's memory, in one sqlite file (``STATE_DIR/webhook.sqlite``), so a restart keeps
replay protection, de-duplication, the cooldown and the run records.

Tables: ``signatures`` (seen request signatures until their timestamp window closes), ``alerts`` (every
accepted alert id and what became of it), ``triggers`` (each retraining the receiver started: status,
the pipeline's run id, timings). sqlite gives atomic, durable writes; one lock serialises the
check-and-set decisions of concurrent requests. A run's id and detail are stored as plain text: ANSI
escape sequences (rich's and kfp's coloured output inside an exception message) and other control
characters are stripped (:func:`plain_text`), so ``GET /runs`` shows what a terminal would.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signatures (signature TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY, received_at REAL NOT NULL, outcome TEXT NOT NULL, trigger_id TEXT
);
CREATE TABLE IF NOT EXISTS triggers (
    trigger_id TEXT PRIMARY KEY, alert_id TEXT NOT NULL, created_at REAL NOT NULL, finished_at REAL,
    status TEXT NOT NULL, run_id TEXT, detail TEXT
);
"""

# CSI (colours, cursor moves); OSC (titles, hyperlinks) and DCS/PM/APC strings, ended by BEL or
# ESC + backslash; any other escape (charset selection, …); the 8-bit CSI
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -/]*[0-~]?|\x9b[0-?]*[ -/]*[@-~]"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # keeps \t and \n


def plain_text(value: Any) -> Any:
    """``value`` with every string in it (in dicts and lists too) stripped of ANSI escape sequences and
    control characters other than tab and newline."""
    if isinstance(value, str):
        return _CONTROL.sub("", _ANSI.sub("", value))
    if isinstance(value, dict):
        return {plain_text(k): plain_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_text(v) for v in value]
    return value


@dataclass(frozen=True)
class TriggerRecord:
    trigger_id: str
    alert_id: str
    created_at: float
    finished_at: float | None
    status: str  # submitting | submitted | failed
    run_id: str | None
    detail: dict | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class TriggerState:
    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / "webhook.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self.lock = threading.RLock()

    def close(self) -> None:
        with self.lock:
            self._db.close()

    # -- replay protection -------------------------------------------------------------------------

    def remember_signature(self, signature: str, expires: float, now: float) -> bool:
        """False if ``signature`` was seen (a replay); True after recording it. Prunes expired ones."""
        with self.lock:
            self._db.execute("DELETE FROM signatures WHERE expires < ?", (now,))
            cur = self._db.execute(
                "INSERT OR IGNORE INTO signatures (signature, expires) VALUES (?, ?)", (signature, expires)
            )
            return cur.rowcount == 1

    # -- alerts and triggers -----------------------------------------------------------------------

    def alert_outcome(self, alert_id: str) -> tuple[str, str | None] | None:
        with self.lock:
            row = self._db.execute(
                "SELECT outcome, trigger_id FROM alerts WHERE alert_id = ?", (alert_id,)
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def record_alert(self, alert_id: str, outcome: str, now: float, trigger_id: str | None = None) -> None:
        with self.lock:
            self._db.execute(
                "INSERT OR REPLACE INTO alerts (alert_id, received_at, outcome, trigger_id)"
                " VALUES (?, ?, ?, ?)",
                (alert_id, now, outcome, trigger_id),
            )

    def last_active_trigger(self) -> TriggerRecord | None:
        """The newest trigger that did not fail (a failed submission does not hold the cooldown)."""
        with self.lock:
            row = self._db.execute(
                "SELECT * FROM triggers WHERE status != 'failed' ORDER BY created_at DESC LIMIT 1"
            ).fetchone()
        return None if row is None else _record(row)

    def start_trigger(self, alert_id: str, now: float) -> TriggerRecord:
        tid = uuid.uuid4().hex[:16]
        with self.lock:
            self._db.execute(
                "INSERT INTO triggers (trigger_id, alert_id, created_at, status)"
                " VALUES (?, ?, ?, 'submitting')",
                (tid, alert_id, now),
            )
        return TriggerRecord(tid, alert_id, now, None, "submitting", None, None)

    def finish_trigger(
        self, trigger_id: str, status: str, run_id: str | None, detail: dict | None, now: float | None = None
    ) -> None:
        with self.lock:
            self._db.execute(
                "UPDATE triggers SET status = ?, run_id = ?, detail = ?, finished_at = ?"
                " WHERE trigger_id = ?",
                (
                    status,
                    plain_text(run_id),
                    json.dumps(plain_text(json.loads(json.dumps(detail, default=str)))) if detail else None,
                    now or time.time(),
                    trigger_id,
                ),
            )

    def triggers(self, limit: int = 100) -> list[TriggerRecord]:
        with self.lock:
            rows = self._db.execute(
                "SELECT * FROM triggers ORDER BY created_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_record(r) for r in rows]

    def trigger(self, trigger_id: str) -> TriggerRecord | None:
        with self.lock:
            row = self._db.execute("SELECT * FROM triggers WHERE trigger_id = ?", (trigger_id,)).fetchone()
        return None if row is None else _record(row)


def _record(row: tuple) -> TriggerRecord:
    tid, alert_id, created, finished, status, run_id, detail = row
    return TriggerRecord(
        tid, alert_id, created, finished, status, run_id, json.loads(detail) if detail else None
    )
