"""One page, two shapes: HTML from a template, or its data as JSON.

Design decisions: a page handler builds one plain dict (JSON-safe: numbers, strings,
lists) and hands it here with its template; the client chooses the shape with
``?format=json`` or an ``Accept`` header that prefers ``application/json``. The
template sees the same dict, so the HTML can never show what the JSON lacks.
Templates are autoescaped (Jinja2's ``select_autoescape`` on ``.html``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

__all__ = ["error_page", "page", "wants_json"]

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _clock(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "–"
    m, sec = divmod(max(0.0, s), 60.0)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{sec:04.1f}" if h else f"{m}:{sec:04.1f}"


def _query(request: Request, **change: Any) -> str:
    """This page's query string with ``change`` applied (None removes a key)."""
    params = dict(request.query_params)
    params.pop("format", None)
    for key, value in change.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    return "?" + urlencode(params) if params else "?"


def _secs(s: float | None) -> str:
    return "–" if s is None else f"{s:.2f} s"


_ENV.filters["clock"] = _clock
_ENV.filters["secs"] = _secs
_ENV.globals["query"] = _query


def wants_json(request: Request) -> bool:
    fmt = request.query_params.get("format")
    if fmt is not None:
        return fmt == "json"
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return None
    return value


def page(request: Request, template: str, data: dict[str, Any], status: int = 200) -> Response:
    """``data`` as JSON, or rendered into ``template``."""
    data = _plain(data)
    if wants_json(request):
        return JSONResponse(data, status_code=status)
    html = _ENV.get_template(template).render(request=request, **data)
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, status: int, message: str) -> Response:
    return page(request, "error.html", {"status": status, "error": message}, status)


def dumps(data: Any) -> str:
    return json.dumps(_plain(data))
