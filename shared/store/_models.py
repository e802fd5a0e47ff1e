from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class OAuthState:
    """One pending authorization: the `state` sent to ServiceNow, with what finishing it needs."""

    state: str
    code_verifier: str
    instance_url: str
    redirect_uri: str
    started_by: str
    created_at: datetime
    expires_at: datetime


class TicketStore(Protocol):
    def add_oauth_state(self, state: OAuthState) -> None:
        """Record a new state; the state value is unique."""

    def take_oauth_state(self, state: str) -> OAuthState | None:
        """Remove and return the state; of any number of concurrent takers exactly one gets it."""

    def purge_oauth_states(self, before: datetime) -> int:
        """Delete states that expired before `before`; returns how many."""
