"""A local Functions host: indexes `function_app.app` as the worker does and serves it.

HTTP functions answer on http://localhost:{port}/api/{route} with their declared methods; timer
functions fire on their NCRONTAB schedules (`%SETTING%` resolved from the environment), and, like Core
Tools, `POST /admin/functions/{name}` runs one now; queue functions take their queue's messages as the Functions
host does (queues.py), when their storage connection is set. Like Core Tools, it does not check function keys unless
given one (then FUNCTION and ADMIN routes require it). Given a user, it emulates App Service Authentication
in front of the app (easyauth.py), as the platform does in Azure.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit

from azure.functions.timer import TimerRequest

from dev.host import ncrontab
from dev.host.easyauth import EasyAuth, LocalUser
from dev.host.functions import TimerFunction, index
from dev.host.handler import Handler, HostServer
from dev.host.queues import RECEIVE_FOR, QueueListener, QueueOptions, connection_string, load_options
from shared.auth import ROLE_ADMIN

log = logging.getLogger("dev.host")


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class LocalHost(HostServer):
    """Connections are served concurrently (a thread each), like the Functions host; the listen backlog is
    Kestrel's default (512), not socketserver's 5, so a burst of connections queues instead of being refused.
    With `ipv6`, it listens on [::1] too: browsers try `localhost` there first."""

    daemon_threads = True
    request_queue_size = 512

    def __init__(
        self,
        functions: Iterable[Any],
        host: str = "127.0.0.1",
        port: int = 7071,
        function_key: str | None = None,
        *,
        read_timeout: float = 10.0,
        max_body: int = 4 * 1024 * 1024,
        user: LocalUser | None = None,
        other_users: tuple[LocalUser, ...] = (),
        ipv6: bool = False,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        wait: Callable[[float], bool] | None = None,
        queue_options: QueueOptions | None = None,
        processing_visibility: float = RECEIVE_FOR,
        run_timers: bool = True,
    ) -> None:
        """`now` and `wait` (True: stop) are the timers' clock; tests pass their own, so no real time passes.
        `queue_options` default to host.json's; `processing_visibility` is how long a message taken stays hidden
        (the Functions host's 10 minutes, renewed while its function runs; tests shorten it). Without `run_timers`
        its timers run only when called (`POST /admin/functions/{name}`): a timer runs on one instance of an app
        at a time (https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer#scale-out), so of
        several local hosts of one app only the first runs them."""
        indexed = index(functions)
        self.http, self.timers, self.queue_functions = indexed.http, indexed.timers, indexed.queues
        self.queue_options = queue_options or load_options()
        self.processing_visibility = processing_visibility
        self.run_timers = run_timers
        self.queue_listeners: list[QueueListener] = []
        self.function_key = function_key
        # App Service Authentication, emulated: `user` signs in by default, `other_users` with a login_hint.
        self.auth = EasyAuth([user, *other_users]) if user is not None else None
        self.read_timeout = read_timeout
        self.max_body = max_body
        super().__init__((host, port), Handler)
        self._stop = threading.Event()
        self._now = now
        self._wait = wait or self._stop.wait
        self._serving: threading.Thread | None = None
        self.listeners = [self.socket]
        if ipv6:
            try:
                listener = _listen_ipv6(self.port, self.request_queue_size)
            except OSError:
                self.server_close()
                raise
            if listener is not None:
                self.listeners.append(listener)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def own_origin(self, origin: str) -> bool:
        """`localhost`, `127.0.0.1` and `[::1]` on this port are all this app."""
        try:
            parts = urlsplit(origin.strip().lower())
            port = parts.port
        except ValueError:
            return False
        return parts.scheme == "http" and parts.hostname in LOOPBACK_NAMES and port == self.port

    def canonical_location(self, method: str, target: SplitResult, headers: dict[str, str]) -> str | None:
        """A browser that opened the app at 127.0.0.1 or [::1] is sent to the URL `make run` prints, so its
        cookies (the sign-in session, the OAuth state bound to the browser) live on the host name the OAuth
        redirect URI names. Only page navigations move: API calls and tools (curl) are answered where they are."""
        if method not in ("GET", "HEAD") or not target.path.startswith("/"):
            return None
        if any(k.lower() == "x-requested-with" for k in headers):
            return None
        host = next((v for k, v in headers.items() if k.lower() == "host"), "")
        if not self.own_origin(f"http://{host}") or urlsplit(f"//{host.lower()}").hostname == "localhost":
            return None
        return self.url + target.path + (f"?{target.query}" if target.query else "")

    def is_admin(self, headers: dict[str, str]) -> bool:
        """The emulated sign-in's user has Connector.Admin (without the emulation, every caller has every role,
        as the app itself treats local callers)."""
        auth = self.auth
        if auth is None:
            return True
        session = auth._session(headers)  # the emulation's own session lookup (easyauth.py)
        return session is not None and ROLE_ADMIN in auth.sessions[session].roles

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept on every listener (127.0.0.1, and [::1] with `ipv6`); each connection gets its own thread."""
        with selectors.DefaultSelector() as selector:
            for listener in self.listeners:
                selector.register(listener, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in selector.select(poll_interval):
                    try:
                        connection, address = key.fileobj.accept()  # type: ignore[union-attr]
                    except OSError:
                        continue
                    self.process_request(connection, address)

    def start(self) -> None:
        self._serving = threading.Thread(target=self.serve_forever, args=(0.05,), name="local-host", daemon=True)
        self._serving.start()
        for timer in self.timers if self.run_timers else ():
            threading.Thread(target=self._run_timer, args=(timer,), name=f"timer-{timer.name}", daemon=True).start()
        for function in self.queue_functions:
            connection = connection_string(function.connection)
            if connection is None:
                log.warning("Queue function %s does not run: its storage connection (%s) is unset or has no Queue "
                            "service", function.name, function.connection)  # fmt: skip
                continue
            listener = QueueListener(function.name, function.queue, connection, function.call, self.queue_options,
                                     processing_visibility=self.processing_visibility, stop=self._stop)  # fmt: skip
            listener.start()
            self.queue_listeners.append(listener)

    def shutdown(self) -> None:
        self._stop.set()
        if self._serving is not None:
            self._serving.join()
        for listener in self.queue_listeners:
            listener.stop()
        self.queue_listeners.clear()

    def stop(self) -> None:
        self.shutdown()
        for listener in self.listeners[1:]:
            listener.close()
        self.server_close()

    def _run_timer(self, timer: TimerFunction) -> None:
        if timer.run_on_startup:
            self.fire(timer, past_due=False)
        while not self._stop.is_set():
            now = self._now()
            due = ncrontab.next_after(timer.schedule, now)
            if self._wait((due - now).total_seconds()):
                return
            late = (self._now() - due).total_seconds() > 60
            self.fire(timer, past_due=late)

    def fire(self, timer: TimerFunction, *, past_due: bool) -> None:
        try:
            timer.call(TimerRequest(past_due=past_due))
            # A timer that fires more than once a minute (its seconds field is not one fixed second) is not news.
            often = not timer.schedule.split(" ", 1)[0].isdigit()
            log.log(logging.DEBUG if often else logging.INFO, "Timer %s ran", timer.name)
        except Exception as exc:
            log.error("Timer %s raised %s", timer.name, type(exc).__name__)


def _listen_ipv6(port: int, backlog: int) -> socket.socket | None:
    """[::1] on the same port; a machine without IPv6 loopback simply has no such listener (None)."""
    listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("::1", port))
        listener.listen(backlog)
    except OSError as exc:
        listener.close()
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            return None
        raise
    return listener
