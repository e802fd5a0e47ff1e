"""Deadlines: every outside request has a total one (connect, headers and body together), and so does every run.

httpx's timeouts bound each socket operation, not the whole response: a server that sends its headers and then
one byte every few seconds never trips them. `send` reads the body under a watchdog that cuts the connection at
the deadline, and checks the clock between chunks, so a response takes at most its budget however it drips.

A run (a status sync, a Secure Score refresh) sets `run_deadline`; every request inside it gets the smaller of its
own budget and what is left of the run's, and when nothing is left `RunOutOfTime` stops the run between items.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
REQUEST_DEADLINE = 30.0  # seconds for one whole response, connect to last byte
RUN_DEADLINE = 120.0  # seconds for one run of a timer's work
ROUTES_DEADLINE = 10.0  # seconds for checking (saving) or previewing a routes list: work a person can make large
CONNECT_TIMEOUT = 5.0

_run_ends: contextvars.ContextVar[float | None] = contextvars.ContextVar("run_ends", default=None)


class RunOutOfTime(Exception):
    """The run's deadline has passed: stop between items, keep what is done, report it."""


@contextlib.contextmanager
def run_deadline(seconds: float) -> Iterator[None]:
    """Bound everything inside (on this thread, and on threads started with `in_this_run`) to `seconds`."""
    ends = time.monotonic() + seconds
    outer = _run_ends.get()
    token = _run_ends.set(ends if outer is None else min(outer, ends))
    try:
        yield
    finally:
        _run_ends.reset(token)


def run_left() -> float | None:
    """Seconds left in the current run, or None outside a run."""
    ends = _run_ends.get()
    return None if ends is None else ends - time.monotonic()


def check_run() -> None:
    """Raise `RunOutOfTime` once the current run's deadline has passed."""
    left = run_left()
    if left is not None and left <= 0:
        raise RunOutOfTime("the run reached its deadline")


def budget(request_deadline: float) -> float:
    """The time one request may take now: its own deadline, or less when the run ends sooner."""
    left = run_left()
    if left is None:
        return request_deadline
    if left <= 0:
        raise RunOutOfTime("the run reached its deadline")
    return min(request_deadline, left)


def in_this_run(action: Callable[..., T]) -> Callable[..., T]:
    """`action` for another thread (a pool's worker), carrying this thread's run deadline along."""
    context = contextvars.copy_context()
    return lambda *args, **kwargs: context.run(action, *args, **kwargs)


def call_within(seconds: float, action: Callable[[], T], name: str) -> T:
    """Run a blocking call that has no total deadline of its own (an SDK's token request) and wait at most
    `seconds` for it. On time-out a `TimeoutError` is raised here; the call itself ends on its own timeouts."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = action()
        except BaseException as exc:  # handed to the waiting caller
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=in_this_run(run), name=name, daemon=True).start()
    if not done.wait(seconds):
        raise TimeoutError(f"{name} did not answer within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


class _DeadlineStream(httpx.SyncByteStream):
    """The response body, chunk by chunk, refusing to go on past the deadline."""

    def __init__(self, inner: Any, ends: float, request: httpx.Request) -> None:
        self._inner = inner
        self._ends = ends
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            if time.monotonic() > self._ends:
                raise httpx.ReadTimeout("the response did not finish within its deadline", request=self._request)
            yield chunk

    def close(self) -> None:
        self._inner.close()


def _cut(response: httpx.Response, fired: threading.Event) -> None:
    """The watchdog: shut the connection down so a read blocked on a dripping server returns at once."""
    fired.set()
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the base class's: below TLS, at the descriptor


def send(client: httpx.Client, request: httpx.Request, seconds: float) -> httpx.Response:
    """Send `request` and read its whole response within `seconds`, or raise an `httpx.TimeoutException`."""
    ends = time.monotonic() + seconds
    connect = min(CONNECT_TIMEOUT, seconds / 2)
    rest = max(seconds - connect, 0.001)
    request.extensions["timeout"] = httpx.Timeout(rest, connect=connect, pool=connect).as_dict()
    response = client.send(request, stream=True)
    fired = threading.Event()
    watchdog = threading.Timer(max(ends - time.monotonic(), 0.0), _cut, (response, fired))
    watchdog.daemon = True
    watchdog.start()
    try:
        response.stream = _DeadlineStream(response.stream, ends, request)
        response.read()
    except httpx.TransportError as exc:
        response.close()
        if fired.is_set() and not isinstance(exc, httpx.TimeoutException):
            raise httpx.ReadTimeout("the response did not finish within its deadline", request=request) from exc
        raise
    finally:
        watchdog.cancel()
    return response
