"""Two ways to reach a simulator: an httpx transport (in process) and a loopback HTTP(S) server."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

import httpx

from dev.wire.messages import SimRequest, SimResponse


class Simulated(Protocol):
    """A simulator: answers `SimRequest`s, and learns the base URL it is served at."""

    def handle(self, request: SimRequest) -> SimResponse: ...

    def bind(self, base_url: str) -> None: ...


class _Drip(httpx.SyncByteStream):
    """A body that arrives one byte every `seconds`, as a server that trickles its answer sends it."""

    def __init__(self, body: bytes, seconds: float) -> None:
        self._body = body
        self._seconds = seconds
        self.finished = False

    def __iter__(self) -> Iterator[bytes]:
        for i in range(len(self._body)):
            time.sleep(self._seconds)
            yield self._body[i : i + 1]
        self.finished = True


class SimulatorTransport(httpx.BaseTransport):
    """Every request the connector makes arrives here; `sent` records them for assertions."""

    def __init__(self, simulator: Simulated) -> None:
        self.simulator = simulator
        self.sent: list[httpx.Request] = []
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.sent.append(request)
        body = request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        response = self.simulator.handle(SimRequest(request.method, str(request.url), headers, body))
        if response.drop:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        if response.stall:
            # The work is done, but the answer never comes within the client's deadline: what the client sees.
            raise httpx.ReadTimeout("timed out waiting for the response", request=request)
        if response.drip:
            return httpx.Response(response.status, headers=response.headers, request=request,
                                  stream=_Drip(response.body, response.drip))  # fmt: skip
        return httpx.Response(response.status, headers=response.headers, content=response.body, request=request)


class _Handler(BaseHTTPRequestHandler):
    server: _SimulatorServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        url = f"{self.server.scheme}://{host}{self.path}"
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = self.server.simulator.handle(SimRequest(self.command, url, headers, body))
        if response.drop:
            self._reset()
            return
        if response.stall and self.server.stop.wait(response.stall):
            return
        self.send_response_only(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if "date" not in {k.lower() for k in response.headers}:
            self.send_header("Date", self.date_time_string())
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if not response.drip:
            self.wfile.write(response.body)
            return
        self.wfile.flush()
        self.server.drips_started += 1
        try:
            for i in range(len(response.body)):
                if self.server.stop.wait(response.drip):
                    return
                self.wfile.write(response.body[i : i + 1])
                self.wfile.flush()
        except OSError:  # the client hung up before the drip ended: what a deadline does
            self.server.drips_cut += 1
            self.close_connection = True
            return
        self.server.drips_finished += 1

    def _reset(self) -> None:
        # SO_LINGER 0 turns close() into a TCP reset: the client sees the connection drop.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:  # quiet: URLs may carry codes
        return


class _SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # a burst of connections queues, as at a real instance, instead of being refused

    def __init__(self, address: tuple[str, int], simulator: Simulated, tls: ssl.SSLContext | None) -> None:
        super().__init__(address, _Handler)
        self.simulator = simulator
        self.scheme = "https" if tls else "http"
        self.tls = tls
        self.stop = threading.Event()  # set on shutdown: stalls and drips end at once
        self.drips_started = self.drips_cut = self.drips_finished = 0

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True)
        return sock, address

    def shutdown(self) -> None:
        self.stop.set()
        super().shutdown()


def listen(simulator: Simulated, port: int = 0, *, tls: ssl.SSLContext | None = None) -> tuple[_SimulatorServer, str]:
    """Take the port on 127.0.0.1 (an `OSError` when it is busy) without serving yet; `start` serves."""
    server = _SimulatorServer(("127.0.0.1", port), simulator, tls)
    url = f"{server.scheme}://127.0.0.1:{server.server_address[1]}"
    simulator.bind(url)
    return server, url


def start(server: ThreadingHTTPServer) -> None:
    threading.Thread(target=server.serve_forever, args=(0.05,), name="simulator", daemon=True).start()


def serve(simulator: Simulated, port: int = 0, *, tls: ssl.SSLContext | None = None) -> tuple[_SimulatorServer, str]:
    """Serve on 127.0.0.1 in a daemon thread (over TLS with `tls`); returns the server and its base URL."""
    server, url = listen(simulator, port, tls=tls)
    start(server)
    return server, url
