"""Reviews' public face (the import-linter contract `public`, pyproject.toml): a tenant's review for a period, as
`GET /api/tenants/{id}/review` answers it (docs/api.md#a-tenants-review)."""

from __future__ import annotations

from reviews.review import review

__all__ = ["review"]
