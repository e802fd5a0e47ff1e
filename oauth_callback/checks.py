"""One provisioning check: what was checked, whether it holds, and what to fix when it does not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    remediation: str | None = None
    tenant: str | None = None  # the Microsoft tenant a `tenant` check is about
    code: str | None = None  # a failing `tenant` check's problem code (docs/api.md, Problems)

    def to_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"name": self.name, "ok": self.ok, "detail": self.detail,
                                  "remediation": self.remediation}  # fmt: skip
        if self.tenant:
            answer["tenant"] = self.tenant
        if self.code:
            answer["code"] = self.code
        return answer
