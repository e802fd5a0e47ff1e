"""The app's functions as the Functions worker indexes them: HTTP functions with their routes (ASP.NET Core's
route constraints) and methods, timer functions with their schedules (`%SETTING%` resolved from the environment),
queue functions with their queue and the app setting that names its storage connection."""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import azure.functions as func


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


@dataclass
class QueueFunction:
    name: str
    queue: str
    connection: str  # the app setting holding the storage connection (AzureWebJobsStorage when not given)
    call: Callable[..., Any]


@dataclass
class Indexed:
    http: list[HttpFunction]
    timers: list[TimerFunction]
    queues: list[QueueFunction]


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


def index(functions: Iterable[Any]) -> Indexed:
    """Sort the app's indexed functions (`app.get_functions()`, which may be called only once) by trigger."""
    http: list[HttpFunction] = []
    timers: list[TimerFunction] = []
    queues: list[QueueFunction] = []
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
        elif data["type"] == "queueTrigger":
            queues.append(
                QueueFunction(
                    name,
                    resolve_setting(data["queueName"]),
                    data.get("connection") or "AzureWebJobsStorage",
                    function.get_user_function(),
                )
            )
    return Indexed(http, timers, queues)


def load_app(module: str = "function_app") -> func.FunctionApp:
    loaded = importlib.import_module(module)
    apps = [v for v in vars(loaded).values() if isinstance(v, func.FunctionApp)]
    if len(apps) != 1:
        raise RuntimeError(f"{module} must define exactly one FunctionApp, found {len(apps)}")
    return apps[0]
