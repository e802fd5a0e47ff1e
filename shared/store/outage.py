"""Table Storage that cannot be reached, fails or throttles is `store_unavailable` (503 with Retry-After), never a
500: the caller did nothing wrong and can repeat. Every step of a create is one store transaction, so an outage
leaves it either done or not done, never half-written; the creator's lease rules (create_ticket/leases.py) make
the repeat succeed once the store is back.

The HTTP session is sized to the connector's own concurrency, so a burst never queues on, or discards,
connections: the Python worker runs at most 32 invocations at once (PYTHON_THREADPOOL_THREAD_COUNT's maximum,
https://learn.microsoft.com/azure/azure-functions/python-scale-performance-reference), and one invocation adds
its own pools (a refresh's tenants, the status sync's connections, the write-back's four).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from shared.problems import StoreUnavailable

C = TypeVar("C", bound=type)
RETRY_AFTER = 5  # seconds a caller waits before repeating
WORKER_THREADS = 32
CONNECT_TIMEOUT = 5.0  # seconds to open a connection to the storage account
READ_TIMEOUT = 10.0  # seconds between bytes of an answer
TOTAL_TIMEOUT = 20.0  # seconds for one store call, its SDK retries included


def connections_for(tenant_parallelism: int) -> int:
    """How many connections to the store one process may use at once: each worker thread's call and the routes read
    its create makes beside its claim, the refresh's tenants, the status sync's connections and write-backs."""
    return 2 * WORKER_THREADS + tenant_parallelism + 4 + 4


def client_options(connections: int) -> dict[str, Any]:
    """The SDK client's transport and retries: a pool as large as the concurrency, and deadlines on every call."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=connections, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    transport = RequestsTransport(session=session, session_owner=False, connection_timeout=CONNECT_TIMEOUT,
                                  read_timeout=READ_TIMEOUT)  # fmt: skip
    return {"transport": transport, "retry_total": 3, "retry_backoff_factor": 0.4, "retry_backoff_max": 4,
            "timeout": TOTAL_TIMEOUT}  # fmt: skip


def is_outage(exc: BaseException) -> bool:
    """The store did not answer (no connection, a cut, a time-out) or answered that it is failing or busy."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(exc, HttpResponseError) and isinstance(status, int) and (status >= 500 or status == 429)


def _translated(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except StoreUnavailable:
            raise
        except Exception as exc:
            if not is_outage(exc):
                raise
            raise StoreUnavailable(
                f"The connector's store (Azure Table Storage) is unavailable ({type(exc).__name__}); nothing was "
                "half-written.",
                remediation="Repeat the request after the Retry-After delay. If it lasts, check the storage "
                "account's health and network rules (Azure portal > the storage account > Resource health).",
                retry_after=RETRY_AFTER,
            ) from exc

    return call


def outages_unavailable(cls: C) -> C:
    """Every public method of the store (its own and its bases'): an outage becomes `StoreUnavailable`."""
    for name in dir(cls):
        if name.startswith("_"):
            continue
        member = inspect.getattr_static(cls, name)
        if inspect.isfunction(member):
            setattr(cls, name, _translated(member))
    return cls
