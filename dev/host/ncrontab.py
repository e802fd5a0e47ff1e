"""NCRONTAB (Azure Functions' six-field cron: second minute hour day month day-of-week), for the local host."""

from __future__ import annotations

from datetime import datetime, timedelta

_RANGES = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]


def _field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            start, end = (int(x) for x in part.split("-", 1))
        else:
            start = end = int(part)
            if step != 1:
                end = high
        if not (low <= start <= high and low <= end <= high) or step < 1:
            raise ValueError(f"'{text}' is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def parse(expression: str) -> list[set[int]]:
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(f"'{expression}' is not an NCRONTAB expression (six fields)")
    parsed = [_field(f, lo, hi) for f, (lo, hi) in zip(fields, _RANGES, strict=True)]
    parsed[5] = {d % 7 for d in parsed[5]}
    return parsed


def next_after(expression: str, after: datetime) -> datetime:
    seconds, minutes, hours, days, months, weekdays = parse(expression)
    day = after.replace(hour=0, minute=0, second=0, microsecond=0)
    for _ in range(366 * 5):
        # Python's Monday is 0; cron's Sunday is 0.
        if day.day in days and day.month in months and (day.weekday() + 1) % 7 in weekdays:
            for hour in sorted(hours):
                for minute in sorted(minutes):
                    for second in sorted(seconds):
                        candidate = day.replace(hour=hour, minute=minute, second=second)
                        if candidate > after:
                            return candidate
        day += timedelta(days=1)
    raise ValueError(f"'{expression}' never fires")
