"""A review's period: `from` and `to` as dates (YYYY-MM-DD, UTC days, both included), at most 90 days (the history
Secure Score keeps, docs/design.md#secure-score), by default the last 90 days ending today."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from shared.problems import FieldError, ValidationFailed

DAYS = 90
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


@dataclass(frozen=True)
class Period:
    start: date
    end: date

    @property
    def since(self) -> datetime:
        return datetime.combine(self.start, time(), UTC)

    @property
    def until(self) -> datetime:
        """The last moment of the period (9999-12-31 has no day after it)."""
        return datetime.combine(self.end, time.max, UTC)

    def holds(self, moment: datetime | None) -> bool:
        return moment is not None and self.since <= moment <= self.until


def _day(params: Mapping[str, str], name: str, errors: list[FieldError]) -> date | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        found = date.fromisoformat(raw) if _DATE.fullmatch(raw) else None
    except ValueError:
        found = None
    if found is None or not 2000 <= found.year <= 9999:
        errors.append(FieldError(name, "must be a date YYYY-MM-DD (years 2000-9999)"))
    return found


def parse(params: Mapping[str, str], today: date) -> Period:
    """The period the query asks for; every bad value is `validation_failed` naming its field."""
    errors: list[FieldError] = []
    start, end = _day(params, "from", errors), _day(params, "to", errors)
    if errors:
        raise ValidationFailed(errors)
    end = end or (min(today, start + timedelta(days=min(DAYS - 1, (date.max - start).days))) if start else today)
    start = start or end - timedelta(days=DAYS - 1)
    if start > end:
        raise ValidationFailed([FieldError("from", "must not be after to")])
    if (end - start).days + 1 > DAYS:
        raise ValidationFailed([FieldError("to", f"the period holds at most {DAYS} days, from and to included")])
    return Period(start, end)


def moment(value: object) -> datetime | None:
    """A stored ISO time as an aware UTC datetime (None when absent or not a time)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        found = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (found if found.tzinfo else found.replace(tzinfo=UTC)).astimezone(UTC)
