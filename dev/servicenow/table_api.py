"""The Table API (`/api/now/table/{table}[/{sys_id}]`, v1, v2 and unversioned): ACLs and cross-scope refusals,
pages with `Link` and `X-Total-Count` headers, inserts and updates with data policies, deletes remembered in
`sys_audit_delete`, ServiceNow's error envelopes; and what an agent does in the UI (`update`, `delete`).
Sources: docs/design.md#servicenow-facts.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode, urlsplit

from dev.servicenow import query as encoded_query
from dev.servicenow.shapes import REFERENCES, RecordShapes
from dev.servicenow.state import now_text
from dev.wire.messages import SimRequest, SimResponse

UNAUTHENTICATED = {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}
PRIORITY = {
    ("1", "1"): "1",
    ("1", "2"): "2",
    ("1", "3"): "3",
    ("2", "1"): "2",
    ("2", "2"): "3",
    ("2", "3"): "4",
    ("3", "1"): "3",
    ("3", "2"): "4",
    ("3", "3"): "5",
}


class TableApi(RecordShapes):
    """The Table API's endpoints over the instance's tables."""

    def _caller(self, request: SimRequest) -> str | None:
        raise NotImplementedError  # the user a Bearer token names (oauth.py)

    def update(self, table: str, sys_id: str, **fields: str) -> dict[str, Any]:
        """What an agent does in the UI: change fields, which bumps sys_updated_on and sys_mod_count."""
        with self.lock:
            record = self.tables[table][sys_id]
            if self._apply(table, record, fields):
                record["sys_updated_on"] = now_text(self.clock())
                record["sys_mod_count"] = str(int(record.get("sys_mod_count") or 0) + 1)
            return dict(record)

    def delete(self, table: str, sys_id: str) -> None:
        """What an agent's delete does: the record goes, and sys_audit_delete remembers it."""
        with self.lock:
            record = self.tables[table].pop(sys_id, None)
            if record is not None:
                self._audit_delete(table, record, "admin")

    def _audit_delete(self, table: str, record: dict[str, Any], user: str) -> None:
        audit_id = uuid.uuid4().hex
        self.tables["sys_audit_delete"][audit_id] = {
            "sys_id": audit_id, "tablename": table, "documentkey": str(record.get("sys_id")),
            "display_value": str(record.get("number") or ""), "sys_created_on": now_text(self.clock()),
            "sys_created_by": user,
        }  # fmt: skip

    def _table(self, request: SimRequest, parts: list[str], *, versioned_v2: bool) -> SimResponse:
        user = self._caller(request)
        if user is None:
            return SimResponse.envelope(401, UNAUTHENTICATED["message"], UNAUTHENTICATED["detail"])
        table = parts[0]
        sys_id = parts[1] if len(parts) > 1 else None
        if table not in self.tables:
            return SimResponse.envelope(400, f"Invalid table {table}", None)
        denied = self.deny.get(table, set())
        operation = {"GET": "read", "POST": "insert", "PATCH": "update", "PUT": "update", "DELETE": "delete"}.get(
            request.method, ""
        )
        if "cross_scope" in denied:
            verb = {"read": "Read", "insert": "Create", "update": "Write"}.get(operation, "Read")
            return SimResponse.envelope(
                403,
                f"{verb} operation against '{table}' from scope 'x_m365_connector' has been refused due to "
                "the table's cross-scope access policy",
                None,
            )
        if operation in denied:
            if operation == "read":
                return SimResponse.envelope(
                    403,
                    "Insufficient rights to query records",
                    "Field(s) present in the query do not have permission to be read",
                )
            verb = {"insert": "Insert", "delete": "Delete"}.get(operation, "Update")
            return SimResponse.envelope(
                403, "Operation Failed", f"ACL Exception {verb} Failed due to security constraints"
            )
        with self.lock:
            if request.method == "GET" and sys_id is None:
                return self._list(request, table, user, versioned_v2)
            if request.method == "GET":
                record = self.tables[table].get(sys_id or "")
                if record is None or record["sys_id"] in self.hidden:
                    return _no_record()
                return SimResponse.json(200, {"result": self._shape(table, record, request.query)})
            if request.method == "POST" and sys_id is None:
                return self._insert(request, table, user)
            if request.method in ("PATCH", "PUT") and sys_id:
                return self._update(request, table, sys_id, user)
            if request.method == "DELETE" and sys_id:
                record = self.tables[table].get(sys_id)
                if record is None or sys_id in self.hidden:
                    return _no_record()
                self.tables[table].pop(sys_id)
                self._audit_delete(table, record, user)
                return SimResponse(204)  # "DELETE returns 204 with no body" (Table API docs)
        return SimResponse.envelope(405, "Method not Supported", f"{request.method} is not supported here")

    def _list(self, request: SimRequest, table: str, user: str, v2: bool) -> SimResponse:
        """A page as ServiceNow makes it: query, order, `sysparm_offset` and `sysparm_limit` first, and only then
        the ACL filter, so a page can come back short or empty while more rows follow, and `X-Total-Count` counts
        rows before ACLs ("sysparm_limit ... applied before ACL filtering", Table API docs)."""
        params = request.query
        parsed = encoded_query.parse(params.get("sysparm_query", ""), lambda js: self._javascript(js, user))
        wanted = encoded_query.candidate_ids(parsed)
        every = self.tables[table]
        pool = every.values() if wanted is None else [every[s] for s in wanted if s in every]
        rows = [r for r in pool if encoded_query.matches(parsed, r, self.fields[table])]
        rows = encoded_query.sort(parsed, rows)
        try:
            limit = int(params.get("sysparm_limit", "10000"))
            offset = int(params.get("sysparm_offset", "0"))
        except ValueError:
            return SimResponse.envelope(400, "Invalid parameter", "sysparm_limit and sysparm_offset are numbers")
        offset, limit = max(offset, 0), max(limit, 1)
        window = rows[offset : offset + limit]
        page = [r for r in window if r["sys_id"] not in self.hidden]
        if not page and not v2 and not rows:
            return _no_record()
        counted = params.get("sysparm_no_count") != "true"
        headers = {"X-Total-Count": str(len(rows))} if counted else {}
        if params.get("sysparm_suppress_pagination_header") != "true":
            more = offset + limit < len(rows) if counted else len(window) == limit
            link = _links(request, offset, limit, len(rows) if counted else None, more)
            if link:
                headers["Link"] = link
        return SimResponse.json(200, {"result": [self._shape(table, r, params) for r in page]}, headers)

    def _javascript(self, script: str, user: str) -> str:
        if script == "javascript:gs.getUserID()":
            return user
        return ""

    def _body(self, request: SimRequest) -> dict[str, Any] | SimResponse:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return SimResponse.envelope(415, "Unsupported Media Type", "Content-Type must be application/json")
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return SimResponse.envelope(400, "Exception while reading request", "The payload is not valid JSON")
        if isinstance(body, list):
            body = body[0] if body else {}
        return body if isinstance(body, dict) else {}

    def _insert(self, request: SimRequest, table: str, user: str) -> SimResponse:
        body = self._body(request)
        if isinstance(body, SimResponse):
            return body
        missing = [label for name, label in self.mandatory.get(table, {}).items() if not body.get(name)]
        if missing:
            detail = "Data Policy Exception: \n\tThe following fields are mandatory: " + ", ".join(missing)
            return SimResponse.envelope(403, "Operation Failed", detail)
        stamp = now_text(self.clock())
        sys_id = uuid.uuid4().hex
        self._number += 1
        record: dict[str, Any] = {name: "" for name in self.fields[table]}
        record.update(
            sys_id=sys_id,
            sys_created_on=stamp,
            sys_updated_on=stamp,
            sys_mod_count="0",
            number=f"INC{self._number:07d}",
        )
        # Who made it, by user name, as a recorded POST shows (swimlane/techpubs-knowledgecenter,
        # docs/Connectors/ServiceNow/Actions/create_incident.md: opened_by the admin's sys_id, sys_created_by "admin").
        author = str(self.tables["sys_user"].get(user, {}).get("user_name") or "")
        if "sys_created_by" in self.fields[table]:
            record.update(sys_created_by=author, sys_updated_by=author)
        if table == "incident":
            record.update(
                state="1",
                incident_state="1",
                impact="3",
                urgency="3",
                active="true",
                category="inquiry",
                opened_at=stamp,
                opened_by=self._reference("sys_user", user),
            )
        self._apply(table, record, body, display_input=_display_input(request))
        self.tables[table][sys_id] = record
        location = f"{self.instance_url}/api/now/table/{table}/{sys_id}"
        return SimResponse.json(201, {"result": self._shape(table, record, request.query)}, {"Location": location})

    def _update(self, request: SimRequest, table: str, sys_id: str, user: str) -> SimResponse:
        record = self.tables[table].get(sys_id)
        if record is None:
            return _no_record()
        body = self._body(request)
        if isinstance(body, SimResponse):
            return body
        resolving = str(body.get("state")) in ("6", "7") and record.get("state") not in ("6", "7")
        policy = self.mandatory_on_resolve.get(table, {}) if resolving else {}
        missing = [label for name, label in policy.items() if not (body.get(name) or record.get(name))]
        if missing:
            detail = "Data Policy Exception: \n\tThe following fields are mandatory: " + ", ".join(missing)
            return SimResponse.envelope(403, "Operation Failed", detail)
        if self._apply(table, record, body, display_input=_display_input(request)):
            record["sys_updated_on"] = now_text(self.clock())
            record["sys_mod_count"] = str(int(record.get("sys_mod_count") or 0) + 1)
            if "sys_updated_by" in self.fields[table]:
                record["sys_updated_by"] = str(self.tables["sys_user"].get(user, {}).get("user_name") or "")
        return SimResponse.json(200, {"result": self._shape(table, record, request.query)})

    def _apply(self, table: str, record: dict[str, Any], body: dict[str, Any], *, display_input: bool = False) -> bool:
        changed, state = False, record.get("state")
        for name, value in body.items():
            if name not in self.fields[table] or name in ("sys_id", "number", "sys_created_on"):
                continue  # ServiceNow ignores unknown fields
            text = "" if value is None else str(value)
            if name in ("work_notes", "comments"):  # journal fields: kept in sys_journal_field, read back as ""
                if text:
                    self.journal.append((str(record.get("sys_id")), name, text))
                    changed = True
                continue
            if name in REFERENCES and display_input:
                text = self._by_display_value(REFERENCES[name], text)
            if name in REFERENCES and text:
                new: Any = self._reference(REFERENCES[name], text)
            else:
                new = text
            if record.get(name) != new:
                record[name] = new
                changed = True
        if table == "incident":
            record["priority"] = PRIORITY.get((str(record.get("impact")), str(record.get("urgency"))), "5")
            record["incident_state"] = record.get("state", "1")
            # The incident's business rules stamp Resolved (resolved_at) and Closed (closed_at) when the state
            # becomes 6 or 7 ("Resolve time": https://www.servicenow.com/docs/r/platform-administration/
            # time-configuration/c_ResolveTime.html); a reopen leaves the old stamp, as the record keeps it.
            stamped = {"6": "resolved_at", "7": "closed_at"}.get(str(record.get("state")))
            if stamped and record.get("state") != state:
                record[stamped] = now_text(self.clock())
        return changed


def _display_input(request: SimRequest) -> bool:
    return request.query.get("sysparm_input_display_value", "false").lower() == "true"


def _no_record() -> SimResponse:
    return SimResponse.envelope(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")


def _links(request: SimRequest, offset: int, limit: int, total: int | None, more: bool) -> str:
    """The `Link` header a real instance sends: first, prev (not on the first page), next (while more follow)
    and last (when the total is counted); none at all when everything fits one page
    (https://github.com/ServiceNowITOM/ansible-sn-inventory/issues/15)."""
    if offset == 0 and not more:
        return ""
    parts = urlsplit(request.url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    params = request.query

    def link(rel: str, at: int) -> str:
        return f'<{base}?{urlencode({**params, "sysparm_limit": limit, "sysparm_offset": at})}>;rel="{rel}"'

    links = [link("first", 0)]
    if offset > 0:
        links.append(link("prev", max(offset - limit, 0)))
    if more:
        links.append(link("next", offset + limit))
    if total is not None:
        links.append(link("last", max((total - 1) // limit * limit, 0)))
    return ",".join(links)
