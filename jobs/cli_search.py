"""``videomem search``: registered on the app of :mod:`videomem.jobs.cli`. The command
only builds the query embedders (``videomem.encoders.text``) and hands them to
:func:`videomem.memory.search.query.search`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from videomem.jobs.cli import _STORAGE, _STORE, _fail_usage, _storage_options, app


def _fmt_time(s: float) -> str:
    m, sec = divmod(max(0.0, s), 60.0)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{sec:05.2f}" if h else f"{m}:{sec:05.2f}"


@app.command()
def search(
    query: str = typer.Argument("", help="What to look for (words or a description)."),
    store: str = _STORE,
    video: str | None = typer.Option(None, help="Only this video (id or unique prefix)."),
    k: int = typer.Option(10, "--k", "-k", help="How many moments to return."),
    source: str = typer.Option(
        "all", help="visual (slots, CLIP/SigLIP text tower), text (captions, tags) or all."
    ),
    refresh: bool = typer.Option(
        False,
        "--refresh",
        help="Bring the search indexes up to date first (takes the writer lock).",
    ),
    device: str = typer.Option("cpu", help="Where the query encoders run."),
    plot: Path | None = typer.Option(
        None, help="Draw the results as a contact sheet of slot thumbnails to this PNG."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    storage_option: list[str] = _STORAGE,
) -> None:
    """Search moments across the store: ranked (video, time span) hits for a query."""
    from videomem.encoders.text import TextTowers, sentence_embedder
    from videomem.memory.search import search as run_search
    from videomem.memory.store import Store
    from videomem.pipeline.errors import VideomemError

    if not query.strip() and not refresh:
        raise _fail_usage("empty query: say what to look for")
    try:
        options = _storage_options(storage_option)
        if refresh:
            from videomem.jobs.search_refresh import refresh as refresh_index

            with Store(store, writer=True, storage_options=options) as st:
                report = refresh_index(st)
            typer.echo(report.text(), err=as_json)
            if not query.strip():
                return
        with Store(store, storage_options=options) as st:
            result = run_search(
                st,
                query,
                k=k,
                video=video,
                source=source,  # type: ignore[arg-type]
                text_embedder=lambda: sentence_embedder(device),
                tower_for=TextTowers(device),
            )
            if plot is not None:
                from videomem.jobs.plot import plot_contact_sheet
                from videomem.memory.search import moment_thumbnails

                thumbs = moment_thumbnails(st, result.moments)
                plot_contact_sheet(query, result.moments, thumbs, plot)
    except VideomemError as e:
        raise _fail_usage(str(e)) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    for note in result.notes:
        typer.echo(f"note: {note}")
    if plot is not None:
        typer.echo(f"plot: {plot}")
    if not result.moments:
        typer.echo("no matching moments")
    for i, m in enumerate(result.moments, 1):
        span = f"{_fmt_time(m.start_s)}-{_fmt_time(m.end_s)}"
        what = f"  [{m.kind}] {m.text}" if m.text is not None else f"  slot {m.slot}"
        typer.echo(
            f"{i:>3}. {m.score:7.4f} {m.source:6} {m.video_id[:16]:16} {span:>17}  {m.uri}{what}"
        )
