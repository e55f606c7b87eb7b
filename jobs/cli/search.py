"""``videomem search``: ranked moments across the store for a query."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import typer
from videomem.jobs import api
from videomem.jobs.cli.options import StoreOptions, command, json_flag, usage_errors


@dataclasses.dataclass(frozen=True)
class SearchOptions(StoreOptions):
    query: str = typer.Argument("", help="What to look for (words or a description).")
    video: str | None = typer.Option(None, help="Only this video (id or unique prefix).")
    k: int = typer.Option(10, "--k", "-k", help="How many moments to return.")
    source: str = typer.Option(
        "all",
        help="visual (slots, CLIP/SigLIP text tower), text (captions, tags), speech "
        "(what is said: transcripts) or all.",
    )
    refresh: bool = typer.Option(
        False,
        "--refresh",
        help="Bring the search indexes up to date first (takes the writer lock).",
    )
    device: str = typer.Option("cpu", help="Where the query encoders run.")
    plot: Path | None = typer.Option(
        None, help="Draw the results as a contact sheet of slot thumbnails to this PNG."
    )
    as_json: bool = json_flag("Print the result as JSON.")

    def request(self) -> api.SearchRequest:
        return api.SearchRequest(
            query=self.query, k=self.k, video=self.video, source=self.source,  # type: ignore[arg-type]
            refresh=self.refresh, device=self.device, plot=self.plot, **self.where(),
        )  # fmt: skip


@command
def search(o: SearchOptions) -> None:
    """Search moments across the store: ranked (video, time span) hits for a query."""
    with usage_errors():
        outcome = api.search(o.request())
    if outcome.refreshed is not None:
        typer.echo(outcome.refreshed.text(), err=o.as_json)
    result = outcome.result
    if result is None:
        return
    if o.as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    for note in result.notes:
        typer.echo(f"note: {note}")
    if o.plot is not None:
        typer.echo(f"plot: {o.plot}")
    if not result.moments:
        typer.echo("no matching moments")
    for i, m in enumerate(result.moments, 1):
        typer.echo(_moment_line(i, m))


def _fmt_time(s: float) -> str:
    m, sec = divmod(max(0.0, s), 60.0)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{sec:05.2f}" if h else f"{m}:{sec:05.2f}"


def _moment_line(i: int, m: Any) -> str:
    span = f"{_fmt_time(m.start_s)}-{_fmt_time(m.end_s)}"
    what = f"  [{m.kind}] {m.text}" if m.text is not None else f"  slot {m.slot}"
    return f"{i:>3}. {m.score:7.4f} {m.source:6} {m.video_id[:16]:16} {span:>17}  {m.uri}{what}"
