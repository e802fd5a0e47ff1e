"""Retries for every outside service (ServiceNow, Microsoft Graph), with one library and one set of rules.

Full-jitter exponential backoff (tenacity), never sooner than the server's `Retry-After` (or a rate-limit
reset), at most `attempts` tries within `max_total` seconds; a server asking for a longer wait than
`max_retry_after` ends the retries at once (the caller answers 503 with that `Retry-After`). Only
`TransientFailure` is retried, and only requests safe to repeat raise it. Inside a run, no wait outlasts the run's
deadline. A server's wait is believed up to `MAX_RETRY_AFTER` (an hour): a larger or absurd value is held there
before it reaches anyone, a client of ours included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
import tenacity

from shared.deadlines import REQUEST_DEADLINE, run_left
from shared.telemetry import attempt_number
from shared.text import ascii_int

T = TypeVar("T")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 3600  # seconds: the longest server-requested wait passed on


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_total: float = 60.0  # well inside the 230 s an HTTP trigger has to answer
    max_retry_after: float = 30.0  # a longer server-requested wait ends the retries early
    deadline: float = REQUEST_DEADLINE  # one request, connect to last byte


class TransientFailure(Exception):
    """A failure worth another attempt; `retry_after` is the server's requested wait, if any."""

    def __init__(self, reason: str, retry_after: float | None, response: httpx.Response | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.response = response


def retry_after_seconds(response: httpx.Response, now: float | None = None) -> float | None:
    """The wait a server asked for: `Retry-After` (seconds), else until `X-RateLimit-Reset` (epoch); at most
    `MAX_RETRY_AFTER`."""
    seconds = ascii_int(response.headers.get("Retry-After"))
    if seconds is not None:
        return float(min(seconds, MAX_RETRY_AFTER))
    reset = ascii_int(response.headers.get("X-RateLimit-Reset"))
    if reset is not None:
        return min(max(0.0, reset - (time.time() if now is None else now)), float(MAX_RETRY_AFTER))
    return None


def capped_retry_after(seconds: float | None, default: int) -> int:
    """A `Retry-After` for our own answers: whole seconds, at least 1, at most `MAX_RETRY_AFTER`."""
    return max(1, min(int(seconds if seconds is not None else default), MAX_RETRY_AFTER))


def with_retries(attempt: Callable[[], T], policy: RetryPolicy, sleep: Callable[[float], None]) -> T:
    """Run `attempt` until it stops raising `TransientFailure`; the last one is re-raised on giving up."""
    started = time.monotonic()
    waited = [0.0]  # time spent waiting, counted even when `sleep` does not really sleep
    base_wait = tenacity.wait_random_exponential(multiplier=policy.base_delay, max=policy.max_delay)

    spent_before = [0.0]  # what `waited` was before the wait tenacity asks about now

    def wait(state: tenacity.RetryCallState) -> float:  # tenacity asks this before `give_up`
        exc = state.outcome.exception() if state.outcome else None
        server_wait = exc.retry_after if isinstance(exc, TransientFailure) else None
        seconds = max(base_wait(state), server_wait or 0.0)
        spent_before[0] = waited[0]
        waited[0] += seconds
        return seconds

    def give_up(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= policy.attempts:
            return True
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientFailure) and (exc.retry_after or 0) > policy.max_retry_after:
            return True
        left = run_left()
        if left is not None and left <= waited[0] - spent_before[0]:  # the next wait would outlast the run
            return True
        return max(time.monotonic() - started, waited[0]) > policy.max_total

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientFailure),
        stop=give_up,
        wait=wait,
        sleep=sleep,
        reraise=True,
    )
    attempts = [0]

    def numbered() -> T:
        attempts[0] += 1
        token = attempt_number.set(attempts[0])
        try:
            return attempt()
        finally:
            attempt_number.reset(token)

    return retrying(numbered)
