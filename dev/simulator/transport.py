"""Two ways to reach the simulator: an httpx transport (in process) and a loopback HTTP server."""

from __future__ import annotations

import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

import httpx

from dev.simulator.core import SimRequest, SimResponse


class Simulated(Protocol):
    """A simulator: answers `SimRequest`s, and learns the base URL it is served at."""

    def handle(self, request: SimRequest) -> SimResponse: ...

    def bind(self, base_url: str) -> None: ...


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
        return httpx.Response(response.status, headers=response.headers, content=response.body, request=request)


class _Handler(BaseHTTPRequestHandler):
    server: _SimulatorServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        url = f"http://{host}{self.path}"
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = self.server.simulator.handle(SimRequest(self.command, url, headers, body))
        if response.drop:
            # SO_LINGER 0 turns close() into a TCP reset: the client sees the connection drop.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:  # quiet: URLs may carry codes
        return


class _SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # a burst of connections queues, as at a real instance, instead of being refused

    def __init__(self, address: tuple[str, int], simulator: Simulated) -> None:
        super().__init__(address, _Handler)
        self.simulator = simulator


def listen(simulator: Simulated, port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Take the port on 127.0.0.1 (an `OSError` when it is busy) without serving yet; `start` serves."""
    server = _SimulatorServer(("127.0.0.1", port), simulator)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    simulator.bind(url)
    return server, url


def start(server: ThreadingHTTPServer) -> None:
    threading.Thread(target=server.serve_forever, args=(0.05,), name="servicenow-simulator", daemon=True).start()


def serve(simulator: Simulated, port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Serve on 127.0.0.1 in a daemon thread; returns the server and its base URL."""
    server, url = listen(simulator, port)
    start(server)
    return server, url
