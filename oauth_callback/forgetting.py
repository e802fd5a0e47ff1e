"""What a connection's removal erases from the secret store, and what the answer says remains, where, and how long.

In Key Vault a secret's earlier versions stay readable in its history while the secret exists, so a removal deletes
each secret (every version goes with it) and then purges it. A vault with purge protection (the deployment's) refuses
the purge: the deleted secret, every version, stays recoverable by whoever may recover secrets in that vault until its
scheduled purge date (the vault's retention, 90 days by default), and Key Vault purges it then
(https://learn.microsoft.com/en-us/azure/key-vault/general/soft-delete-overview).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.connections import Connection
from shared.secrets import Erased
from shared.services import Services

_WHAT = {"client": "its OAuth client secret", "token": "its token bundle", "push": "its push-notice key"}


def _iso(erased: Erased) -> str | None:
    return erased.until.isoformat().replace("+00:00", "Z") if erased.until else None


@dataclass
class Forgotten:
    erased: list[tuple[str, Erased]] = field(default_factory=list)  # (what, erased)

    def answer(self, connection: Connection) -> dict[str, Any]:
        secrets = [{"name": e.name, "what": what, "state": e.state, "recoverableUntil": _iso(e), "why": e.why}
                   for what, e in self.erased]  # fmt: skip
        kept = [(what, e) for what, e in self.erased if e.state == "deleted"]
        detail = (f"The connector no longer works with {connection.instance_url}: its tokens were revoked at "
                  "ServiceNow, and its OAuth client secret, token bundle, push-notice key and sync state were "
                  "deleted.")  # fmt: skip
        if kept:
            until = max(e.until.isoformat().replace("+00:00", "Z") for _, e in kept if e.until) if any(
                e.until for _, e in kept) else "the end of the vault's retention"  # fmt: skip
            remains = (
                f"In Key Vault, {', '.join(_WHAT[w] for w, _ in kept)} (every earlier version too) stay deleted but "
                f"recoverable until {until}, by someone allowed to recover secrets in that vault (the connector never "
                f"does); then Key Vault purges them. Not purged now because {kept[0][1].why}."
            )
        else:
            remains = "Nothing of it remains in the secret store: every version of its secrets is gone."
        remains += (
            " The revoked tokens no longer work at ServiceNow (after a forced removal while ServiceNow was "
            "unreachable, revoke them in System OAuth > Manage Tokens). Its OAuth client and client secret still "
            "exist in ServiceNow until you delete them there (System OAuth > Application Registry). Its tickets stay, "
            "in the connector and in ServiceNow; they are never sent to an instance this id names later."
        )
        return {"detail": detail, "secrets": secrets, "remains": remains}


def erase_secrets(services: Services, connection: Connection) -> Forgotten:
    """Delete (and purge where allowed) the connection's client secret, token bundle and push-notice key."""
    forgotten = Forgotten()
    for what, name in zip(("client", "token", "push"), connection.secret_names, strict=True):
        forgotten.erased.append((what, services.secrets.erase(name)))
    return forgotten
