"""Who is the initiating user in ServiceNow: an exact `sys_user` match on email or user name, cached."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from shared.problems import ServiceNowRejected
from shared.servicenow import ServiceNowClient, TokenSource
from shared.tickets import EMAIL, USER_NAME

log = logging.getLogger(__name__)

FOUND_TTL = timedelta(hours=1)
MISSING_TTL = timedelta(minutes=10)


class UserDirectory:
    def __init__(self, servicenow: ServiceNowClient, tokens: TokenSource, clock: Callable[[], datetime]) -> None:
        self._servicenow = servicenow
        self._tokens = tokens
        self._clock = clock
        self._cache: dict[str, tuple[str | None, datetime]] = {}
        self._lock = threading.Lock()

    def find(self, requested_by: str | None) -> str | None:
        """The user's sys_id, or None when no single user matches exactly (then only the footer names them)."""
        if not requested_by:
            return None
        key = requested_by.lower()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        sys_id = self._lookup(requested_by)
        with self._lock:
            self._cache[key] = (sys_id, now + (FOUND_TTL if sys_id else MISSING_TTL))
        return sys_id

    def _lookup(self, value: str) -> str | None:
        # The value matched EMAIL or USER_NAME: neither admits '^', so it cannot add a condition.
        if not (EMAIL.fullmatch(value) or USER_NAME.fullmatch(value)) or "^" in value:
            return None
        query = f"email={value}^ORuser_name={value}" if "@" in value else f"user_name={value}"
        try:
            rows, _ = self._servicenow.table_list(
                self._tokens,
                "sys_user",
                {"sysparm_query": query, "sysparm_fields": "sys_id,email,user_name", "sysparm_limit": "5"},
            )
        except ServiceNowRejected as exc:  # the integration user may not read sys_user: footer only
            log.warning("The sys_user lookup was refused (%s); the requester goes in the footer only", exc.code)
            return None
        lowered = value.lower()
        exact = {
            str(row.get("sys_id"))
            for row in rows
            if str(row.get("email", "")).lower() == lowered or str(row.get("user_name", "")).lower() == lowered
        }
        return exact.pop() if len(exact) == 1 else None
