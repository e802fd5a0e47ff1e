"""One HTTP connection to the local host, as the Functions host serves it: strict framing (Content-Length or
chunked, never both; a body that never arrives is a 400, not a hang), the emulated sign-in in front of the app,
the route and method that match (404, 405 as problem+json), the function key, and `POST /admin/functions/{name}`."""

from __future__ import annotations

import hmac
import json
import logging
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit

import azure.functions as func

from dev.host.easyauth import Answer, EasyAuth
from dev.host.functions import HttpFunction, TimerFunction
from shared.edge import request_path
from shared.text import ascii_int, printable

log = logging.getLogger("dev.host")


class HostServer(ThreadingHTTPServer):
    """What a connection asks of the local host (`server.LocalHost` is the one there is): its limits, its
    functions, the emulated sign-in, and the answers that depend on where it listens."""

    read_timeout: float
    max_body: int
    function_key: str | None
    auth: EasyAuth | None
    http: list[HttpFunction]
    timers: list[TimerFunction]

    def canonical_location(self, method: str, target: SplitResult, headers: dict[str, str]) -> str | None:
        raise NotImplementedError

    def own_origin(self, origin: str) -> bool:
        raise NotImplementedError

    def is_admin(self, headers: dict[str, str]) -> bool:
        raise NotImplementedError

    def fire(self, timer: TimerFunction, *, past_due: bool) -> None:
        raise NotImplementedError


class BadRequest(Exception):
    """Malformed HTTP framing: answered with `status` and the connection closed, as the Functions host does."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Handler(BaseHTTPRequestHandler):
    server: HostServer
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
