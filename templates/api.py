"""The templates' public face: the only module of templates another feature may import (the import-linter contract
`public`, pyproject.toml): one tenant's whole apply, which a queue message can run when many tenants fan out
(docs/templates.md), and the templates as saved."""

from __future__ import annotations

from templates.applying import Outcome, apply_tenant
from templates.queued import PoisonedApplies, read_poisoned
from templates.risks import risk_acceptor
from templates.saving import load_all, version_of

__all__ = ["Outcome", "PoisonedApplies", "apply_tenant", "load_all", "read_poisoned", "risk_acceptor", "version_of"]
