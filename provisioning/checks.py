"""One provisioning check: what was checked, whether it holds, and what to fix when it does not.

Each check belongs to a group (docs/api.md, Provisioning): `servicenow`, the ServiceNow connection's own, which alone
decide its state; or `tenant`, a Microsoft tenant's (its Secure Score, consent, notes), shown on that tenant's row and
page, never on the ServiceNow card.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    remediation: str | None = None
    tenant: str | None = None  # the Microsoft tenant a `tenant` group's check is about (none: this organization)
    code: str | None = None  # a failing `tenant` check's problem code (docs/api.md, Problems)
    group: str = "servicenow"  # servicenow | tenant

    def to_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"name": self.name, "ok": self.ok, "detail": self.detail,
                                  "remediation": self.remediation, "group": self.group}  # fmt: skip
        if self.tenant:
            answer["tenant"] = self.tenant
        if self.code:
            answer["code"] = self.code
        return answer
