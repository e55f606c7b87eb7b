"""Running the app under uvicorn (what ``videomem serve`` calls).

Design decisions: one uvicorn process, one event loop; store reads run on
Starlette's thread pool and generation on the ask worker, so the loop only routes.
The socket is bound before ``announce`` is called, so the printed URL answers (port 0
picks a free port, and the URL names it).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from videomem.jobs.serve.config import ServeConfig
from videomem.memory.store import Store
from videomem.pipeline.errors import ConfigError

__all__ = ["serve"]


def serve(config: ServeConfig, announce: Callable[[str], None] = print) -> None:
    """Serve ``config.store`` until interrupted; ``announce`` gets the URL once bound."""
    import uvicorn
    from videomem.jobs.serve.app import create_app

    Store(config.store, storage_options=config.storage_options).close()  # a clear error now
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    # proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say TCP; without
    # it a response written in two parts waits ~40 ms for the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host.strip("[]"), config.port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {config.host}:{config.port}: {e.strerror}") from e
    sock.listen(2048)  # connections queue from here, so the announced URL answers
    port = sock.getsockname()[1]
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    announce(config.url(port))
    server.run(sockets=[sock])
