"""The Starlette app of ``videomem serve``: routes, shared state, security.

Design decisions: :func:`create_app` takes the config and, optionally, a searcher and
an asker (a caller with its own models, a test with a stub LLM behind the
:class:`~videomem.qa.textllm.ChatModel` protocol); by default it builds warm ones
from the config. The store opens read-only when the app starts and closes when it
stops. Routes name ids only (``{video_id}``, ``{slot:int}``); static files come from
the package's ``static/`` folder.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from videomem.jobs.ask import Asker
from videomem.jobs.searcher import Searcher
from videomem.jobs.serve import answers, ask, corpus, media, search, video
from videomem.jobs.serve.config import ServeConfig
from videomem.jobs.serve.security import Guard, error_handlers
from videomem.jobs.serve.state import Shared
from videomem.jobs.serve.worker import AskWorker
from videomem.memory.store import Store

__all__ = ["create_app"]


def create_app(
    config: ServeConfig, searcher: Searcher | None = None, asker: Asker | None = None
) -> Starlette:
    """The app over ``config.store`` (opened read-only when the app starts)."""
    searcher = searcher or Searcher(config.search_device)
    asker = asker or Asker(
        model=config.model, llm=config.llm, device=config.device, dtype=config.dtype
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = Store(config.store, storage_options=config.storage_options)
        worker = AskWorker(config.ask_queue)
        app.state.shared = Shared(config, store, searcher, asker, worker)
        try:
            yield
        finally:
            worker.close()
            store.close()

    routes = [
        Route("/", corpus.corpus, name="corpus"),
        Route("/video/{video_id}", video.video, name="video"),
        Route("/search", search.search, name="search"),
        Route("/ask", ask.ask_form, methods=["GET"], name="ask_form"),
        Route("/ask", ask.ask_post, methods=["POST"], name="ask"),
        Route("/answers", answers.answers, name="answers"),
        Route("/media/{video_id}", media.video_file, name="media"),
        Route("/thumb/{video_id}/{slot:int}.jpg", media.thumbnail, name="thumb"),
        Mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(Guard, config=config)],
        exception_handlers=error_handlers(),
        lifespan=lifespan,
    )
