"""Index `function_app.app` the way the Functions worker does, once per process."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def indexed() -> dict[str, Any]:
    import function_app

    return {str(f.get_function_name()): f for f in function_app.app.get_functions()}
