"""The SQLite store's Secure Score snapshots, one per tenant (SqliteTicketStore's part; shared/store/_models.py has
the contract)."""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

from shared.store._models import DIGEST


class SqliteSecureScores:
    _db: sqlite3.Connection
    _lock: threading.Lock

    # -- Secure Score ---------------------------------------------------------------------------------

    # The home tenant's snapshot stays in the tables it had before tenants (a store from then reads as it was);
    # other tenants' in tables keyed by tenant.

    def put_secure_score(self, summary: dict[str, Any], controls: list[dict[str, Any]], tenant: str = "") -> None:
        rows = [(c["id"], json.dumps(c)) for c in controls]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if tenant:
                    self._db.execute("DELETE FROM tenant_controls WHERE tenant = ?", (tenant,))
                    self._db.executemany("INSERT INTO tenant_controls VALUES (?, ?, ?)", [(tenant, *r) for r in rows])
                    self._db.execute(
                        "INSERT OR REPLACE INTO tenant_scores VALUES (?, ?)", (tenant, json.dumps(summary))
                    )
                else:
                    self._db.execute("DELETE FROM secure_score_controls")
                    self._db.executemany("INSERT INTO secure_score_controls VALUES (?, ?)", rows)
                    self._db.execute("INSERT OR REPLACE INTO secure_score VALUES (1, ?)", (json.dumps(summary),))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def put_secure_score_summary(self, summary: dict[str, Any], tenant: str = "") -> bool:
        with self._lock:
            stored = self._summary(tenant)
            if stored is None or stored.get(DIGEST) != summary.get(DIGEST):
                return False
            if tenant:
                cursor = self._db.execute("UPDATE tenant_scores SET data = ? WHERE tenant = ?",
                                          (json.dumps(summary), tenant))  # fmt: skip
            else:
                cursor = self._db.execute("UPDATE secure_score SET data = ? WHERE id = 1", (json.dumps(summary),))
        return cursor.rowcount > 0

    def get_secure_score_summary(self, tenant: str = "") -> dict[str, Any] | None:
        with self._lock:
            return self._summary(tenant)

    def _summary(self, tenant: str) -> dict[str, Any] | None:
        if tenant:
            row = self._db.execute("SELECT data FROM tenant_scores WHERE tenant = ?", (tenant,)).fetchone()
        else:
            row = self._db.execute("SELECT data FROM secure_score WHERE id = 1").fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def get_secure_score(self, tenant: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        with self._lock:
            if tenant:
                row = self._db.execute("SELECT data FROM tenant_scores WHERE tenant = ?", (tenant,)).fetchone()
                rows = self._db.execute("SELECT data FROM tenant_controls WHERE tenant = ?", (tenant,)).fetchall()
            else:
                row = self._db.execute("SELECT data FROM secure_score WHERE id = 1").fetchone()
                rows = self._db.execute("SELECT data FROM secure_score_controls").fetchall()
        if row is None:
            return None
        return json.loads(row[0]), [json.loads(data) for (data,) in rows]

    def get_secure_score_control(self, control_id: str, tenant: str = "") -> dict[str, Any] | None:
        with self._lock:
            if tenant:
                row = self._db.execute(
                    "SELECT data FROM tenant_controls WHERE tenant = ? AND id = ?", (tenant, control_id)
                ).fetchone()
            else:
                row = self._db.execute("SELECT data FROM secure_score_controls WHERE id = ?", (control_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))
