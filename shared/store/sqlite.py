"""SqliteTicketStore: the embedded store for local runs (one file under LOCAL_DATA_DIR)."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from pathlib import Path

from shared.store._models import OAuthState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS oauth_states (
    state TEXT PRIMARY KEY,
    code_verifier TEXT NOT NULL,
    instance_url TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    started_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
"""


class SqliteTicketStore:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add_oauth_state(self, state: OAuthState) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO oauth_states VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    state.state,
                    state.code_verifier,
                    state.instance_url,
                    state.redirect_uri,
                    state.started_by,
                    state.created_at.isoformat(),
                    state.expires_at.isoformat(),
                ),
            )

    def take_oauth_state(self, state: str) -> OAuthState | None:
        with self._lock:
            row = self._db.execute(
                "DELETE FROM oauth_states WHERE state = ? RETURNING "
                "state, code_verifier, instance_url, redirect_uri, started_by, created_at, expires_at",
                (state,),
            ).fetchone()
        if row is None:
            return None
        return OAuthState(
            state=row[0],
            code_verifier=row[1],
            instance_url=row[2],
            redirect_uri=row[3],
            started_by=row[4],
            created_at=datetime.fromisoformat(row[5]),
            expires_at=datetime.fromisoformat(row[6]),
        )

    def purge_oauth_states(self, before: datetime) -> int:
        with self._lock:
            cursor = self._db.execute("DELETE FROM oauth_states WHERE expires_at < ?", (before.isoformat(),))
        return cursor.rowcount
