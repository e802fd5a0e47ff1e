"""The lease on a pending row: one worker at a time talks to ServiceNow for it, the others wait for its answer.

A lease ends with its holder's own write (the link, or a release). A worker that fails on the store itself (it is
down, docs/architecture.md#when-the-store-is-unavailable) cannot make that write, and its lease would block every
repeat for `LEASE` once the store is back. So this process remembers the leases its workers left that way, with
what they knew of their POST (`Orphans`), and its own repeats take them over at once; another process waits for
them to lapse. Taking a lease over never makes a second record: the lookup before a POST, the in-doubt window
(in_doubt.py) and the conditional count decide who posts, not the lease.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.tickets import Ticket

LEASE = timedelta(seconds=90)  # longer than one create's bounded retries
_REMEMBERED = 1000  # orphans kept at most (oldest forgotten first: they lapse on their own anyway)


def free(ticket: Ticket, now: datetime) -> bool:
    """Nobody holds the row: no lease, or one that has run out."""
    return ticket.lease_until is None or datetime.fromisoformat(ticket.lease_until) <= now


@dataclass(frozen=True)
class Orphan:
    lease_until: str | None  # the lease as the worker wrote it (or tried to)
    doubt: datetime | None  # when its POST without an answer began; None: no POST of it may still commit


class Orphans:
    """Leases this process's workers left behind when the store failed under them."""

    def __init__(self) -> None:
        self._left: OrderedDict[str, Orphan] = OrderedDict()
        self._lock = threading.Lock()

    def leave(self, ticket: Ticket, doubt: datetime | None) -> None:
        with self._lock:
            self._left[ticket.id] = Orphan(ticket.lease_until, doubt)
            while len(self._left) > _REMEMBERED:
                self._left.popitem(last=False)

    def take(self, ticket: Ticket) -> Orphan | None:
        """The orphan, if the row still carries the very lease it left (taken once: one worker takes it over);
        an orphan whose row was taken since is forgotten."""
        with self._lock:
            orphan = self._left.pop(ticket.id, None)
            return orphan if orphan is not None and orphan.lease_until == ticket.lease_until else None
