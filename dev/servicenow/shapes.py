"""ServiceNow's value shapes: a record as the Table API returns it (every value a string, references as
`{link, value}`, display values and choice labels on request, dot-walked fields), and a reference given by its
display value. Sources: docs/design.md#servicenow-facts.
"""

from __future__ import annotations

from typing import Any

from dev.servicenow.state import InstanceState

REFERENCES = {"caller_id": "sys_user", "opened_by": "sys_user", "assigned_to": "sys_user",
              "assignment_group": "sys_user_group", "company": "core_company"}  # fmt: skip
# Choice labels, for sysparm_display_value (the base system's incident choices).
CHOICES = {
    "state": {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"},
    "incident_state": {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"},
    "impact": {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"},
    "urgency": {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"},
    "priority": {"1": "1 - Critical", "2": "2 - High", "3": "3 - Moderate", "4": "4 - Low", "5": "5 - Planning"},
    "active": {"true": "true", "false": "false"},
}


class RecordShapes(InstanceState):
    """How a stored record is shown on the wire, and how a reference given by name is stored."""

    def _shape(self, table: str, record: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        """A record as the Table API returns it: every value a string, references as `{link, value}` (or the plain
        sys_id with `sysparm_exclude_reference_link=true`); with `sysparm_display_value=true` display values
        (a reference's display name, a choice's label), with `all` `{display_value, value}` pairs plus the
        reference link (Table API docs, GET parameters)."""
        wanted = [f for f in params.get("sysparm_fields", "").split(",") if f]
        exclude = params.get("sysparm_exclude_reference_link") == "true"
        display = params.get("sysparm_display_value", "false").lower()
        shaped: dict[str, Any] = {}
        for name in wanted or sorted(record):
            if "." in name:  # dot-walking a reference: assigned_to.email
                value = self._dot_walk(record, name)
                shaped[name] = {"display_value": value, "value": value} if display == "all" else value
                continue
            if name not in self.fields[table]:
                continue
            shaped[name] = self._field_value(name, record.get(name, ""), display, exclude)
        return shaped

    def _field_value(self, name: str, value: Any, display: str, exclude: bool) -> Any:
        reference = value if isinstance(value, dict) else None
        raw = str(reference["value"]) if reference else ("" if value is None else str(value))
        if display == "false":
            return raw if reference is None or exclude else dict(reference)
        shown = self._display(name, raw)
        if display == "true":
            if reference is None or exclude:
                return shown
            return {"display_value": shown, "link": reference["link"]}
        pair: dict[str, Any] = {"display_value": shown, "value": raw}
        if reference is not None and not exclude:
            pair["link"] = reference["link"]
        return pair

    def _display(self, name: str, raw: str) -> str:
        if not raw:
            return ""
        if name in REFERENCES:
            referenced = self.tables.get(REFERENCES[name], {}).get(raw)
            return str((referenced or {}).get("name") or (referenced or {}).get("number") or "")
        return CHOICES.get(name, {}).get(raw, raw)

    def _dot_walk(self, record: dict[str, Any], name: str) -> str:
        reference, _, target = name.partition(".")
        value = record.get(reference)
        sys_id = value.get("value") if isinstance(value, dict) else None
        referenced = self.tables.get(REFERENCES.get(reference, "sys_user"), {}).get(sys_id or "")
        return str(referenced.get(target, "")) if referenced else ""

    def _by_display_value(self, table: str, text: str) -> str:
        """A reference given by display value (`sysparm_input_display_value=true`: "Treats input values as display
        values and they are manipulated so they can be stored properly in the database", Table API docs, POST and
        PATCH parameters): the sys_id of the one record whose display field (`name`) is `text`, or `text` itself when
        it is the sys_id of a record. The docs say nothing of a name that matches no record or several; the
        simulator then leaves the reference empty and still writes the record, the harder of the plausible
        answers for a client that relied on a name (nothing tells it the name was not taken)."""
        rows = self.tables.get(table, {})
        named = [sys_id for sys_id, row in rows.items() if row.get("name") == text]
        if len(named) == 1:
            return named[0]
        return text if not named and text in rows else ""

    def _reference(self, table: str, sys_id: str) -> dict[str, str]:
        return {"link": f"{self.instance_url}/api/now/table/{table}/{sys_id}", "value": sys_id}
