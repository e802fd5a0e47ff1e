"""Which tickets' risks a template accepts (docs/templates.md#risk-accepted-in-servicenow): a template with
`onRiskAccepted: "ignore"` makes a risk accepted in ServiceNow on a ticket of its controls, in its tenants, set the
control `Ignored`, as a route saying so does. Asked by the status sync when it records a close (shared/records.py),
so the templates as saved at that close decide: one taken away before it accepts nothing."""

from __future__ import annotations

from collections.abc import Callable

from shared.store import TicketStore
from shared.tickets import HOME
from templates.model import HOME_ID, IGNORE
from templates.saving import load_all


def risk_acceptor(store: TicketStore) -> Callable[[str, str], bool]:
    """`accepts(tenant, control)` (a ticket's tenant: HOME for the home tenant). The templates are read at the first
    question, once: a run that records no close with a mapped code reads nothing."""
    read: list[list[tuple[frozenset[str], tuple[str, ...] | None]]] = []

    def accepts(tenant: str, control: str) -> bool:
        if not read:
            read.append([(frozenset(t.controls), t.tenants) for t in load_all(store).values()
                         if t.on_risk_accepted == IGNORE])  # fmt: skip
        named = HOME_ID if tenant == HOME else tenant
        return any(control in controls and (tenants is None or named in tenants) for controls, tenants in read[0])

    return accepts
