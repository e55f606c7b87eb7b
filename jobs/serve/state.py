"""What every page of one server shares: its config, the store, the warm models.

Design decisions: the store is opened read-only once; it reads with LanceDB's
read-consistency interval 0 (see :class:`~videomem.memory.store.Store`), so every
request sees the latest committed table version, and a video an index job is writing
appears only once its ``videos`` row (the commit marker) is in; a half-written memory
is never named by a live run and never shown. Handlers that read the store are plain
functions, run by Starlette on its thread pool, never on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from videomem.jobs.ask import Asker
from videomem.jobs.searcher import Searcher
from videomem.jobs.serve.config import ServeConfig
from videomem.jobs.serve.worker import AskWorker
from videomem.memory.store import Store

__all__ = ["Shared", "shared"]


@dataclass
class Shared:
    config: ServeConfig
    store: Store
    searcher: Searcher
    asker: Asker
    worker: AskWorker


def shared(request: Request) -> Shared:
    state: Shared = request.app.state.shared
    return state
