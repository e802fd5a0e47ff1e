"""Secure Score's public face: the only module of secure_score another feature may import (the import-linter
contract `public`, pyproject.toml; docs/design.md#layout-and-ownership): the refresh the status sync hands changes to,
what provisioning shows of a tenant's consent, and what sits in the refresh's poison queue."""

from __future__ import annotations

from secure_score.poison import CLEAR, POISON_QUEUE, PoisonedRefreshes, TenantPoison, read_poisoned
from secure_score.refresh import RefreshResult, SecureScoreRefresh
from secure_score.tenants import confirmation_schedule, home_id

__all__ = ["CLEAR", "POISON_QUEUE", "PoisonedRefreshes", "RefreshResult", "SecureScoreRefresh", "TenantPoison",
           "confirmation_schedule", "home_id", "read_poisoned"]  # fmt: skip
