"""``videomem serve``: a local web app and JSON API over one store.

* :mod:`.config` — what a server is started with (store, bind address, caps).
* :mod:`.app` — the Starlette app factory: routes, the store opened read-only once,
  the warm searcher, the ask worker; :mod:`.run` — uvicorn around it.
* :mod:`.security` — Host-header check, security headers (CSP ``default-src 'self'``),
  errors as readable 4xx; :mod:`.respond` — one page as HTML or JSON.
* One module per page: :mod:`.corpus`, :mod:`.video`, :mod:`.search`, :mod:`.ask`,
  :mod:`.answers`; :mod:`.media` — the video file (HTTP Range) and slot thumbnails by
  id only; :mod:`.worker` — the one generation thread and its bounded queue.

Design decisions:

* Server-rendered pages (Jinja2, autoescaped) with a few lines of plain JS from
  ``static/`` (no CDN, no build step); every page's state is in its URL, and every
  page answers JSON with ``?format=json`` or ``Accept: application/json``.
* The server calls the library only (the Store, :class:`~videomem.jobs.searcher.Searcher`,
  :class:`~videomem.jobs.ask.Asker`), never the CLI.
"""

from videomem.jobs.serve.app import create_app
from videomem.jobs.serve.config import ServeConfig
from videomem.jobs.serve.run import serve

__all__ = ["ServeConfig", "create_app", "serve"]
