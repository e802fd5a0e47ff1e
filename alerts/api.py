"""The alerts' public face: the only module of alerts another feature may import (the import-linter contract
`public`, pyproject.toml): the step a refresh takes after storing a tenant's snapshot, and the failures provisioning
shows (docs/alerts.md)."""

from __future__ import annotations

from alerts.engine import Outcome, after_refresh
from alerts.failures import FIX, failures
from alerts.saving import load as load_alerts
from alerts.tickets import CATEGORY

__all__ = ["CATEGORY", "FIX", "Outcome", "after_refresh", "failures", "load_alerts"]
