"""What every simulator speaks: a request as it arrived (`SimRequest`) and the answer to send (`SimResponse`),
transport-neutral, so `transport.py` serves the same simulator in process (httpx) and on a loopback port."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class SimRequest:
    method: str
    url: str  # absolute
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))


@dataclass
class SimResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    drop: bool = False  # close the connection without answering (after any commit)
    stall: float = 0.0  # seconds to wait before answering at all (a time-out after the commit)
    drip: float = 0.0  # seconds between the body's bytes, after the headers went out

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> SimResponse:
        return cls(
            status, {"Content-Type": "application/json;charset=UTF-8", **(headers or {})}, json.dumps(payload).encode()
        )

    @classmethod
    def envelope(cls, status: int, message: str, detail: str | None) -> SimResponse:
        return cls.json(status, {"error": {"message": message, "detail": detail}, "status": "failure"})
