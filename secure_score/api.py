"""Secure Score's public face: the only module of secure_score another feature may import (the import-linter
contract `public`, pyproject.toml; docs/design.md#layout-and-ownership): the refresh the status sync hands changes to,
what provisioning shows of a tenant's consent, what sits in the refresh's poison queue, and how a control's current
state is read and written (the templates apply a state through the same rules); which actions are open, and
each one's newest ticket (a tenant's review)."""

from __future__ import annotations

from secure_score.controls import current_update, is_open_action, last_change, newest_tickets, state_of
from secure_score.poison import CLEAR, POISON_QUEUE, PoisonedRefreshes, TenantPoison, read_poisoned
from secure_score.refresh import RefreshResult, SecureScoreRefresh
from secure_score.risk import is_risk_acceptance
from secure_score.tenants import confirmation_schedule, home_id
from secure_score.writeback import VENDOR, is_note

__all__ = ["CLEAR", "POISON_QUEUE", "VENDOR", "PoisonedRefreshes", "RefreshResult", "SecureScoreRefresh",
           "TenantPoison", "confirmation_schedule",
           "current_update", "home_id", "is_note", "is_open_action", "is_risk_acceptance", "last_change",
           "newest_tickets", "read_poisoned", "state_of"]  # fmt: skip
