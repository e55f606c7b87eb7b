"""One error hierarchy for the whole project.

Every failure videomem raises on purpose derives from :class:`VideomemError`, so a
job runner can catch exactly "a video/model/store problem we understand" and record
it as data (``status=failed`` with ``str(err)`` as the readable reason), while real
bugs (``TypeError``, ``KeyError`` …) still surface as crashes.
"""

from __future__ import annotations


class VideomemError(Exception):
    """Base class of every error videomem raises deliberately."""


class ConfigError(VideomemError, ValueError):
    """A configuration value is invalid (bad fps, unknown metric, …)."""


class DecodeError(VideomemError):
    """A video could not be probed or decoded.

    ``reason`` is a one-line human explanation; ``stderr_tail`` holds ffmpeg's last
    stderr lines (may be empty) so the stored error says what ffmpeg saw.
    """

    def __init__(self, uri: str, reason: str, stderr_tail: str = "") -> None:
        self.uri = uri
        self.reason = reason
        self.stderr_tail = stderr_tail.strip()
        msg = f"{uri}: {reason}"
        if self.stderr_tail:
            msg += f"\nffmpeg said:\n{self.stderr_tail}"
        super().__init__(msg)


class EncoderError(VideomemError):
    """A model could not be loaded or run as a frame encoder."""


class StoreError(VideomemError):
    """The memory store could not be opened, read or written."""


class SearchError(VideomemError):
    """A search cannot run: empty query, nothing searchable, unknown video …"""
