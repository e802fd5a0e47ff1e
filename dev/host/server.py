"""A local Functions host: indexes `function_app.app` as the worker does and serves it.

HTTP functions answer on http://localhost:{port}/api/{route} with their declared methods; timer
functions fire on their NCRONTAB schedules (`%SETTING%` resolved from the environment), and, like Core
Tools, `POST /admin/functions/{name}` runs one now. Like Core Tools, it does not check function keys unless
given one (then FUNCTION and ADMIN routes require it). Given a user, it emulates App Service Authentication
in front of the app (dev/host/easyauth.py), as the platform does in Azure.
"""

from __future__ import annotations

import errno
import hmac
import importlib
import json
import logging
import os
import re
import selectors
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit

import azure.functions as func
from azure.functions.timer import TimerRequest

from dev.host import ncrontab
from dev.host.easyauth import Answer, EasyAuth, LocalUser
from shared.auth import ROLE_ADMIN
from shared.edge import request_path
from shared.text import ascii_int, printable

log = logging.getLogger("dev.host")


@dataclass
class HttpFunction:
    name: str
    route: str
    pattern: re.Pattern[str]
    methods: set[str]
    auth_level: str
    call: Callable[..., Any]


@dataclass
class TimerFunction:
    name: str
    schedule: str
    run_on_startup: bool
    call: Callable[..., Any]


# ASP.NET Core's route constraints, as the Functions host applies them (learn `aspnet/core/fundamentals/routing`,
# Route constraints): a segment that fails its constraint does not match the route at all.
_CONSTRAINTS = {"guid": r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}",
                "int": r"-?[0-9]+", "alpha": r"[A-Za-z]+"}  # fmt: skip


def _route_pattern(route: str) -> re.Pattern[str]:
    def segment(match: re.Match[str]) -> str:
        constraint = match.group(2)
        if constraint is not None and constraint not in _CONSTRAINTS:
            raise ValueError(f"route constraint '{constraint}' is not supported by the local host")
        return f"(?P<{match.group(1)}>{_CONSTRAINTS.get(constraint or '', '[^/]+')})"

    regex = re.sub(r"\{(\w+)(?::(\w+))?\}", segment, route.strip("/"))
    return re.compile(f"^/api/{regex}/?$")


def resolve_setting(value: str) -> str:
    match = re.fullmatch(r"%(\w+)%", value)
    if not match:
        return value
    setting = os.environ.get(match.group(1))
    if not setting:
        raise KeyError(f"the app setting {match.group(1)} is not set")
    return setting


def index(functions: Iterable[Any]) -> tuple[list[HttpFunction], list[TimerFunction]]:
    """Sort the app's indexed functions (`app.get_functions()`, which may be called only once) by trigger."""
    http: list[HttpFunction] = []
    timers: list[TimerFunction] = []
    for function in functions:
        name = str(function.get_function_name())
        bindings = json.loads(function.get_function_json())["bindings"]
        data = next(b for b in bindings if b["direction"].upper() == "IN" and b["type"].endswith("Trigger"))
        if data["type"] == "httpTrigger":
            http.append(
                HttpFunction(
                    name,
                    "/api/" + (data.get("route") or name),
                    _route_pattern(data.get("route") or name),
                    {m.upper() for m in data.get("methods") or ["GET", "POST"]},
                    str(data.get("authLevel")),
                    function.get_user_function(),
                )
            )
        elif data["type"] == "timerTrigger":
            timers.append(
                TimerFunction(
                    name,
                    resolve_setting(data["schedule"]),
                    bool(data.get("runOnStartup")),
                    function.get_user_function(),
                )
            )
    return http, timers


class BadRequest(Exception):
    """Malformed HTTP framing: answered with `status` and the connection closed, as the Functions host does."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Handler(BaseHTTPRequestHandler):
    server: LocalHost
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.read_timeout)  # a body that never arrives: a 400, not a hang

    def _read_body(self) -> bytes:
        lengths = self.headers.get_all("Content-Length") or []
        encoding = (self.headers.get("Transfer-Encoding") or "").strip().lower()
        if encoding and lengths:
            raise BadRequest(400, "both Content-Length and Transfer-Encoding")  # a smuggling vector
        if encoding:
            if encoding != "chunked":
                raise BadRequest(400, "unsupported Transfer-Encoding")
            return self._read_chunked()
        if not lengths:
            return b""
        length = ascii_int(lengths[0], max_digits=12)
        if length is None or len(set(lengths)) > 1:
            raise BadRequest(400, "Content-Length is not one number")
        if length > self.server.max_body:
            raise BadRequest(413, "the body is too large")
        return self._read_exactly(length)

    def _read_exactly(self, length: int) -> bytes:
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            body = b""
        if len(body) != length:
            raise BadRequest(400, "the body ended before its Content-Length")
        return body

    def _read_chunked(self) -> bytes:
        body = bytearray()
        try:
            while True:
                line = self.rfile.readline(1026)
                size_text = line.split(b";", 1)[0].strip()
                size = int(size_text, 16) if re.fullmatch(rb"[0-9A-Fa-f]{1,8}", size_text) else -1
                if size < 0 or not line.endswith(b"\n"):
                    raise BadRequest(400, "a malformed chunk size")
                if len(body) + size > self.server.max_body:
                    raise BadRequest(413, "the body is too large")
                if size == 0:
                    break
                body += self._read_exactly(size)
                if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                    raise BadRequest(400, "a chunk without its line end")
            for _ in range(100):  # trailers, up to the blank line
                if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                    return bytes(body)
        except TimeoutError:
            pass
        raise BadRequest(400, "the chunked body did not end")

    def _serve(self) -> None:
        shown = request_path(self.path)
        try:
            try:
                target = urlsplit(self.path)
            except ValueError:
                raise BadRequest(400, "a malformed request target") from None
            body = self._read_body()
        except BadRequest as exc:
            log.info("%s %s -> %s (%s)", self.command, shown, exc.status, exc.reason)
            self.close_connection = True
            return self._send(
                exc.status,
                {"Content-Type": "application/problem+json", "Connection": "close"},
                json.dumps({"status": exc.status, "title": "Bad request", "detail": exc.reason}).encode(),
            )
        try:
            self._dispatch(target, body, shown)
        except Exception as exc:  # the host itself failed: answer, never drop the connection with a traceback
            log.error("%s %s failed in the local host: %s", self.command, shown, type(exc).__name__)
            self.close_connection = True
            self._send(500, {"Content-Type": "text/plain", "Connection": "close"}, b"Internal Server Error")

    def _reply(self, answer: Answer) -> None:
        self._send(answer.status, answer.headers, answer.body)

    def _dispatch(self, parts: SplitResult, body: bytes, shown: str) -> None:
        headers = dict(self.headers.items())
        if (location := self.server.canonical_location(self.command, parts, headers)) is not None:
            return self._send(307, {"Location": location, "Cache-Control": "no-store"}, b"")
        if parts.path == "/favicon.ico":  # the pages declare their icon; an old tab asking gets no noise
            return self._send(204, {"Cache-Control": "max-age=86400"}, b"")
        auth = self.server.auth
        if auth is not None and (answer := auth.auth_route(self.command, parts.path, parts.query, headers)):
            return self._reply(answer)
        if parts.path.startswith("/admin/functions/"):
            return self._run_function(parts.path.removeprefix("/admin/functions/"), parts, headers, shown)
        if auth is not None and (answer := auth.gate(self.command, parts.path, self.path, headers)):
            log.info("%s %s -> %s (App Service Authentication)", self.command, shown, answer.status)
            return self._reply(answer)
        matched = [(f, m) for f in self.server.http for m in [f.pattern.match(parts.path)] if m]
        if not matched:
            log.info("%s %s -> 404 (no such route)", self.command, shown)
            return self._send(
                404,
                {"Content-Type": "application/problem+json"},
                b'{"type":"about:blank","title":"No such route","status":404,"code":"not_found",'
                b'"detail":"No function of the app answers this path."}',
            )
        allowed = [(f, m) for f, m in matched if self.command in f.methods]
        if not allowed:
            methods = ", ".join(sorted(set().union(*(f.methods for f, _ in matched))))
            return self._send(
                405,
                {"Allow": methods, "Content-Type": "application/problem+json"},
                b'{"type":"about:blank","title":"Method not allowed","status":405,"code":"method_not_allowed",'
                b'"detail":"This path answers only the methods in the Allow header."}',
            )
        function, match = allowed[0]
        if function.auth_level.upper() != "ANONYMOUS" and not self._key_ok(parts):
            return self._send(
                401,
                {"Content-Type": "application/problem+json", "WWW-Authenticate": "x-functions-key"},
                b'{"type":"about:blank","title":"Function key required","status":401,"code":"unauthorized",'
                b'"detail":"This route needs the function key (x-functions-key header or code parameter)."}',
            )
        request = func.HttpRequest(
            method=self.command,
            url=f"http://{self.headers.get('Host', 'localhost')}{self.path}",
            headers=headers,
            params=dict(parse_qsl(parts.query, keep_blank_values=True)),
            route_params=match.groupdict(),
            body=body,
        )
        try:
            response = function.call(request)
        except Exception as exc:  # the worker answers 500 too
            log.error("Function %s raised %s", function.name, type(exc).__name__)
            return self._send(500, {"Content-Type": "text/plain"}, b"Internal Server Error")
        headers = dict(response.headers.items())
        if "content-type" not in {k.lower() for k in headers} and response.get_body():
            headers["Content-Type"] = f"{response.mimetype}; charset={response.charset}"
        log.info("%s %s -> %s (%s)", self.command, shown, response.status_code, function.name)
        self._send(response.status_code, headers, response.get_body())

    def _key_ok(self, parts: SplitResult) -> bool:
        if not self.server.function_key:
            return True
        presented = self.headers.get("x-functions-key") or dict(parse_qsl(parts.query)).get("code") or ""
        return hmac.compare_digest(presented.encode(), self.server.function_key.encode())

    def _run_function(self, name: str, parts: SplitResult, headers: dict[str, str], shown: str) -> None:
        """Like Core Tools: `POST /admin/functions/{name}` runs a non-HTTP function (a timer) now; 202.
        A browser's request (it carries an `Origin`) must come from this app and an admin's session: a page
        elsewhere cannot fire it with a form, nor can a reader. A caller without an `Origin` is a tool (curl)."""
        timer = next((t for t in self.server.timers if t.name == name), None)
        if self.command != "POST" or timer is None:
            return self._send(404, {"Content-Type": "application/json"}, b'{"code":"not_found"}')
        if not self._key_ok(parts):
            return self._send(401, {"Content-Type": "application/json"}, b'{"code":"unauthorized"}')
        origin = self.headers.get("Origin")
        if origin is not None and not (self.server.own_origin(origin) and self.server.is_admin(headers)):
            log.info("%s %s -> 403 (not this app's admin)", self.command, shown)
            return self._send(403, {"Content-Type": "application/json"}, b'{"code":"forbidden"}')
        self.server.fire(timer, past_due=False)
        log.info("%s %s -> 202 (ran %s)", self.command, shown, name)
        self._send(202, {}, b"")

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def __getattr__(self, name: str) -> Any:
        """Every method (QUERY, TRACE, ...) reaches routing, which answers 405 for those a route lacks."""
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: object) -> None:  # the query may carry an OAuth code
        return

    def log_error(self, format: str, *args: object) -> None:  # malformed request lines: said once, cut
        if format.startswith("Request timed out"):  # an idle keep-alive connection closing: not malformed
            return log.debug("A connection idle for %s s was closed", self.server.read_timeout)
        log.info("Malformed request: %s", printable(format % args, 200))


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class LocalHost(ThreadingHTTPServer):
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
    ) -> None:
        """`now` and `wait` (True: stop) are the timers' clock; tests pass their own, so no real time passes."""
        self.http, self.timers = index(functions)
        self.function_key = function_key
        # App Service Authentication, emulated: `user` signs in by default, `other_users` with a login_hint.
        self.auth = EasyAuth([user, *other_users]) if user is not None else None
        self.read_timeout = read_timeout
        self.max_body = max_body
        super().__init__((host, port), _Handler)
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
        session = auth._session(headers)  # the emulation's own session lookup (dev/host/easyauth.py)
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
        for timer in self.timers:
            threading.Thread(target=self._run_timer, args=(timer,), name=f"timer-{timer.name}", daemon=True).start()

    def shutdown(self) -> None:
        self._stop.set()
        if self._serving is not None:
            self._serving.join()

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


def load_app(module: str = "function_app") -> func.FunctionApp:
    loaded = importlib.import_module(module)
    apps = [v for v in vars(loaded).values() if isinstance(v, func.FunctionApp)]
    if len(apps) != 1:
        raise RuntimeError(f"{module} must define exactly one FunctionApp, found {len(apps)}")
    return apps[0]
