"""Query and form parameters, checked against the caps (a bad one is a 400).

Design decisions: ids from the URL are checked against the one shape a stored video
id has (hex, as ``content_video_id`` makes; a prefix of at least 4 for pages, the
whole id for media) before any store read, so a path, ``..`` or a quote never reaches
a filter or the file system: anything else is 404.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from videomem.jobs.serve.security import ClientError

__all__ = ["Paging", "check_id", "float_param", "int_param", "optional", "paging"]

_ID = re.compile(r"[0-9a-f]{4,64}")


def check_id(value: str) -> str:
    """A video id or id prefix from a URL, else 404."""
    if not _ID.fullmatch(value):
        raise ClientError(404, f"no video {value!r}")
    return value


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ClientError(400, f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ClientError(400, f"{name} must be between {low} and {high}, got {value}")
    return value


def float_param(raw: str | None, name: str) -> float | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ClientError(400, f"{name} must be a number of seconds, got {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ClientError(400, f"{name} must be >= 0 seconds, got {raw!r}")
    return value


def optional(request: Request, name: str, choices: tuple[str, ...] | None = None) -> str | None:
    value = request.query_params.get(name) or None
    if value is not None and choices is not None and value not in choices:
        raise ClientError(400, f"{name} must be one of {list(choices)}, got {value!r}")
    if value is not None and len(value) > 500:
        raise ClientError(400, f"{name} is too long (at most 500 characters)")
    return value


@dataclass(frozen=True)
class Paging:
    """One page of a listing: ``limit`` rows from ``offset``."""

    limit: int
    offset: int

    def links(self, total: int) -> dict[str, Any]:
        """The page's place in a listing of ``total`` rows, as every listing reports it."""
        end = self.offset + self.limit
        return {
            "total": total,
            "offset": self.offset,
            "limit": self.limit,
            "next_offset": end if end < total else None,
            "prev_offset": max(0, self.offset - self.limit) if self.offset > 0 else None,
        }


def paging(request: Request, default: int, most: int) -> Paging:
    """``?limit=&offset=`` of a listing (``default`` rows, at most ``most``)."""
    limit = int_param(request, "limit", default, 1, most)
    return Paging(limit, int_param(request, "offset", 0, 0, 10**9))
