"""Secure Score's public face: the only module of secure_score another feature may import (the import-linter
contract `public`, pyproject.toml; docs/design.md#layout-and-ownership): the refresh the status sync hands changes to,
and what provisioning shows of a tenant's consent."""

from __future__ import annotations

from secure_score.refresh import RefreshResult, SecureScoreRefresh
from secure_score.tenants import confirmation_schedule, home_id

__all__ = ["RefreshResult", "SecureScoreRefresh", "confirmation_schedule", "home_id"]
