"""SqliteTicketStore: the embedded store for local runs (one file under LOCAL_DATA_DIR)."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.store._models import IdempotencyRecord, OAuthState, StoreConflict, Unstamped, check_size, prefix_end
from shared.store.sqlite_scores import SqliteSecureScores
from shared.tickets import Ticket

_ALL_TICKETS = "SELECT data, version FROM tickets ORDER BY rowid"
# A tenant's tickets; the home tenant's from before tenants carry no tenant at all.
_TENANT_TICKETS = (
    "SELECT data, version FROM tickets WHERE COALESCE(json_extract(data, '$.tenant'), '') = ? ORDER BY rowid"
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS oauth_states (
    state TEXT PRIMARY KEY,
    code_verifier TEXT NOT NULL,
    instance_url TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    started_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    browser_hash TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS tickets (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    recommendation_id TEXT NOT NULL,
    status TEXT NOT NULL,
    sys_id TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_sys_id ON tickets (sys_id);
CREATE TABLE IF NOT EXISTS claims (
    recommendation_id TEXT PRIMARY KEY,
    ticket_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS secure_score (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS secure_score_controls (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tenant_scores (
    tenant TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tenant_controls (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE IF NOT EXISTS documents (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    ticket_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT ''
);
"""


class SqliteTicketStore(SqliteSecureScores):
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
        self._db.executescript(_SCHEMA)
        self._add_column("idempotency_keys", "created_at")  # a store from before keys expired
        self._add_column("oauth_states", "browser_hash")  # a store from before states were bound to a browser
        self._add_column("oauth_states", "connection")  # a store from before connections

    def _add_column(self, table: str, column: str) -> None:
        columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")

    def close(self) -> None:
        self._db.close()

    def add_oauth_state(self, state: OAuthState) -> None:
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO oauth_states (state, code_verifier, instance_url, redirect_uri, started_by, "
                    "created_at, expires_at, browser_hash, connection) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        state.state,
                        state.code_verifier,
                        state.instance_url,
                        state.redirect_uri,
                        state.started_by,
                        state.created_at.isoformat(),
                        state.expires_at.isoformat(),
                        state.browser_hash,
                        state.connection,
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise StoreConflict("the OAuth state exists") from exc

    def take_oauth_state(self, state: str) -> OAuthState | None:
        with self._lock:
            row = self._db.execute(
                "DELETE FROM oauth_states WHERE state = ? RETURNING "
                "state, code_verifier, instance_url, redirect_uri, started_by, created_at, expires_at, browser_hash, "
                "connection",
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
            browser_hash=row[7],
            connection=row[8],
        )

    def purge_oauth_states(self, before: datetime) -> int:
        with self._lock:
            cursor = self._db.execute("DELETE FROM oauth_states WHERE expires_at < ?", (before.isoformat(),))
        return cursor.rowcount

    # -- tickets ------------------------------------------------------------------------------------

    def add_ticket(self, ticket: Ticket) -> str:
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO tickets VALUES (?, 1, ?, ?, ?, ?)",
                    (ticket.id, ticket.recommendation_id, ticket.status, ticket.sys_id, json.dumps(ticket.to_record())),
                )
        except sqlite3.IntegrityError as exc:
            raise StoreConflict(f"ticket {ticket.id} exists") from exc
        return "1"

    def get_ticket(self, ticket_id: str) -> tuple[Ticket, str] | None:
        with self._lock:
            row = self._db.execute("SELECT data, version FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        return None if row is None else (Ticket.from_record(json.loads(row[0])), str(row[1]))

    def update_ticket(self, ticket: Ticket, etag: str) -> str:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE tickets SET version = version + 1, status = ?, sys_id = ?, data = ? "
                "WHERE id = ? AND version = ?",
                (ticket.status, ticket.sys_id, json.dumps(ticket.to_record()), ticket.id, int(etag)),
            )
        if cursor.rowcount != 1:
            raise StoreConflict(f"ticket {ticket.id} changed")
        return str(int(etag) + 1)

    def delete_ticket(self, ticket_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM tickets WHERE id = ?", (ticket_id,))

    def begin_creation(self, ticket: Ticket, replacing: str | None = None) -> tuple[str | None, str]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rec = ticket.claim_key
                cursor = None
                if replacing is not None:
                    cursor = self._db.execute(
                        "UPDATE claims SET ticket_id = ? WHERE recommendation_id = ? AND ticket_id = ?",
                        (ticket.id, rec, replacing),
                    )
                if cursor is None or cursor.rowcount == 0:
                    cursor = self._db.execute("INSERT OR IGNORE INTO claims VALUES (?, ?)", (rec, ticket.id))
                if cursor.rowcount != 1:
                    row = self._db.execute(
                        "SELECT ticket_id FROM claims WHERE recommendation_id = ?", (rec,)
                    ).fetchone()
                    self._db.execute("ROLLBACK")
                    return str(row[0]), ""
                self._db.execute(
                    "INSERT INTO tickets VALUES (?, 1, ?, ?, ?, ?)",
                    (ticket.id, rec, ticket.status, ticket.sys_id, json.dumps(ticket.to_record())),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return None, "1"

    # -- claims -------------------------------------------------------------------------------------

    def claim_recommendation(self, recommendation_id: str, ticket_id: str) -> str | None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO claims VALUES (?, ?)", (recommendation_id, ticket_id))
            row = self._db.execute(
                "SELECT ticket_id FROM claims WHERE recommendation_id = ?", (recommendation_id,)
            ).fetchone()
        return None if row[0] == ticket_id else str(row[0])

    def replace_claim(self, recommendation_id: str, holder: str, ticket_id: str) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE claims SET ticket_id = ? WHERE recommendation_id = ? AND ticket_id = ?",
                (ticket_id, recommendation_id, holder),
            )
        return cursor.rowcount == 1

    def release_claim(self, recommendation_id: str, holder: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM claims WHERE recommendation_id = ? AND ticket_id = ?", (recommendation_id, holder)
            )

    def claim_holder(self, recommendation_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT ticket_id FROM claims WHERE recommendation_id = ?", (recommendation_id,)
            ).fetchone()
        return str(row[0]) if row else None

    # -- idempotency keys ---------------------------------------------------------------------------

    def remember_idempotency_key(self, key: str, record: IdempotencyRecord) -> IdempotencyRecord | None:
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO idempotency_keys VALUES (?, ?, ?, ?)",
                (key, record.ticket_id, record.fingerprint, record.created_at),
            )
            if cursor.rowcount == 1:
                return None
            row = self._db.execute(
                "SELECT ticket_id, fingerprint, created_at FROM idempotency_keys WHERE key = ?", (key,)
            ).fetchone()
        return IdempotencyRecord(row[0], row[1], row[2])

    def repoint_idempotency_key(self, key: str, record: IdempotencyRecord) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE idempotency_keys SET ticket_id = ?, fingerprint = ?, created_at = ? WHERE key = ?",
                (record.ticket_id, record.fingerprint, record.created_at, key),
            )

    # -- status sync --------------------------------------------------------------------------------

    def list_tickets(self, tenant: str | None = None) -> list[tuple[Ticket, str]]:
        query, parameters = (_ALL_TICKETS, ()) if tenant is None else (_TENANT_TICKETS, (tenant,))
        with self._lock:
            rows = self._db.execute(query, parameters).fetchall()
        return [(Ticket.from_record(json.loads(data)), str(version)) for data, version in rows]

    def list_pending_tickets(self) -> list[tuple[Ticket, str]]:
        with self._lock:
            rows = self._db.execute("SELECT data, version FROM tickets WHERE sys_id IS NULL").fetchall()
        return [(Ticket.from_record(json.loads(data)), str(version)) for data, version in rows]

    def find_ticket_by_sys_id(self, sys_id: str) -> tuple[Ticket, str] | None:
        with self._lock:
            row = self._db.execute("SELECT data, version FROM tickets WHERE sys_id = ?", (sys_id,)).fetchone()
        return None if row is None else (Ticket.from_record(json.loads(row[0])), str(row[1]))

    def list_tracked_by_sys_id(self, after: str, upto: str, limit: int, connection: str = "") -> list[tuple[str, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT sys_id, id FROM tickets WHERE sys_id > ? AND sys_id <= ? "
                "AND status NOT IN ('closed', 'canceled') AND COALESCE(json_extract(data, '$.connection'), '') = ? "
                "ORDER BY sys_id LIMIT ?",
                (after, upto, connection, limit),
            ).fetchall()
        return [(str(sys_id), str(ticket_id)) for sys_id, ticket_id in rows]

    def list_unstamped_done(self, after: str, limit: int, connection: str = "", scan: int = 5000) -> Unstamped:
        with self._lock:
            rows = self._db.execute(
                "SELECT data, version FROM tickets WHERE id > ? AND status IN ('resolved', 'closed') "
                "AND COALESCE(sys_id, '') != '' AND json_extract(data, '$.resolved_at') IS NULL "
                "AND COALESCE(json_extract(data, '$.connection'), '') = ? ORDER BY id LIMIT ?",
                (after, connection, limit),
            ).fetchall()
        found = [(Ticket.from_record(json.loads(data)), str(version)) for data, version in rows]
        return found, found[-1][0].id if len(found) == limit else None  # SQLite filters it all: no `scan` needed

    def get_sync_state(self) -> tuple[dict[str, Any], str] | None:
        with self._lock:
            row = self._db.execute("SELECT data, version FROM sync_state WHERE id = 1").fetchone()
        return None if row is None else (json.loads(row[0]), str(row[1]))

    def put_sync_state(self, state: dict[str, Any], etag: str | None) -> str:
        text = json.dumps(state)
        check_size("state", text)  # as Table Storage's entity would refuse it
        with self._lock:
            if etag is None:
                cursor = self._db.execute("INSERT OR IGNORE INTO sync_state VALUES (1, 1, ?)", (text,))
                new = "1"
            else:
                cursor = self._db.execute(
                    "UPDATE sync_state SET version = version + 1, data = ? WHERE id = 1 AND version = ?",
                    (text, int(etag)),
                )
                new = str(int(etag) + 1)
        if cursor.rowcount != 1:
            raise StoreConflict("the sync state changed")
        return new

    # -- documents ------------------------------------------------------------------------------------

    def get_document(self, name: str) -> tuple[dict[str, Any], str] | None:
        with self._lock:
            row = self._db.execute("SELECT data, version FROM documents WHERE name = ?", (name,)).fetchone()
        return None if row is None else (json.loads(row[0]), str(row[1]))

    def put_document(self, name: str, data: dict[str, Any], etag: str | None) -> str:
        text = json.dumps(data)
        check_size(name, text)  # as Table Storage's entity would refuse it
        with self._lock:
            if etag is None:
                cursor = self._db.execute("INSERT OR IGNORE INTO documents VALUES (?, 1, ?)", (name, text))
                new = "1"
            else:
                cursor = self._db.execute(
                    "UPDATE documents SET version = version + 1, data = ? WHERE name = ? AND version = ?",
                    (text, name, int(etag)),
                )
                new = str(int(etag) + 1)
        if cursor.rowcount != 1:
            raise StoreConflict(f"the document {name} changed")
        return new

    def delete_document(self, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM documents WHERE name = ?", (name,))

    def list_documents(self, prefix: str) -> dict[str, tuple[dict[str, Any], str]]:
        with self._lock:  # a range on the primary key (BINARY collation: the same order as Tables' RowKey)
            rows = self._db.execute(
                "SELECT name, data, version FROM documents WHERE name >= ? AND name < ?", (prefix, prefix_end(prefix))
            ).fetchall()
        return {str(name): (json.loads(data), str(version)) for name, data, version in rows}
