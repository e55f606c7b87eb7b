"""What a server is started with: the store, the bind address, the models, the caps.

Design decisions: every cap on request size lives here, in one place the pages read
(``k``, page size, question length, body size), so a bad request is refused by the
same numbers everywhere; the defaults bind loopback only and record nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from videomem.pipeline.errors import ConfigError

__all__ = ["LOOPBACK", "ServeConfig"]

#: host names a browser on this machine uses for a loopback server
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@dataclass(frozen=True)
class ServeConfig:
    store: str
    storage_options: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8321
    #: the VLM that answers (default: each video's own); ``llm``: a text LLM instead
    model: str | None = None
    llm: str | None = None
    device: str | None = None
    dtype: str | None = None
    #: where the search encoders run
    search_device: str = "cpu"
    #: write answers of the ask form to the store's ``answers`` table
    record_answers: bool = False
    max_k: int = 100
    max_page: int = 500
    page: int = 50
    max_question: int = 2000
    max_body: int = 16 * 1024
    #: questions waiting for the one generation thread before "busy"
    ask_queue: int = 4

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, got {self.port}")
        if self.ask_queue < 1 or self.page < 1 or self.page > self.max_page:
            raise ConfigError("ask_queue and page must be >= 1, page <= max_page")

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"http://{host}:{port or self.port}/"
