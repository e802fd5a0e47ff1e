"""The simulated instance's state: its tables and their fields, its users, OAuth clients and grants, and the
switches a test turns (faults, ACLs, data policies). The endpoints that read and change it live beside it, one
concern each: `oauth.py`, `table_api.py` (with `shapes.py`), `faults.py`; `instance.py` puts them together.
Sources for every shape: docs/design.md#servicenow-facts.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dev.servicenow import directory
from dev.wire.faults import Fault
from dev.wire.messages import SimRequest

ADMIN_SYS_ID = "6816f79cc0a8016401c5a33be04be441"
INTEGRATION_USER_SYS_ID = "5137153cc611227c000bbd1bd8cd2007"
INCIDENT_FIELDS = {
    "sys_id",
    "number",
    "short_description",
    "description",
    "state",
    "impact",
    "urgency",
    "priority",
    "due_date",
    "caller_id",
    "opened_by",
    "correlation_id",
    "correlation_display",
    "active",
    "category",
    "subcategory",
    "assigned_to",
    "assignment_group",
    "company",
    "close_code",
    "close_notes",
    "work_notes",
    "comments",
    "opened_at",
    "sys_created_on",
    "sys_updated_on",
    "sys_created_by",
    "sys_updated_by",
    "sys_mod_count",
    "incident_state",
    "resolved_at",
    "closed_at",
    "hold_reason",
}
USER_FIELDS = {"sys_id", "user_name", "name", "email", "active", "sys_created_on", "sys_updated_on"}
# sys_audit_delete: one row per deleted record (documentkey = its sys_id, tablename = its table).
AUDIT_DELETE_FIELDS = {"sys_id", "tablename", "documentkey", "display_value", "sys_created_on", "sys_created_by"}


@dataclass
class OAuthClient:
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    access_ttl: int = 1800
    refresh_ttl: int = 8_640_000
    name: str = "Microsoft 365 security connector"


@dataclass
class Grant:
    user_sys_id: str
    client_id: str
    expires: float
    revoked: bool = False


def now_text(clock: float) -> str:
    return datetime.fromtimestamp(clock, UTC).strftime("%Y-%m-%d %H:%M:%S")


class InstanceState:
    """What a ServiceNow instance holds, and the setup a test or `make run` does on it."""

    def __init__(self, instance_url: str = "https://sim.service-now.com", *, clock: Callable[[], float] = time.time):
        self.instance_url = instance_url.rstrip("/")
        self.clock = clock
        self.lock = threading.RLock()
        self.clients: dict[str, OAuthClient] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.access_tokens: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.current_access: dict[str, str] = {}  # refresh token -> the access token it last gave
        self.tables: dict[str, dict[str, dict[str, Any]]] = {"incident": {}, "sys_user": {}, "sys_audit_delete": {},
                                                             **directory.records(now_text(clock()))}  # fmt: skip
        self.fields: dict[str, set[str]] = {"incident": set(INCIDENT_FIELDS), "sys_user": set(USER_FIELDS),
                                            "sys_audit_delete": set(AUDIT_DELETE_FIELDS),
                                            "sys_user_group": set(directory.GROUP_FIELDS),
                                            "core_company": set(directory.COMPANY_FIELDS)}  # fmt: skip
        self.faults: list[Fault] = []
        self.requests: list[SimRequest] = []
        self.auto_approve = False
        self.reuse_refresh_token = False  # a new code grant returns the user's current refresh token
        self.ip_denied = False
        # table -> {"read", "insert", "update", "delete", "cross_scope"}. sys_audit_delete needs an admin-granted
        # role on real instances, so an integration user is refused it unless a test grants it.
        self.deny: dict[str, set[str]] = {"sys_audit_delete": {"read"}}
        self.mandatory: dict[str, dict[str, str]] = {}  # table -> {field: label}: a data policy on insert
        self.mandatory_on_resolve: dict[str, dict[str, str]] = {}  # table -> {field: label} when resolving
        self.signed_in_user = INTEGRATION_USER_SYS_ID
        self.chaos_rate = 0.0  # share of Table API requests that get a random fault
        self.chaos_random = random.Random(0)
        self.latency = 0.0  # seconds added to every request (benchmarks)
        self.hibernating = False
        self.hidden: set[str] = set()  # sys_ids an ACL hides from the integration user
        self.journal: list[tuple[str, str, str]] = []  # (sys_id, work_notes|comments, text): read back as ""
        self.before_request: Callable[[SimRequest], None] | None = None  # lets a test change data mid-scan
        self.on_change: Callable[[], None] | None = None  # make run keeps the state (dev/servicenow/persist.py)
        self._number = 10000
        self.add_user(ADMIN_SYS_ID, "admin", "System Administrator", "admin@example.com")
        self.add_user(INTEGRATION_USER_SYS_ID, "m365.integration", "M365 Integration", "m365.integration@example.com")

    # -- setup --------------------------------------------------------------------------------------

    def bind(self, base_url: str) -> None:
        self.instance_url = base_url.rstrip("/")

    def register_client(self, client_id: str, client_secret: str, redirect_uris: list[str], **kw: Any) -> OAuthClient:
        client = OAuthClient(client_id, client_secret, list(redirect_uris), **kw)
        self.clients[client_id] = client
        return client

    def add_user(self, sys_id: str, user_name: str, name: str, email: str) -> dict[str, Any]:
        stamp = now_text(self.clock())
        record = {
            "sys_id": sys_id,
            "user_name": user_name,
            "name": name,
            "email": email,
            "active": "true",
            "sys_created_on": stamp,
            "sys_updated_on": stamp,
        }
        self.tables["sys_user"][sys_id] = record
        return record

    def add_table(self, table: str, fields: set[str]) -> None:
        self.tables.setdefault(table, {})
        self.fields[table] = set(fields) | {"sys_id", "sys_created_on", "sys_updated_on", "sys_mod_count", "number"}

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def records(self, table: str = "incident") -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.tables.get(table, {}).values()]

    portal_port: int | None = None  # make run: the pages link back to the connector's portal on this port
