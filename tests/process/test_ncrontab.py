from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dev.host.ncrontab import next_after


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */5 * * * *", "2026-11-26 10:02:30", "2026-11-26 10:05:00"),
        ("0 */5 * * * *", "2026-11-26 10:05:00", "2026-11-26 10:10:00"),
        ("*/10 * * * * *", "2026-11-26 10:00:01", "2026-11-26 10:00:10"),
        ("0 30 9 * * 1-5", "2026-11-27 10:00:00", "2026-11-30 09:30:00"),  # Friday -> Monday
        ("0 0 0 1 1 *", "2026-11-26 00:00:00", "2027-01-01 00:00:00"),
        ("*/15 * * * *", "2026-11-26 10:01:00", "2026-11-26 10:15:00"),  # five fields: seconds = 0
    ],
)
def test_next_occurrence(expression, after, expected):
    parse = lambda s: datetime.strptime(s, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)  # noqa: E731
    assert next_after(expression, parse(after)) == parse(expected)


@pytest.mark.parametrize("expression", ["", "* * *", "61 * * * * *", "0 */0 * * * *"])
def test_invalid_expressions(expression):
    with pytest.raises(ValueError):
        next_after(expression, datetime(2026, 1, 1, tzinfo=UTC))
